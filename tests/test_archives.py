"""Archive import: `visent ingest crawl.zip` reads the crawl inside, and refuses members that escape."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from visent import Dataset
from visent.cli import app
from visent.ingest import READERS, detect_format, ingest
from visent.ingest.archives import ArchiveError, extract


def jpeg(color, size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Extractions go to a temporary folder of the test's own, so leftovers can be seen."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def jsonl_crawl(root: Path) -> Path:
    (root / "img").mkdir(parents=True)
    for i, color in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        (root / "img" / f"{i}.jpg").write_bytes(jpeg(color))
    lines = [json.dumps({"id": f"p{i}", "text": f"post {i}", "image": f"img/{i}.jpg", "label": "positive"})
             for i in range(3)]
    lines += ["{broken", json.dumps({"id": "gone", "text": "missing file", "image": "img/none.jpg"})]
    (root / "posts.jsonl").write_text("\n".join(lines) + "\n")
    (root / "more").mkdir()
    (root / "more" / "extra.csv").write_text("id,text,image\nc1,from csv,../img/1.jpg\n")
    return root


def mvsa_crawl(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    for i in range(1, 5):
        (root / "data" / f"{i}.jpg").write_bytes(jpeg((40 * i, 10, 10)))
        (root / "data" / f"{i}.txt").write_bytes(f"post {i}: Je suis très fâché contre ça… vraiment".encode("cp1252"))
    (root / "data" / "5.txt").write_text("no picture")
    (root / "labelResultAll.txt").write_text("ID\ttext,image\n1\tpositive,negative\n3\tneutral,neutral\n")
    return root


def pack(folder: Path, archive: Path) -> Path:
    """``folder`` packed as ``archive`` (its kind from the suffix), members under the folder's name."""
    files = sorted(folder.rglob("*"))
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in files:
                bundle.write(path, path.relative_to(folder.parent).as_posix())
    else:
        mode = {".tar": "w", ".tgz": "w:gz", ".gz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}[archive.suffix]
        with tarfile.open(archive, mode) as bundle:
            bundle.add(folder, folder.name)
    return archive


def posts_of(out: Path) -> list[dict]:
    return Dataset(out).read_table("posts").to_pylist()


def assert_same_dataset(from_archive: Path, from_folder: Path, prefix: str) -> None:
    packed, unpacked = posts_of(from_archive), posts_of(from_folder)
    assert len(packed) == len(unpacked) > 0
    for a, b in zip(packed, unpacked):
        assert a["source"] == prefix + b["source"]
        assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}
    stored = [(r["image_sha256"], Dataset(from_archive).image_path(r["image_file"])) for r in packed if r["image_file"]]
    assert stored and all(hashlib.sha256(path.read_bytes()).hexdigest() == digest for digest, path in stored)
    for name in ("human_labels",):
        assert Dataset(from_archive).has_table(name) == Dataset(from_folder).has_table(name)
        if Dataset(from_folder).has_table(name):
            assert Dataset(from_archive).read_table(name).equals(Dataset(from_folder).read_table(name))


# --------------------------------------------------------------------------- good archives
@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar", ".tgz", ".tar.bz2", ".tar.xz"])
def test_jsonl_crawl_archive_ingests_like_the_folder(tmp_path, private_tmp, suffix):
    folder = jsonl_crawl(tmp_path / "crawl")
    archive = pack(folder, tmp_path / f"crawl{suffix}")
    assert detect_format(archive) == "archive"
    ingest(folder, tmp_path / "from-folder", workers=2)
    counts = ingest(archive, tmp_path / "from-archive", workers=2, batch_size=4)
    assert counts["ok"] == 4 and counts["error"] == 2
    assert_same_dataset(tmp_path / "from-archive", tmp_path / "from-folder", f"crawl{suffix}!crawl/")
    sources = {r["post_id"]: r["source"] for r in posts_of(tmp_path / "from-archive")}
    assert sources["p0"] == f"crawl{suffix}!crawl/posts.jsonl:1"
    assert list(private_tmp.iterdir()) == []  # the extraction is gone once ingest has finished


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_mvsa_archive_ingests_like_the_folder(tmp_path, private_tmp, suffix):
    folder = mvsa_crawl(tmp_path / "MVSA_Single")
    archive = pack(folder, tmp_path / f"mvsa{suffix}")
    ingest(folder, tmp_path / "from-folder", workers=2)
    # batch_size=2: the last post is stored after the reader has finished, its file must still exist
    counts = ingest(archive, tmp_path / "from-archive", workers=2, batch_size=2)
    assert counts == {"posts": 5, "ok": 4, "error": 1, "images": 4, "with_human_labels": 2, "text_repaired": 4}
    assert_same_dataset(tmp_path / "from-archive", tmp_path / "from-folder", f"mvsa{suffix}!MVSA_Single/")
    rows = {r["post_id"]: r for r in posts_of(tmp_path / "from-archive")}
    assert rows["2"]["source"] == f"mvsa{suffix}!MVSA_Single/data/2.txt" and rows["2"]["text"] == "post 2: Je suis très fâché contre ça… vraiment"
    assert list(private_tmp.iterdir()) == []


