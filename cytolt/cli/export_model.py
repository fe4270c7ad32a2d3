"""``cytolt export-model``: a training run -> a self-contained model folder for screening."""

from __future__ import annotations

import click


@click.command("export-model")
@click.argument("work_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    help="Checkpoint inside WORK_DIR [default: the last].",
)
def export_model(work_dir, out, checkpoint) -> None:
    """Write OUT/config.py, OUT/model.safetensors (weights, loss state) and OUT/model.json (classes, colours, mpp,
    class counts) from the training run in WORK_DIR. `cytolt screen --model OUT` loads it without unpickling."""
    from cytolt.mm.train import export_model as run

    folder = run(work_dir, out, checkpoint=checkpoint)
    click.echo(f"model folder: {folder}")
