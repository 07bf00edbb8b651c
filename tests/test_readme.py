"""The README's *Your own crawl* runs as written: its example posts are read as it says, and its commands, taken
from the README itself, run as whole `visent` processes on a crawl of that shape."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_pipeline import make_crawl, make_image
from visent.ingest import detect_format
from visent.ingest.readers import READERS

README = Path(__file__).resolve().parents[1] / "README.md"


def your_own_crawl(page: Path = README) -> tuple[list[str], list[str]]:
    """The section's example JSONL lines and its command lines (comments dropped), as the README has them."""
    section = page.read_text(encoding="utf-8").split("\n## Your own crawl\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```\n(.*?)^```$", section, flags=re.S | re.M)
    posts = next(block for block in blocks if block.startswith("{")).splitlines()
    commands = next(block for block in blocks if block.startswith("visent ")).splitlines()
    return posts, [line.split("#", 1)[0].strip() for line in commands if line.strip()]


def test_the_docs_home_shows_the_same_crawl_and_commands():
    """The docs site's home page repeats the section: the same posts and the same commands as the README."""
    assert your_own_crawl(README.parent / "docs" / "index.md") == your_own_crawl()


def test_the_example_posts_are_read_as_the_readme_says(tmp_path):
    posts, _ = your_own_crawl()
    assert len(posts) >= 3
    (tmp_path / "posts.jsonl").write_text("\n".join(posts) + "\n", encoding="utf-8")
    assert detect_format(tmp_path / "posts.jsonl") == "jsonl"
    read = list(READERS.create("jsonl", source=tmp_path / "posts.jsonl"))
    given = [json.loads(line) for line in posts]
    assert [post.post_id for post in read] == [post["id"] for post in given]
    assert [post.text for post in read] == [post["text"] for post in given]
    assert [post.image_ref for post in read] == [post["image"] for post in given]
    assert [post.lang for post in read] == [post.get("lang") for post in given]


@pytest.mark.slow
def test_the_commands_run_as_written_on_a_crawl_of_that_shape(tmp_path):
    _, commands = your_own_crawl()
    assert [shlex.split(line)[:2] for line in commands] == [["visent", "build"], ["visent", "predict"],
                                                            ["visent", "report"]]
    make_crawl(tmp_path, n_per_class=24)  # posts.jsonl, images beside it, a broken line and a missing image
    (tmp_path / "new-photos").mkdir()
    for i, mood in enumerate(("positive", "negative")):
        make_image(tmp_path / "new-photos" / f"{i}.jpg", mood, seed=500 + i)
    env = {**os.environ, "VISENT_PROGRESS": "0", "VISENT_CACHE": str(tmp_path / "cache")}
    for line in commands:
        done = subprocess.run([sys.executable, "-m", "visent", *shlex.split(line)[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (line, done.stdout + done.stderr)
        assert "Traceback" not in done.stdout + done.stderr, line
    written = {arg for line in commands for arg in shlex.split(line) if arg.endswith((".csv", ".html"))}
    for name in written:
        assert (tmp_path / name).stat().st_size > 0, name
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",ok," in row for row in rows[1:])
