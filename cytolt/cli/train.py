"""``cytolt train``: train an mmdet config with mmengine's Runner."""

from __future__ import annotations

import click


@click.command(context_settings={"show_default": True})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--work-dir", type=click.Path(file_okay=False), help="Run folder [default: work_dirs/CONFIG_NAME]."
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False),
    help="Dataset folder; replaces the config's data_root.",
)
@click.option(
    "--cfg-options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override config keys, e.g. train_cfg.max_iters=200.",
)
@click.option(
    "--resume", is_flag=True, help="Continue from the last checkpoint in the work dir (loss state included)."
)
@click.option(
    "--launcher",
    type=click.Choice(["none", "pytorch", "slurm", "mpi"]),
    default="none",
    help="'pytorch' under torchrun for multi-GPU.",
)
@click.option("--amp/--no-amp", default=None, help="Mixed precision [default: on with CUDA].")
@click.option(
    "--load-from",
    type=click.Path(exists=True),
    default=None,
    help="Start from these weights (fine-tuning): a model folder from cytolt export-model, or a checkpoint.",
)
@click.option(
    "--allow-random-init",
    is_flag=True,
    help="Let a config that names pretrained backbone weights (configs/lvis) start from a random backbone; "
    "without it such a run refuses to start until the verified file is given.",
)
def train(
    config, work_dir, data_root, cfg_options, resume, launcher, amp, load_from, allow_random_init
) -> None:
    """Train CONFIG (e.g. configs/tct/retinanet_r18_gradlibra.py) on CPU or GPU.

    \b
    Any COCO dataset trains with an unchanged config: --data-root DATA holds annotations_train.json,
    annotations_val.json, annotations_test.json and the images they name. The classes come from the
    training file's categories (the head and every loss get that many outputs); plain COCO gets the LVIS
    fields the long-tail metric needs (every class absent from an image is a negative), and the class table
    with its rare / common / frequent groups is printed. Every file is checked before training starts: a
    broken one fails at once, naming the file and the entry.

    Progress and ETA are logged every 50 iterations; checkpoints hold the losses' state buffers.
    Multi-GPU: torchrun --nproc-per-node N -m cytolt train CONFIG --launcher pytorch
    """
    from cytolt.datasets import AnnotationError
    from cytolt.mm.lvis_weights import BackboneWeightsError
    from cytolt.mm.train import last_val_metrics
    from cytolt.mm.train import train as run

    try:
        out = run(
            config,
            work_dir=work_dir,
            data_root=data_root,
            cfg_options=list(cfg_options),
            resume=resume,
            launcher=launcher,
            amp=amp,
            echo=click.echo,
            load_from=load_from,
            allow_random_init=allow_random_init,
        )
    except (AnnotationError, FileNotFoundError, BackboneWeightsError) as err:
        raise click.ClickException(str(err)) from err
    metrics = last_val_metrics(out)
    if metrics:
        keys = ("AP", "AP50", "APr", "APc", "APf")
        shown = "  ".join(f"{k} {metrics[f'lt/{k}']:.3f}" for k in keys if f"lt/{k}" in metrics)
        click.echo(f"validation at the end of training: {shown}")
    click.echo(f"run folder: {out}")
    click.echo(f"export for screening: cytolt export-model {out} MODEL_DIR")
