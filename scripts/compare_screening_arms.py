"""Paired comparison of screening-study arms on the same slides -> docs/results/screening_classifier.json.

    .venv/bin/python scripts/compare_screening_arms.py docs/results/screening_classifier \
        none=work_dirs/screening_classifier/out_a_none/screening.json \
        top200_replace=work_dirs/screening_classifier/out_b_200/screening.json ...

writes OUT.json and OUT.md (OUT = the first argument, here docs/results/screening_classifier.{json,md}); the
page's reading is kept apart in OUT/reading.md (a person's, from these numbers) and pasted in; OUT/classifier.json
(how the classifier was trained and chosen) is copied into the json.

The first arm is the reference (no second stage). Every arm must hold the same test slides (the study's cohort
for one --test-slides / --slide-size), screened with the same detector. Per arm: the study's own figures
(sensitivity and specificity with Wilson intervals, AUC with its bootstrap interval, gallery hit rate, adequacy,
cost). Per arm against the reference, slide by slide: calls that changed at each cut-off (gained / lost true
positives, new / removed false positives, exact two-sided McNemar p on the discordant slides), gallery hits
that changed, slides whose adequacy changed, and the paired bootstrap of the AUC difference.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cytolt.bethesda import UNSATISFACTORY
from cytolt.evaluate.screening import CUTOFFS, counted_call, gallery_hit_rate

GALLERY_K = (10, 30)
N_BOOT = 2000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p: the binomial(b + c, 1/2) test of the discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula (ties count a half)."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def paired_auc_difference(labels: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """AUC(b) - AUC(a) on the same slides with a percentile interval over shared slide resamples."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(N_BOOT):
        idx = rng.integers(0, len(labels), len(labels))
        lab = labels[idx]
        if 0 < lab.sum() < len(lab):
            diffs.append(auc(lab, b[idx]) - auc(lab, a[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {
        "difference": auc(labels, b) - auc(labels, a),
        "interval": [float(lo), float(hi)],
        "n_boot": N_BOOT,
    }


def slide_hits(rec: dict[str, Any], k: int) -> bool:
    return gallery_hit_rate([rec["review_boxes"]], [rec["planted_abnormal"]], k=k)["k"] == 1


def arm_summary(study: dict[str, Any]) -> dict[str, Any]:
    figs, cost = study["figures"], study["cost"]
    slides = study["slides"]
    stage = [r.get("second_stage") or {} for r in slides]
    classify = [r["timings"].get("classify", 0.0) for r in slides if r.get("timings")]
    return {
        "second_stage": study["setup"].get("second_stage"),
        "calibration": study["setup"]["calibration"],
        "cutoffs": {name: figs["cutoffs"][name] for name in CUTOFFS},
        "roc": figs["roc"],
        "gallery": figs["gallery"],
        "adequacy": {k: figs["adequacy"][k] for k in ("tp", "fn", "tn", "fp", "sensitivity", "specificity")},
        "triage": figs["triage"],
        "seconds_per_slide": cost["seconds_per_slide"],
        "classify_seconds_per_slide": float(np.mean(classify)) if classify else 0.0,
        "stage_means": cost["stage_means"],
        "cells_rescored_mean": float(np.mean([s.get("cells_rescored", 0) for s in stage])),
        "labels_changed_mean": float(np.mean([s.get("labels_changed", 0) for s in stage])),
    }


def paired(ref: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    a, b = ref["slides"], arm["slides"]
    if [r["slide"] for r in a] != [r["slide"] for r in b]:
        raise ValueError("the arms hold different slides")
    calls_a = [counted_call(r["unsatisfactory"], r["interpretation"]) for r in a]
    calls_b = [counted_call(r["unsatisfactory"], r["interpretation"]) for r in b]
    keep = [i for i, r in enumerate(a) if r["truth"] != UNSATISFACTORY]
    out: dict[str, Any] = {"cutoffs": {}}
    for name, positive in CUTOFFS.items():
        row = {
            "tp_gained": 0,
            "tp_lost": 0,
            "fp_new": 0,
            "fp_removed": 0,
            "gained_kinds": {},
            "lost_kinds": {},
        }
        for i in keep:
            truth = a[i]["truth"] in positive
            pa, pb = calls_a[i] in positive, calls_b[i] in positive
            if pa == pb:
                continue
            if truth:
                key = "tp_gained" if pb else "tp_lost"
                kinds = row["gained_kinds" if pb else "lost_kinds"]
                kinds[a[i]["kind"]] = kinds.get(a[i]["kind"], 0) + 1
            else:
                key = "fp_new" if pb else "fp_removed"
            row[key] += 1
        row["mcnemar_p_sensitivity"] = mcnemar_exact(row["tp_gained"], row["tp_lost"])
        row["mcnemar_p_specificity"] = mcnemar_exact(row["fp_new"], row["fp_removed"])
        out["cutoffs"][name] = row
    out["interpretation_changed"] = sum(x != y for x, y in zip(calls_a, calls_b, strict=True))
    changes: dict[str, int] = {}
    for x, y in zip(calls_a, calls_b, strict=True):
        if x != y:
            changes[f"{x} -> {y}"] = changes.get(f"{x} -> {y}", 0) + 1
    out["call_changes"] = dict(sorted(changes.items(), key=lambda kv: -kv[1]))
    # the adequacy call (status and reasons) apart from its inputs: the squamous count is taken from the cells'
    # classes, which the second stage can change
    out["adequacy_call_changed"] = sum(
        (x["unsatisfactory"], x["adequacy"].get("status"))
        != (y["unsatisfactory"], y["adequacy"].get("status"))
        for x, y in zip(a, b, strict=True)
    )
    out["adequacy_reasons_text_changed"] = sum(
        x["reasons"] != y["reasons"] for x, y in zip(a, b, strict=True)
    )
    other = [k for k in a[0]["adequacy"] if k not in ("status", "reasons", "squamous_cells")]
    out["adequacy_other_fields_changed"] = sum(
        any(x["adequacy"].get(k) != y["adequacy"].get(k) for k in other) for x, y in zip(a, b, strict=True)
    )
    sq = [
        (x["adequacy"].get("squamous_cells"), y["adequacy"].get("squamous_cells"))
        for x, y in zip(a, b, strict=True)
    ]
    sq = [(p, q) for p, q in sq if p is not None and q is not None]
    out["squamous_cells"] = {
        "slides_changed": sum(p != q for p, q in sq),
        "mean_reference": float(np.mean([p for p, _ in sq])),
        "mean_arm": float(np.mean([q for _, q in sq])),
    }
    abnormal = [i for i, r in enumerate(a) if r["truth"] != UNSATISFACTORY and r["planted_abnormal"]]
    out["gallery"] = {}
    for k in GALLERY_K:
        ha = [slide_hits(a[i], k) for i in abnormal]
        hb = [slide_hits(b[i], k) for i in abnormal]
        gained = sum(y and not x for x, y in zip(ha, hb, strict=True))
        lost = sum(x and not y for x, y in zip(ha, hb, strict=True))
        out["gallery"][str(k)] = {"gained": gained, "lost": lost, "mcnemar_p": mcnemar_exact(gained, lost)}
    out["auc_difference"] = {}
    for name in ("ASC-US+", "HSIL+"):
        labels = np.array([a[i]["truth"] in CUTOFFS[name] for i in keep])
        sa = np.array([a[i]["slide_score"] for i in keep], dtype=float)
        sb = np.array([b[i]["slide_score"] for i in keep], dtype=float)
        out["auc_difference"][name] = paired_auc_difference(labels, sa, sb)
    return out


def pct(p: dict[str, Any]) -> str:
    if p["value"] is None:
        return "-"
    lo, hi = p["interval"]
    return f"{100 * p['value']:.1f} % ({p['k']}/{p['n']}; {100 * lo:.1f}-{100 * hi:.1f})"


def markdown(result: dict[str, Any], reading: str) -> str:
    arms, setup = result["arms"], result["setup"]
    lines = [
        "# The second stage (cell classifier) on the screening study",
        "",
        f"{setup['test_slides']} test and {setup['calibration_slides']} calibration slides of "
        f"{setup['slide_size']} px, the same slides and detector ({setup['model']}) for every arm; "
        f"{setup['machine']}, {setup['cores']} cores, {setup['threads']} torch thread(s), {setup['device']}, "
        f"{setup['date']}. Made by `scripts/compare_screening_arms.py` from each arm's "
        "`scripts/screening_study.py` json.",
        "",
        "| arm | top N | combine | ASC-US+ sens | ASC-US+ spec | LSIL+ sens | LSIL+ spec | HSIL+ sens | HSIL+ spec |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in arms.items():
        st = a["second_stage"] or {}
        cut = a["cutoffs"]
        cells = [pct(cut[c][m]) for c in CUTOFFS for m in ("sensitivity", "specificity")]
        lines.append(
            f"| {name} | {st.get('top_n', '-')} | {st.get('combine', '-')} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| arm | AUC ASC-US+ | AUC HSIL+ | gallery@10 | gallery@30 | gallery@10, 1-5 cells | gallery@30, 1-5 cells "
        "| adequacy sens | adequacy spec | scorer fit accuracy (its min squamous cells) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in arms.items():
        roc = [
            "-"
            if a["roc"][c] is None
            else f"{a['roc'][c]['auc']:.3f} ({a['roc'][c]['interval'][0]:.3f}-"
            f"{a['roc'][c]['interval'][1]:.3f})"
            for c in ("ASC-US+", "HSIL+")
        ]
        gal = [
            pct(a["gallery"][sub][k])
            for sub in ("abnormal slides", "1-5 abnormal cells")
            for k in ("10", "30")
        ]
        adequacy = [pct(a["adequacy"][m]) for m in ("sensitivity", "specificity")]
        acc = a["calibration"]["accuracy"]
        fit = "-" if acc is None else f"{acc:.3f}"
        fit += f" (min squamous {a['calibration']['adequacy_rules']['min_squamous_cells']})"
        lines.append(f"| {name} | " + " | ".join([*roc, *gal, *adequacy, fit]) + " |")
    lines += [
        "",
        "| arm | s per slide, mean (median) | classify s per slide | classify share | cells re-scored per "
        "slide | labels changed per slide |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in arms.items():
        sps = a["seconds_per_slide"]
        share = a["classify_seconds_per_slide"] / sps["mean"] if sps["mean"] else 0.0
        lines.append(
            f"| {name} | {sps['mean']:.2f} ({sps['median']:.2f}) | {a['classify_seconds_per_slide']:.2f} | "
            f"{100 * share:.0f} % | {a['cells_rescored_mean']:.1f} | {a['labels_changed_mean']:.1f} |"
        )
    lines += [
        "",
        f"Paired, slide by slide against `{setup['reference']}` (satisfactory-truth slides for the cut-offs; "
        "p: exact two-sided McNemar on the discordant slides):",
        "",
        "| arm | cut-off | true positives gained / lost | false positives new / removed | p (sens) | p (spec) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in result["paired"].items():
        for c, row in p["cutoffs"].items():
            lines.append(
                f"| {name} | {c} | {row['tp_gained']} / {row['tp_lost']} | {row['fp_new']} / {row['fp_removed']} | "
                f"{row['mcnemar_p_sensitivity']:.3g} | {row['mcnemar_p_specificity']:.3g} |"
            )
    lines += [
        "",
        "| arm | calls changed | most frequent changes | adequacy calls changed | squamous count changed (mean "
        "before -> after) | gallery@10 gained / lost | "
        "gallery@30 gained / lost | AUC ASC-US+ difference | AUC HSIL+ difference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, p in result["paired"].items():
        top = ", ".join(f"{k} ({v})" for k, v in list(p["call_changes"].items())[:4]) or "-"
        auc_d = [
            f"{p['auc_difference'][c]['difference']:+.3f} ({p['auc_difference'][c]['interval'][0]:+.3f} to "
            f"{p['auc_difference'][c]['interval'][1]:+.3f})"
            for c in ("ASC-US+", "HSIL+")
        ]
        g = p["gallery"]
        lines.append(
            f"| {name} | {p['interpretation_changed']} | {top} | {p['adequacy_call_changed']} | "
            f"{p['squamous_cells']['slides_changed']} slides ({p['squamous_cells']['mean_reference']:.1f} -> "
            f"{p['squamous_cells']['mean_arm']:.1f}) | "
            f"{g['10']['gained']} / {g['10']['lost']} | {g['30']['gained']} / {g['30']['lost']} | "
            + " | ".join(auc_d)
            + " |"
        )
    lines += ["", "## Reading", "", reading.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] in ("-h", "--help") or not all("=" in a for a in argv[1:]):
        raise SystemExit(
            __doc__ + "\nusage: compare_screening_arms.py OUT NAME=STUDY.json NAME=STUDY.json ..."
        )
    out = Path(argv[0])
    arms = dict(arg.split("=", 1) for arg in argv[1:])
    studies = {name: json.loads(Path(path).read_text()) for name, path in arms.items()}
    ref_name = next(iter(studies))
    ref = studies[ref_name]
    result = {
        "setup": {k: ref["setup"][k] for k in ("date", "machine", "cores", "threads", "torch", "device")}
        | {
            "test_slides": ref["setup"]["test_slides"],
            "calibration_slides": ref["setup"]["calibration_slides"],
            "slide_size": ref["setup"]["slide_size"],
            "model": ref["setup"]["model"],
            "commands": {name: s["setup"]["command"] for name, s in studies.items()},
            "reference": ref_name,
        },
        "classifier_training": json.loads((out / "classifier.json").read_text())
        if (out / "classifier.json").is_file()
        else None,
        "arms": {name: arm_summary(s) for name, s in studies.items()},
        "paired": {name: paired(ref, s) for name, s in studies.items() if name != ref_name},
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    reading_file = out / "reading.md"
    reading = (
        reading_file.read_text() if reading_file.is_file() else "_(to be written from the numbers above)_"
    )
    out.with_suffix(".md").write_text(markdown(result, reading))


if __name__ == "__main__":
    main(sys.argv[1:])
