"""Draw the before/after grid of rare-biased cell copy-paste for docs/copy_paste.md.

    .venv/bin/python scripts/make_copy_paste_figure.py [--out docs/images/copy_paste_grid.png] [--seed 0]

Makes a small synthetic TCT patch dataset with ``cytolt.synth.make_patch_dataset`` in a temporary folder, builds
a ``CellBank`` from it, and pastes cells into a few patches with ``class_weights='inverse'``. Top row: the
patches as generated; bottom row: after copy-paste. Boxes are coloured by class (``cytolt.synth`` colours);
pasted cells have dashed boxes with their class name.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cytolt.augment import CellBank, CellCopyPaste  # noqa: E402
from cytolt.augment.bank import decode_segmentation  # noqa: E402
from cytolt.synth import make_patch_dataset  # noqa: E402
from cytolt.synth.classes import CLASS_COLORS, CLASSES  # noqa: E402


def load_sample(
    coco: dict, image_id: int, root: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image RGB, boxes xyxy, labels 0-based in file category order, masks) of one COCO image."""
    info = next(im for im in coco["images"] if im["id"] == image_id)
    image = cv2.cvtColor(cv2.imread(str(root / info["file_name"])), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    cat_ids = [c["id"] for c in coco["categories"]]
    anns = [a for a in coco["annotations"] if a["image_id"] == image_id and not a.get("iscrowd", 0)]
    boxes = np.array(
        [
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in anns
        ],
        np.float32,
    )
    labels = np.array([cat_ids.index(a["category_id"]) for a in anns], np.int64)
    masks = (
        np.stack([decode_segmentation(a["segmentation"], h, w) for a in anns])
        if anns
        else np.zeros((0, h, w), bool)
    )
    return image, boxes.reshape(-1, 4), labels, masks


def draw(ax, image, boxes, labels, classes, *, n_old=None, title=""):
    ax.imshow(image)
    for k, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        name = classes[label]
        colour = np.array(CLASS_COLORS.get(name, (0, 0, 0))) / 255.0
        pasted = n_old is not None and k >= n_old
        x0, y0, x1, y1 = box
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.6, ec=colour, ls="--" if pasted else "-")
        )
        if pasted:
            ax.text(
                x0,
                y0 - 2,
                name,
                color="white",
                fontsize=6,
                va="bottom",
                bbox=dict(fc=colour, ec="none", pad=0.8),
            )
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/copy_paste_grid.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--panels", type=int, default=3)
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        summary = make_patch_dataset(
            root, images=40, size=args.size, imbalance=20, seed=args.seed, image_format="png"
        )
        ann_file = Path(summary["annotation_files"]["all"])
        bank = CellBank.build(ann_file, root, cache_dir=root / "cache")
        coco = json.loads(ann_file.read_text())
        classes = bank.classes
        assert tuple(classes) == tuple(CLASSES)
        print(bank)
        cp = CellCopyPaste(bank=bank, class_weights="inverse", max_pasted=5, max_overlap=0.1, seed=args.seed)
        # Patches with a few cells, so that there is room left to paste into.
        per_image = np.bincount(
            [a["image_id"] for a in coco["annotations"]], minlength=len(coco["images"]) + 1
        )
        ids = [int(i) for i in np.argsort(per_image) if per_image[i] >= 2][: args.panels]
        fig, axes = plt.subplots(2, len(ids), figsize=(3.2 * len(ids), 6.6))
        axes = np.asarray(axes).reshape(2, -1)
        for col, image_id in enumerate(ids):
            image, boxes, labels, masks = load_sample(coco, image_id, root)
            # Draw until something was pasted, so every panel shows the effect (the count is U{0..5}).
            for _ in range(20):
                r = cp.apply(image, boxes, labels, masks)
                if len(r.boxes) > len(r.kept):
                    break
            draw(axes[0, col], image, boxes, labels, classes, title=f"patch {image_id}: {len(boxes)} cells")
            n_new = len(r.boxes) - len(r.kept)
            dropped = len(boxes) - len(r.kept)
            draw(
                axes[1, col],
                r.image,
                r.boxes,
                r.labels,
                classes,
                n_old=len(r.kept),
                title=f"+{n_new} pasted, {dropped} dropped (occluded)",
            )
        present = sorted(
            {int(k) for k in np.concatenate([load_sample(coco, i, root)[2] for i in ids])}
            | set(range(6, len(classes)))
        )
        handles = [
            Line2D([], [], color=np.array(CLASS_COLORS[classes[k]]) / 255.0, lw=2, label=classes[k])
            for k in present
        ]
        handles.append(Line2D([], [], color="k", ls="--", lw=1.2, label="pasted"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7, frameon=False)
        fig.suptitle(
            "CellCopyPaste, class_weights='inverse' (synthetic TCT patches; top: before, bottom: after)",
            fontsize=9,
        )
        fig.tight_layout(rect=(0, 0.05, 1, 0.97))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
