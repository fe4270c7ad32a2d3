"""``cytolt eval``: metrics of a checkpoint on a config's test split, printed as a table."""

from __future__ import annotations

import click


@click.command("eval", context_settings={"show_default": True})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the metrics as JSON here.")
@click.option(
    "--split", type=click.Choice(["test", "val"]), default="test", help="Which split of the config."
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False),
    help="Dataset folder; replaces the config's.",
)
@click.option("--cfg-options", multiple=True, metavar="KEY=VALUE", help="Override config keys.")
def eval_(config, checkpoint, out, split, data_root, cfg_options) -> None:
    """Evaluate CHECKPOINT (.pth state dict or mmengine checkpoint, or .safetensors; always read without unpickling
    arbitrary objects) with CONFIG: LVIS-style AP, AP50, AP75, APr/APc/APf and AP per class."""
    from cytolt.mm.evaluate import evaluate

    metrics = evaluate(
        config, checkpoint, split=split, data_root=data_root, cfg_options=list(cfg_options), out=out
    )
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        click.echo(f"{key:<{width}}  {value:7.4f}")
    if out:
        click.echo(f"metrics written to {out}")