def test_archive_without_a_top_folder_and_single_file_archives(tmp_path):
    folder = mvsa_crawl(tmp_path / "m")
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as bundle:  # data/1.jpg ... at the top, no wrapping folder
        for path in sorted(folder.rglob("*")):
            bundle.write(path, path.relative_to(folder).as_posix())
    posts = list(READERS.create("archive", source=archive))
    assert [p.post_id for p in posts] == ["1", "2", "3", "4", "5"]
    assert posts[0].source == "flat.zip!data/1.txt" and posts[0].text_label == "positive"

    tweet = {"id_str": "9", "full_text": "hello", "user": {},
             "extended_entities": {"media": [{"type": "photo", "media_url_https": "https://x/9.jpg"}]}}
    single = tmp_path / "tweets.tar.gz"
    with tarfile.open(single, "w:gz") as bundle:
        data = json.dumps([tweet]).encode()
        info = tarfile.TarInfo("tweets.json")
        info.size = len(data)
        bundle.addfile(info, io.BytesIO(data))
    (post,) = READERS.create("archive", source=single)
    assert (post.post_id, post.image_ref, post.source) == ("9", "https://x/9.jpg", "tweets.tar.gz!tweets.json[0]")


def test_folder_of_images_archive(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "beach.jpg").write_bytes(jpeg((250, 200, 0)))
    (folder / "beach.txt").write_text("at the beach")
    (folder / "alone.jpg").write_bytes(jpeg((1, 2, 3)))
    archive = pack(folder, tmp_path / "pics.zip")
    ingest(folder, tmp_path / "a", workers=1)
    ingest(archive, tmp_path / "b", workers=1)
    assert_same_dataset(tmp_path / "b", tmp_path / "a", "pics.zip!pics/")


def test_posts_keep_their_files_until_dropped(tmp_path, private_tmp):
    archive = pack(jsonl_crawl(tmp_path / "crawl"), tmp_path / "crawl.zip")
    posts = list(READERS.create("archive", source=archive))  # the reader has finished
    image = posts[0].base_dir / posts[0].image_ref
    assert image.is_file() and image.read_bytes()[:2] == b"\xff\xd8"
    del posts
    assert not image.exists() and list(private_tmp.iterdir()) == []


def test_image_paths_may_not_leave_the_archive(tmp_path):
    (tmp_path / "outside.jpg").write_bytes(jpeg((9, 9, 9)))
    folder = tmp_path / "crawl"
    folder.mkdir()
    (folder / "in.jpg").write_bytes(jpeg((250, 0, 0)))
    refs = {"inside": "in.jpg", "up": "../../outside.jpg", "up-inside": "../crawl/in.jpg", "absolute": str(tmp_path / "outside.jpg"),
            "file-url": (tmp_path / "outside.jpg").as_uri(), "home": "~/outside.jpg", "web": "http://127.0.0.1:9/a.jpg"}
    (folder / "posts.jsonl").write_text("\n".join(json.dumps({"id": k, "text": k, "image": v}) for k, v in refs.items()))
    archive = pack(folder, tmp_path / "crawl.zip")
    ingest(archive, tmp_path / "ds", workers=2, retries=0, timeout=1.0)
    rows = {r["post_id"]: r for r in posts_of(tmp_path / "ds")}
    assert rows["inside"]["ingest_status"] == rows["up-inside"]["ingest_status"] == "ok"
    for name in ("up", "absolute", "file-url", "home"):
        assert rows[name]["ingest_status"] == "error" and rows[name]["image_ref"] is None
        assert rows[name]["ingest_reason"] == (f"image path {refs[name]!r} points outside the archive; pack the image "
                                               f"into the archive with a relative path")
    assert rows["web"]["ingest_status"] == "error" and "outside the archive" not in rows["web"]["ingest_reason"]


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(refs=st.lists(st.one_of(st.text(max_size=30), st.sampled_from(["\x00", "a\x00b", "~", "~nobody/x", "file://",
                                                                        "file:///etc/passwd", "//host/x", "C:\\x.jpg",
                                                                        "..", "/", "", "http://[::1"])),
                     min_size=1, max_size=5))
