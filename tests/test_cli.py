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


def test_backbones_names_the_registered_families():
    from visent.embed import BACKBONES

    def families_listed():
        result = runner.invoke(app, ["backbones"], **WIDE)
        assert result.exit_code == 0, result.output
        found = re.search(r"A family takes an architecture and its weights: --backbone (\S+):<arch> --weights FILE "
                          r"\(families: ([^)]*)\)\.", _flat(result.output))  # as wrapped at any width
        assert found, result.output
        return found.group(1), found.group(2)

    assert families_listed() == ("torchvision", "torchvision, timm")
    # a family registered later (as a plug-in would) is listed with the others
    BACKBONES.register("open_clip", "any open_clip model from a local weights file", arch=True)(lambda arch: None)
    try:
        assert families_listed() == ("torchvision", "torchvision, timm, open_clip")
    finally:
        BACKBONES.unregister("open_clip")


def test_backbone_option_defaults_to_the_train_default():
    from visent.train import DEFAULT_BACKBONE

    for name in ("train", "build", "embed"):
        command = typer.main.get_command(app).commands[name]
        option = next(p for p in command.params if p.name == "backbone")
        assert option.default == DEFAULT_BACKBONE


# visent cache ---------------------------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache root with features written by the feature cache, an ONNX file and a folder visent did not write."""
    import numpy as np

    from visent.core.onnx import onnx_cache_root
    from visent.embed.cache import FeatureCache

    root = tmp_path / "visent cache"
    monkeypatch.setenv("VISENT_CACHE", str(root))
    FeatureCache().put_many("lite0|key", {"ab" * 32: np.ones(250, np.float32)})
    onnx_cache_root().mkdir(parents=True)
    (onnx_cache_root() / "teacher-minilm-0123.int8.onnx").write_bytes(b"x" * 2500)
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("not visent's")
    return root


def test_cache_shows_where_it_is_and_its_size_per_kind(cache):
    result = runner.invoke(app, ["cache"], **WIDE)
    assert result.exit_code == 0, result.output
    assert f"cache: {cache}" in result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]]
            for line in result.output.splitlines() if line.startswith("│")}
    features = sum(p.stat().st_size for p in (cache / "features").rglob("*") if p.is_file())
    assert rows["features"] == [f"{features / 1000:.1f} kB", "2"]  # a shard and its key.txt
    assert rows["onnx"] == ["2.5 kB", "1"]
    assert rows["mine"] == ["12 B", "1"] and "not visent's" in result.output


def test_cache_clear_asks_then_deletes_visents_folders_only(cache):
    from visent.embed.cache import FeatureCache

    refused = runner.invoke(app, ["cache", "--clear"], input="n\n", **WIDE)
    assert refused.exit_code == 1 and "Delete" in refused.output
    assert (cache / "features").is_dir() and (cache / "onnx").is_dir()
    cleared = runner.invoke(app, ["cache", "--clear"], input="y\n", **WIDE)
    assert cleared.exit_code == 0, cleared.output
    assert "cache cleared" in cleared.output
    assert sorted(p.name for p in cache.iterdir()) == ["mine"]
    assert FeatureCache().get_many("lite0|key", ["ab" * 32]) == {}
    again = runner.invoke(app, ["cache", "--clear", "--yes"], **WIDE)  # nothing left: no question, no error
    assert again.exit_code == 0 and "nothing to clear" in again.output and "Delete" not in again.output


def test_cache_clear_yes_does_not_ask(cache):
    result = runner.invoke(app, ["cache", "--clear", "--yes"], **WIDE)
    assert result.exit_code == 0 and "Delete" not in result.output
    assert not (cache / "features").exists() and not (cache / "onnx").exists()


def test_cache_clear_refuses_a_link_and_says_so(cache, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (cache / "onnx").rename(elsewhere)
    (cache / "onnx").symlink_to(elsewhere)
    result = runner.invoke(app, ["cache", "--clear", "--yes"], **WIDE)
    assert result.exit_code == 1
    assert "symbolic link" in result.output and str(cache / "onnx") in " ".join(result.output.split())
    assert (elsewhere / "teacher-minilm-0123.int8.onnx").exists()
    assert (cache / "features").is_dir()  # nothing deleted before the refusal


# Summaries ------------------------------------------------------------------------------------------------
def test_count_tables_keep_their_order_on_a_rerun(tmp_path):
    """A finished stage run again reads its counts back from the manifest, where they are stored sorted: the
    table still lists them in the stage's order."""
    from test_pipeline import make_crawl

    crawl, dataset = make_crawl(tmp_path / "crawl", n_per_class=2), tmp_path / "ds"

    def rows(*args) -> list[str]:
        result = runner.invoke(app, [str(a) for a in args], **WIDE)
        assert result.exit_code == 0, result.output
        return [line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│")]

    for args in (("ingest", crawl, "--out", dataset), ("teach", dataset, "--teacher", "vader")):
        first = rows(*args)
        assert first[:2] == ["posts", "ok"] and rows(*args) == first


def test_readable_values():
    from visent.core.display import ordered, readable

    assert readable(1 / 3) == "0.3333" and readable(0.0003) == "0.0003" and readable(3692) == "3,692"
    assert readable({"negative": 12, "neutral": 0}) == "negative: 12, neutral: 0"
    assert readable({"seed": 0, "balance": False, "thresholds": {"negative": 0.5, "positive": 0.7}}) == \
        "seed: 0, balance: no, thresholds: (negative: 0.5, positive: 0.7)"
    assert readable(["a", "b"]) == "a, b" and readable(None) == ""
    assert list(ordered({"error": 1, "zeta": 0, "posts": 3, "alpha": 2}, ("posts", "ok", "error"))) == \
        ["posts", "error", "alpha", "zeta"]
