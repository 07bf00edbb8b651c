"""What the command line shows a user: the backbones listing."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

import visent.cli
from visent.cli import app

runner = CliRunner()
WIDE = {"terminal_width": 300, "env": {"COLUMNS": "300"}}  # help lines unwrapped, so phrases can be searched


def test_backbones_labels_the_default_backbone(monkeypatch):
    from visent.train import DEFAULT_BACKBONE

    def default_lines():
        result = runner.invoke(app, ["backbones"], **WIDE)
        assert result.exit_code == 0, result.output
        return [line.split()[0] for line in result.output.splitlines() if "(default)" in line]

    assert default_lines() == [DEFAULT_BACKBONE] == ["efficientnet-lite0-ms"]
    # The label follows the one constant: no second copy of the name in the command line.
    monkeypatch.setattr(visent.cli, "DEFAULT_BACKBONE", "efficientnet-lite2")
    assert default_lines() == ["efficientnet-lite2"]


def test_backbone_option_defaults_to_the_train_default():
    from visent.train import DEFAULT_BACKBONE

    for name in ("train", "build", "embed"):
        command = typer.main.get_command(app).commands[name]
        option = next(p for p in command.params if p.name == "backbone")
        assert option.default == DEFAULT_BACKBONE
