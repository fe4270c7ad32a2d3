"""The ``cytolt`` command.

One module per subcommand in this package; each is imported only when its command runs, so
``cytolt --help`` stays fast and a broken optional dependency only breaks its own command.
The table below is the one place a subcommand is added.
"""

from __future__ import annotations

import importlib

import click

from cytolt import __version__

# name -> (module, attribute, one-line help shown by `cytolt --help`)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "classify": ("cytolt.cli.classify", "classify", "Second-stage cell classifier: crops, train, eval."),
    "dataset": ("cytolt.cli.dataset", "dataset", "Build a training set from annotated slides."),
    "demo": ("cytolt.cli.demo", "demo", "Run the main job end to end on built-in synthetic data."),
    "doctor": (
        "cytolt.cli.doctor",
        "doctor",
        "Report what is installed and what to do about missing pieces.",
    ),
    "eval": (
        "cytolt.cli.eval",
        "eval_",
        "Evaluate a model: LVIS-style AP with rare/common/frequent, per class.",
    ),
    "export": (
        "cytolt.cli.export",
        "export",
        "Export a run's detections per slide: QuPath GeoJSON, CSV, COCO results.",
    ),
    "export-model": (
        "cytolt.cli.export_model",
        "export_model",
        "Turn a training run into a model folder for screening.",
    ),
    "screen": (
        "cytolt.cli.screen",
        "screen",
        "Screen slides with a model: detections, slide calls, reports.",
    ),
    "synth": ("cytolt.cli.synth", "synth", "Generate synthetic TCT patches and whole-slide images."),
    "train": ("cytolt.cli.train", "train", "Train a detector config (mmdet) on CPU or GPU."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cytolt")
def main() -> None:
    """cytolt finds the rare abnormal cells in cervical cytology whole-slide images.

    Run `cytolt COMMAND --help` for the options of each command.
    """
