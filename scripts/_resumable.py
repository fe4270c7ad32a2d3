"""The command line shared by the resumable benchmark scripts (tct_grid.py, classify_benchmark.py).

Each script makes runs one at a time, writes one small result file per finished run and skips runs whose file
exists with the same config hash; `run` starts each run in a fresh process (`one`), so code committed between runs
is picked up and memory is freed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parser(doc: str | None, *, only_help: str, run_example: str, outputs: str) -> argparse.ArgumentParser:
    """`run [--only --max-runs --commit --keep-going]`, `one RUN`, `list [--only]` and `summarise`."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="make the missing runs in order, one at a time")
    r.add_argument("--only", help=only_help)
    r.add_argument("--max-runs", type=int, help="stop after this many runs")
    r.add_argument("--commit", action="store_true", help="git-commit each run's result files as it finishes")
    r.add_argument("--keep-going", action="store_true", help="continue after a failed run")
    o = sub.add_parser("one", help="make one run (what `run` calls in a fresh process)")
    o.add_argument("run", help=f"run name, e.g. {run_example}")
    ls = sub.add_parser("list", help="show done / stale / missing runs")
    ls.add_argument("--only")
    sub.add_parser("summarise", help=f"regenerate {outputs} from the result files")
    return p


def dispatch(args: argparse.Namespace, commands: dict[str, Callable[[argparse.Namespace], int]]) -> int:
    """Call the sub-command's function; `summarise` takes no arguments and returns nothing."""
    if args.command == "summarise":
        commands["summarise"]()
        return 0
    return commands[args.command](args)


def commit(paths: Sequence[Path], message: str) -> None:
    """git-commit exactly these paths (others' uncommitted changes stay out of the commit)."""
    names = [str(p) for p in paths if p.exists()]
    # Two runners (or a person committing) can hold the index lock at the same moment: wait and retry
    # rather than lose a finished run's commit.
    for attempt in range(30):
        added = subprocess.run(["git", "add", *names], cwd=ROOT, capture_output=True, text=True)
        if added.returncode == 0:
            done = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *names], cwd=ROOT, capture_output=True, text=True
            )
            if done.returncode == 0 or "index.lock" not in done.stderr:
                return
        elif "index.lock" not in added.stderr:
            raise subprocess.CalledProcessError(added.returncode, added.args, added.stdout, added.stderr)
        time.sleep(1.0 + attempt)
    print(f"could not commit {names}: the git index stayed locked", file=sys.stderr)


def run_missing(
    args: argparse.Namespace,
    names: Sequence[str],
    status: Callable[[str], str],
    *,
    script: str,
    threads: int,
    summarise: Callable[..., object],
    commit_for: Callable[[str], tuple[Sequence[Path], str]],
    failed_hint: Callable[[str], str] = lambda name: "",
) -> int:
    """`run`: every selected run that is not done, each in a fresh process (`script one NAME`), then the tables
    regenerated and, with --commit, the run's result files committed (``commit_for(name)`` -> paths, message)."""
    todo = [n for n in names if status(n) != "done"]
    if args.max_runs is not None:
        todo = todo[: args.max_runs]
    print(f"{len(todo)} runs to make", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for i, name in enumerate(todo, 1):
        print(f"== [{i}/{len(todo)}] {name} ({datetime.now().strftime('%H:%M')})", flush=True)
        proc = subprocess.run([sys.executable, script, "one", name], cwd=ROOT, env=env, check=False)
        if proc.returncode != 0:
            print(f"{name} failed (exit {proc.returncode}){failed_hint(name)}", flush=True)
            if not args.keep_going:
                return proc.returncode
            continue
        summarise(quiet=True)
        if args.commit:
            commit(*commit_for(name))
    return 0


def list_runs(names: Sequence[str], status: Callable[[str], str]) -> int:
    """`list`: each selected run's status (done / stale / missing), then the counts."""
    counts: dict[str, int] = {}
    for name in names:
        st = status(name)
        counts[st] = counts.get(st, 0) + 1
        print(f"{st:8s} {name}")
    print(", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0
