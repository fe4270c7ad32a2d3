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
@click.option(
    "--onnx/--no-onnx",
    default=True,
    show_default=True,
    help="Also write OUT/model.onnx for `cytolt screen --engine onnx` (ONNX Runtime on the CPU), checked "
    "against torch on synthetic patches and timed against it: the faster becomes the model's default engine.",
)
def export_model(work_dir, out, checkpoint, onnx) -> None:
    """Write OUT/config.py, OUT/model.safetensors (weights, loss state) and OUT/model.json (classes, colours, mpp,
    class counts) from the training run in WORK_DIR. `cytolt screen --model OUT` loads it without unpickling.

    With --onnx (the default) the network up to the head's raw outputs also goes to OUT/model.onnx; box decoding
    and NMS stay in torch, so both engines give the same detections. Models the exporter cannot take (two-stage
    detectors, deformable convolutions) keep the torch engine, and the reason is printed."""
    from cytolt.detect import ModelFolder
    from cytolt.mm.onnx_export import onnx_status
    from cytolt.mm.train import export_model as run

    folder = run(work_dir, out, checkpoint=checkpoint, onnx=onnx)
    click.echo(f"model folder: {folder}")
    if onnx:
        click.echo(onnx_status(ModelFolder.read(folder)))