def test_any_image_reference_in_an_archive(refs):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "crawl"
        folder.mkdir()
        (folder / "posts.jsonl").write_text("\n".join(json.dumps({"id": i, "image": r}) for i, r in enumerate(refs)))
        posts = list(READERS.create("archive", source=pack(folder, Path(scratch) / "crawl.zip")))
        assert len(posts) == len(refs)
        for post in posts:
            assert post.error or post.image_ref
            if post.image_ref and "://" not in post.image_ref and not post.image_ref.startswith("~"):
                where = post.base_dir / post.image_ref
                if "\x00" not in post.image_ref:
                    assert where.resolve().is_relative_to(post.keep.path)


# --------------------------------------------------------------------------- evil archives
def zip_with(path: Path, *members: tuple[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members:
            bundle.writestr(name, data)
    return path


def tar_with(path: Path, *members: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        bundle.addfile(tarfile.TarInfo("crawl/posts.jsonl"), io.BytesIO(b""))
        for member in members:
            bundle.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def evil_cases(tmp_path: Path) -> list[tuple[Path, str, Path | None]]:
    """(archive, words the refusal must contain, a path that must not exist afterwards)."""
    outside = tmp_path / "outside.txt"
    victim = tmp_path / "victim"
    return [
        (zip_with(tmp_path / "dotdot.zip", ("crawl/ok.txt", b"x"), ("crawl/../../outside.txt", b"pwned")),
         "'crawl/../../outside.txt' has a '..' component", outside),
        (zip_with(tmp_path / "absolute.zip", (str(outside), b"pwned")),
         f"{str(outside)!r} has an absolute path", outside),
        (zip_with(tmp_path / "backslash.zip", ("..\\outside.txt", b"pwned")), "'..\\\\outside.txt' has a '..'", None),
        (zip_with(tmp_path / "zlink.zip", zip_symlink("crawl/etc", "/etc")),
         "'crawl/etc' is a symbolic link", None),
        (tar_with(tmp_path / "dotdot.tar.gz", tar_member("../outside.txt", size=5), data=b"pwned"),
         "'../outside.txt' has a '..' component", outside),
        (tar_with(tmp_path / "absolute.tar.gz", tar_member(str(outside), size=5), data=b"pwned"),
         "has an absolute path", outside),
        (tar_with(tmp_path / "symlink.tar.gz", tar_member("crawl/etc", tarfile.SYMTYPE, "/etc"),
                  tar_member("crawl/etc/passwd", size=5), data=b"pwned"),
         "'crawl/etc' is a symbolic link (to '/etc')", None),
        (tar_with(tmp_path / "hardlink.tar.gz", tar_member("crawl/pw", tarfile.LNKTYPE, str(victim))),
         f"'crawl/pw' is a hard link (to {str(victim)!r})", None),
        (tar_with(tmp_path / "fifo.tar.gz", tar_member("crawl/pipe", tarfile.FIFOTYPE)),
         "'crawl/pipe' is a device or fifo", None),
        (tar_with(tmp_path / "device.tar.gz", tar_member("crawl/sda", tarfile.BLKTYPE)),
         "'crawl/sda' is a device or fifo", None),
    ]


def test_evil_archives_are_refused_and_write_nothing(tmp_path, private_tmp):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    cases = evil_cases(tmp_path)
    before = files_under(tmp_path)
    for archive, words, must_not_exist in cases:
        assert detect_format(archive) == "archive"
        with pytest.raises(ArchiveError) as refused:
            list(READERS.create("archive", source=archive))
        message = str(refused.value)
        assert message.startswith(f"{archive.name}: member ") and words in message, message
        assert "unpack it yourself" in message
        assert must_not_exist is None or not must_not_exist.exists()
        assert list(private_tmp.iterdir()) == []  # nothing left in the temporary folder either
    assert files_under(tmp_path) == before and victim.read_text() == "precious"
    assert not (Path("/etc") / "passwd").read_text().startswith("pwned")


def test_zip_bomb_and_member_count_are_capped(tmp_path, private_tmp, monkeypatch):
    bomb = zip_with(tmp_path / "bomb.zip", ("crawl/a.txt", b"a"), ("crawl/zeros.bin", bytes(5_000_000)))
    assert bomb.stat().st_size < 20_000
    monkeypatch.setenv("VISENT_ARCHIVE_MAX_BYTES", "1000000")
    with pytest.raises(ArchiveError, match=r"bomb.zip: extracts to more than 1000000 bytes \(at 'crawl/zeros.bin'\), "
                                           r"possibly a zip bomb.*VISENT_ARCHIVE_MAX_BYTES"):
        extract(bomb)
    assert list(private_tmp.iterdir()) == []
    monkeypatch.setenv("VISENT_ARCHIVE_MAX_BYTES", "6000000")
    extract(bomb).cleanup()  # under a larger cap the same archive is fine

    many = zip_with(tmp_path / "many.zip", *[(f"crawl/{i}.txt", b"t") for i in range(30)])
    monkeypatch.setenv("VISENT_ARCHIVE_MAX_MEMBERS", "20")
    with pytest.raises(ArchiveError, match=r"many.zip: more than 20 members"):
        extract(many)
    monkeypatch.setenv("VISENT_ARCHIVE_MAX_MEMBERS", "lots")
    with pytest.raises(ArchiveError, match="VISENT_ARCHIVE_MAX_MEMBERS='lots' is not a whole number"):
        extract(many)
    assert list(private_tmp.iterdir()) == []


def test_damaged_and_duplicate_archives(tmp_path, private_tmp):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is no zip file")
    with pytest.raises(ArchiveError, match="fake.zip is not a readable zip archive"):
        extract(fake)
    good = pack(jsonl_crawl(tmp_path / "crawl"), tmp_path / "crawl.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="cut.tar.gz"):
        extract(cut)
    with pytest.warns(UserWarning, match="Duplicate name: 'crawl/a.txt'"):  # zipfile lets it be made, and says so
        twice = zip_with(tmp_path / "twice.zip", ("crawl/a.txt", b"1"), ("crawl/a.txt", b"2"))
    with pytest.raises(ArchiveError, match="'crawl/a.txt' appears twice"):
        extract(twice)
    assert list(private_tmp.iterdir()) == []


def test_cli_refuses_an_evil_archive_in_one_line(tmp_path):
    archive = zip_with(tmp_path / "crawl.zip", ("../../escape.txt", b"pwned"))
    result = CliRunner().invoke(app, ["ingest", str(archive), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 1
    assert "crawl.zip: member '../../escape.txt' has a '..' component" in result.output
    assert not (tmp_path.parent / "escape.txt").exists()
    assert not (tmp_path / "ds").exists()  # no dataset with an ingest stage forever "running"


@pytest.mark.parametrize("engine", ["local", "elsewhere"])
def test_a_refused_archive_leaves_no_dataset_behind(tmp_path, private_tmp, engine):
    from visent.engine import LocalEngine
    from visent.ingest.worker import ingest as ingest_with

    class Elsewhere(LocalEngine):  # an engine other than the local one: the checkpoint is filled first
        name = "elsewhere"

    run = None if engine == "local" else Elsewhere()
    refused = zip_with(tmp_path / "evil.zip", ("crawl/posts.jsonl", b"{}"), ("../escape.txt", b"pwned"))
    with pytest.raises(ArchiveError, match="evil.zip: member '../escape.txt' has a '..' component"):
        ingest_with(refused, tmp_path / "new" / "ds", engine=run)
    assert not (tmp_path / "new").exists() and list(private_tmp.iterdir()) == []
    # into a dataset that holds an earlier crawl: that crawl stays as it was, its ingest done
    good = pack(jsonl_crawl(tmp_path / "crawl"), tmp_path / "crawl.zip")
    counts = ingest_with(good, tmp_path / "ds", engine=run, workers=1)
    before = {p: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    with pytest.raises(ArchiveError):
        ingest_with(refused, tmp_path / "ds", engine=run)
    assert {p: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()} == before
    assert Dataset(tmp_path / "ds").stage_info("ingest")["counts"] == counts


# --------------------------------------------------------------------------- random member names
_PIECES = st.sampled_from(["..", "..", ".", "", "a", "b", "data", "x.txt", "\\", "..\\..", "C:", "~", "é", "🙂",
                           " ", "//", "\x7f", "%2e%2e"]) | st.text(max_size=8)
_NAMES = st.lists(_PIECES, min_size=1, max_size=6).map("/".join)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(names=["../escaped"], absolute=False, kind="zip")
@example(names=["data/../../../escaped"], absolute=True, kind="zip")
@example(names=["a/../../escaped"], absolute=False, kind="tar")
@given(names=st.lists(st.one_of(_NAMES, st.text(max_size=40), st.just("a" * 300)), min_size=1, max_size=3),
       absolute=st.sampled_from([False, False, False, True]), kind=st.sampled_from(["zip", "tar"]))
@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning:zipfile")  # zipfile, as names repeat in the fixture
def test_random_member_names_never_write_outside(names, absolute, kind):
    with tempfile.TemporaryDirectory() as scratch:
        sandbox = Path(scratch).resolve()
        into = sandbox / "in" / "deeper"
        into.mkdir(parents=True)
        if absolute:
            names = [f"{sandbox}/{name}" for name in names]
        archive = sandbox / f"random.{kind}"
        try:
            if kind == "zip":
                zip_with(archive, *[(name, b"data") for name in names])
            else:
                with tarfile.open(archive, "w") as bundle:
                    for name in names:
                        bundle.addfile(tar_member(name, size=4), io.BytesIO(b"data"))
        except (ValueError, IndexError, UnicodeEncodeError):  # a name the archive format itself cannot hold
            return
        before = files_under(sandbox)
        try:
            extraction = extract(archive, into=into)
        except ArchiveError as refused:
            assert str(refused).startswith(f"random.{kind}")
            assert files_under(sandbox) == before  # refused: nothing written, nothing left behind
            event("refused: " + re.sub(r"member .* (has|is|appears|resolves)", r"member \1", str(refused))[:70])
            return
        event("extracted")
        written = files_under(sandbox) - before
        inside = extraction.path
        assert all(p == inside or inside in p.parents for p in written)
        assert all(p.read_bytes() == b"data" for p in written if p.is_file() and not p.is_symlink())
        extraction.cleanup()
        assert files_under(sandbox) == before


# --------------------------------------------------------------------------- damaged archives
def _packed_crawls() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = jsonl_crawl(Path(scratch) / "crawl")
        (folder / "noise.bin").write_bytes(np.random.default_rng(3).bytes(4000) + bytes(4000))
        return {suffix: pack(folder, Path(scratch) / f"crawl{suffix}").read_bytes()
                for suffix in (".zip", ".tar", ".tar.gz", ".tar.bz2", ".tar.xz")}


PACKED = _packed_crawls()


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(sorted(PACKED)), data=st.data())
def test_damaged_archives_are_refused_or_extracted_inside(suffix, data):
    damaged = bytearray(PACKED[suffix])
    for _ in range(data.draw(st.integers(1, 4), label="damages")):
        damaged[data.draw(st.integers(0, len(damaged) - 1), label="at")] = data.draw(st.integers(0, 255), label="to")
    if data.draw(st.booleans(), label="cut"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)), label="cut at")]
    with tempfile.TemporaryDirectory() as scratch:
        sandbox = Path(scratch).resolve()
        archive = sandbox / f"crawl{suffix}"
        archive.write_bytes(bytes(damaged))
        try:
            extraction = extract(archive, into=sandbox)
        except ArchiveError as refused:
            assert str(refused).startswith(f"crawl{suffix}")
            assert files_under(sandbox) == {archive}
            return
        assert all(p == archive or extraction.path in p.parents or p == extraction.path for p in files_under(sandbox))
        extraction.cleanup()
