"""What the command line shows a user: the --help of every command, the backbones listing."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

import visent.cli
from visent.cli import app

runner = CliRunner()
WIDE = {"terminal_width": 300, "env": {"COLUMNS": "300"}}  # help lines unwrapped, so phrases can be searched


def _commands(command, path=()):
    """(path, command) for the group itself and every command below it, sub-apps (`visent teacher ...`) included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _flat(text: str) -> str:
    """The help as one line of words: box borders gone, whitespace collapsed."""
    return " ".join(text.replace("│", " ").split())


def _help_strings(command) -> list[str]:
    return [text for text in (command.help, *(getattr(p, "help", None) for p in command.params)) if text]


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "ingest", "build", "train", "embed", "serve", "backbones", "teacher", "teacher train",
            "teacher predict"} <= names


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "visent" for p, _ in COMMANDS])
def test_help_shows_values_brackets_and_plain_flags(path, command):
    result = runner.invoke(app, [*path, "--help"], **WIDE)
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "Usage" in text
    # A default is shown as its value, never as the name of the constant that holds it.
    assert not re.search(r"\bvisent\.[A-Za-z_]", text), text
    # --help (like every flag) takes no value, so it shows no type.
    assert re.search(r"--help Show this message and exit", text), text
    assert "<bool>" not in text
    # Bracketed text of a help string is not taken for rich markup and dropped.
    for help_text in _help_strings(command):
        for bracketed in re.findall(r"\\?\[[^\]\s]*\]", help_text):
            assert bracketed.lstrip("\\") in text, (path, bracketed)


def test_ray_extra_and_runtime_default_survive_in_help():
    from visent.embed.onnx import DEFAULT_RUNTIME

    for command in ("ingest", "teach", "embed", "predict"):
        assert 'pip install "visent[ray]"' in _flat(runner.invoke(app, [command, "--help"], **WIDE).output)
    for command in ("embed", "train", "build"):
        assert f"Default: {DEFAULT_RUNTIME} " in _flat(runner.invoke(app, [command, "--help"], **WIDE).output)


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
