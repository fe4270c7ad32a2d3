"""``cytolt doctor``: report every component honestly, with what to do about each missing piece."""

from __future__ import annotations

import click


@click.command()
@click.argument("slides", nargs=-1, type=click.Path(dir_okay=False))
def doctor(slides: tuple[str, ...]) -> None:
    """Print torch, CUDA, mmcv ops, mmdet, OpenSlide, napari/Qt/X and what to do about each missing piece.

    With SLIDES, also which reader (tifffile or OpenSlide) opens each slide file and why. Exits with status 1
    when a required component is missing or a slide cannot be opened.
    """
    from cytolt.doctor import run_checks

    checks = run_checks(slides)
    width = max(len(c.name) for c in checks)
    failed = False
    for c in checks:
        mark = {True: "ok", False: "MISSING", None: "--"}[c.ok]
        click.echo(f"{c.name:<{width}}  {mark:<7}  {c.detail}")
        if c.fix:
            click.echo(f"{'':<{width}}           -> {c.fix}")
        failed |= c.ok is False and c.name not in ("napari", "Qt binding", "display", "dask")  # optional
    raise SystemExit(1 if failed else 0)
