"""The ``cytolt`` command: version, help for every subcommand, doctor."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cytolt import __version__
from cytolt.cli import SUBCOMMANDS, main


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, (_, _, summary) in SUBCOMMANDS.items():
        assert name in result.output
        assert summary.split()[0] in result.output


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
