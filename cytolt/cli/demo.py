"""``cytolt demo``: generate data, train a small detector, screen synthetic slides, print where the reports are."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.option("--out", type=click.Path(file_okay=False), default="demo_out", help="Folder for every output.")
@click.option("--images", type=int, default=600, help="Synthetic training patches.")
@click.option(
    "--slide-size", type=int, default=6144, help="Side of each synthetic slide, level-0 px at 0.25 um/px."
)
@click.option("--train-iters", type=int, default=1000, help="Training iterations (1,000: ~2 min on 2 cores).")
@click.option("--retrain", is_flag=True, help="Train again even if the demo model exists.")
def demo(out, images, slide_size, train_iters, retrain) -> None:
    """Run the main job on built-in synthetic data: a long-tailed TCT patch set, NILM/HSIL/LSIL slides in three
    formats, a Grad-Libra detector trained on this machine, and a screening run with JSON and HTML reports.
    Steps whose outputs exist are reused."""
    from cytolt.demo import run_demo

    result = run_demo(
        out, images=images, slide_size=slide_size, train_iters=train_iters, retrain=retrain, echo=click.echo
    )
    click.echo("")
    click.echo("slide calls (made with the scorer fit on the calibration slides, never on these):")
    for name, call in result.calls.items():
        click.echo(f"  {name:<28} {call:<15} (slide made as {result.labels[name]})")
        click.echo(f"  {'':<28} adequacy: {result.adequacy[name]}")
    click.echo("")
    click.echo(f"run folder:  {result.run_dir}")
    click.echo(f"summary:     {result.run_dir / 'summary.csv'}")
    for report in sorted(Path(result.run_dir).glob("*/report.html")):
        click.echo(f"report:      {report}")
    click.echo(f"model:       {result.model_dir}")
