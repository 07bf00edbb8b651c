"""Bad input, tried systematically: generated crawls for every reader and generated images for every decoder.

Readers (tweet JSON v1.1/v2, JSONL, CSV, MVSA folders): reading never raises, every record shows up
as posts that are either fine or carry a reason, and the full ingest gives one row per post.
Images (through sniff_image / ImageFetcher, the clean stage's analyse_image and the backbones'
load_image): no crash, each rejected with a clear reason, the same one from each of them, or decoded correctly.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import pickle
import struct
import tempfile
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from visent import Dataset
from visent.clean.checks import analyse_image
from visent.core.images import ImageError, load_image
from visent.ingest import READERS, ImageFetcher, detect_format, ingest, sniff_image
from visent.ingest.readers import IMAGE_SUFFIXES

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CLASSES = {None, "negative", "neutral", "positive"}


def jpeg(color=(200, 30, 30), size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


GOOD_JPEG = jpeg()


# --------------------------------------------------------------------------- what every reader promises
def check_posts(posts: list, *, records: int | None = None) -> None:
    """Each post is fine (an image reference, no error) or says what is wrong; all fields are valid text."""
    if records:
        assert posts, "records went missing"
    for post in posts:
        assert isinstance(post.post_id, str) and post.post_id
        assert isinstance(post.source, str) and post.source
        assert isinstance(post.text, str)
        assert post.text_label in CLASSES and post.image_label in CLASSES
        assert isinstance(post.error, str)
        assert post.error or (isinstance(post.image_ref, str) and post.image_ref)
        for value in (post.post_id, post.source, post.text, post.error, post.image_ref or "", post.lang or ""):
            value.encode("utf-8")  # the tables hold UTF-8: no lone surrogates


def check_ingest(source: Path, fmt: str, posts: list) -> None:
    """The full ingest of ``source``: exactly one row per post, unique ids, a status and, for errors, a reason;
    one warning when some post has fields but none that visent reads, and none otherwise."""
    unread = any(post.fields and len(post.ignored) == len(post.fields) for post in posts)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "ds"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            counts = ingest(source, out, format=fmt, workers=1, retries=0, timeout=1.0)
        said = [w for w in caught if "have no field visent reads" in str(w.message)]
        assert len(said) == unread, [str(w.message) for w in caught]
        for other in caught:  # anything else is the test run's to show
            if other not in said:
                warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        rows = Dataset(out).read_table("posts").to_pylist()
        assert counts["posts"] == len(rows) == len(posts)
        ids = [r["post_id"] for r in rows]
        assert len(set(ids)) == len(ids)
        assert Counter(i.split("#")[0] for i in ids) == Counter(p.post_id.split("#")[0] for p in posts)
        for row in rows:
            assert row["ingest_status"] in ("ok", "error")
            if row["ingest_status"] == "error":
                assert row["ingest_reason"]
            else:
                assert row["ingest_reason"] == "" and row["image_sha256"]
                assert (out / row["image_file"]).read_bytes() == GOOD_JPEG
        assert counts["ok"] == sum(r["ingest_status"] == "ok" for r in rows)


def read(fmt: str, path: Path) -> list:
    return list(READERS.create(fmt, source=path))


# --------------------------------------------------------------------------- JSON building blocks
# Image references that never reach the network: a real local image, missing files, refused
# schemes, a closed local port; junk text never holds "://", nor starts with "~" (see
# test_home_directory_of_an_unknown_user).
IMAGE_REFS = st.sampled_from(["good.jpg", "missing.jpg", "", "sub/../good.jpg", "ftp://x/y.jpg",
                              "http://127.0.0.1:9/a.jpg", "file:///nonexistent/x.jpg", "/", ".", "notes.txt"])
JUNK_TEXT = st.text(max_size=30).filter(lambda s: "://" not in s and not s.strip().startswith("~"))
ODD_TEXT = st.one_of(
    JUNK_TEXT,
    st.sampled_from(["\ud800", "a\udfffb", "\ud83d", "\u0000", "\u202e RTL", "😊" * 50, "é" * 3000, "\r\n\t",
                     "x" * 20_000]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 30),
                    st.floats(allow_nan=False), ODD_TEXT)
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JUNK_TEXT, inner, max_size=3),
                    max_leaves=8)
IDS = st.one_of(st.sampled_from(["1", "2", "2", "10", "x"]), st.integers(-5, 5), st.integers(min_value=2 ** 63),
                ODD_TEXT, JUNK)


def maybe(value_strategy, junk=JUNK):
    """Usually the right kind of value, sometimes junk, sometimes missing (None marks "leave out")."""
    return st.one_of(value_strategy, value_strategy, junk, st.just(None))


def media_v1():
    return st.fixed_dictionaries({}, optional={
        "type": maybe(st.sampled_from(["photo", "video", "animated_gif"])),
        "media_url_https": maybe(IMAGE_REFS), "media_url": maybe(IMAGE_REFS)})


def tweet_v1(depth: int = 0):
    entities = st.fixed_dictionaries({}, optional={"media": maybe(st.lists(maybe(media_v1()), max_size=3))})
    fields = {
        "id": maybe(IDS), "text": maybe(ODD_TEXT), "full_text": maybe(ODD_TEXT),
        "lang": maybe(st.sampled_from(["en", "fr", "und"])), "created_at": maybe(ODD_TEXT),
        "entities": maybe(entities), "extended_entities": maybe(entities), "user": maybe(st.just({})),
        "extended_tweet": maybe(st.fixed_dictionaries({}, optional={"full_text": maybe(ODD_TEXT),
                                                                   "extended_entities": maybe(entities)})),
        "junk": JUNK,
    }
    if depth < 1:
        fields["retweeted_status"] = maybe(tweet_v1(depth + 1))
    return st.fixed_dictionaries({"id_str": maybe(IDS)}, optional=fields)


def page_v2():
    media = st.fixed_dictionaries({}, optional={
        "media_key": maybe(st.sampled_from(["3_1", "3_2", "7_1"])), "type": maybe(st.sampled_from(["photo", "video"])),
        "url": maybe(IMAGE_REFS)})
    tweet = st.fixed_dictionaries({"id": maybe(IDS)}, optional={
        "text": maybe(ODD_TEXT), "lang": maybe(st.just("en")), "created_at": maybe(ODD_TEXT),
        "attachments": maybe(st.fixed_dictionaries({}, optional={
            "media_keys": maybe(st.lists(maybe(st.sampled_from(["3_1", "3_2", "7_1"])), max_size=3))})),
        "note_tweet": maybe(st.fixed_dictionaries({}, optional={"text": maybe(ODD_TEXT)})),
        "referenced_tweets": maybe(st.lists(maybe(st.fixed_dictionaries(
            {"type": maybe(st.sampled_from(["retweeted", "quoted"])), "id": maybe(IDS)})), max_size=2)),
    })
    includes = st.fixed_dictionaries({}, optional={"media": maybe(st.lists(maybe(media), max_size=4)),
                                                   "tweets": maybe(st.lists(maybe(tweet), max_size=2))})
    return st.fixed_dictionaries({"data": st.one_of(st.lists(maybe(tweet), max_size=4), tweet, JUNK)},
                                 optional={"includes": maybe(includes), "meta": JUNK, "errors": JUNK})


def located(posts: list, layout: str) -> set[int]:
    """The indexes of the records the posts came from ("tweets.json[2]" → 2, "tweets.jsonl:3" → 2)."""
    found = set()
    for post in posts:
        if layout == "array":
            found.add(int(post.source.rsplit("[", 1)[1].rstrip("]")))
        elif layout == "jsonl" and ":" in post.source:
            found.add(int(post.source.rsplit(":", 1)[1]) - 1)
        else:  # a single object, or a JSONL file of one line too long to sniff (read as one document)
            found.add(0)
    return found


def drop_nones(value):
    """None in a generated dict means "leave the key out" (top-level nulls stay, as real API nulls)."""
    if isinstance(value, dict):
        return {k: drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nones(v) for v in value]
    return value


def write_json(folder: Path, records: list, layout: str, ensure_ascii: bool) -> Path:
    if layout == "object":
        path, body = folder / "tweet.json", json.dumps(records[0], ensure_ascii=ensure_ascii, indent=1)
    elif layout == "array":
        path, body = folder / "tweets.json", json.dumps(records, ensure_ascii=ensure_ascii)
    else:
        path, body = folder / "tweets.jsonl", "\n".join(json.dumps(r, ensure_ascii=ensure_ascii) for r in records)
    path.write_bytes(body.encode("utf-8", "surrogatepass"))  # unescaped lone surrogates: bytes that are not UTF-8
    return path


def crawl_folder(scratch: str) -> Path:
    folder = Path(scratch)
    (folder / "good.jpg").write_bytes(GOOD_JPEG)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    return folder


# --------------------------------------------------------------------------- tweets
@SETTINGS
@given(records=st.lists(st.one_of(tweet_v1(), page_v2()).map(drop_nones), min_size=1, max_size=4),
       layout=st.sampled_from(["object", "array", "jsonl"]), ensure_ascii=st.booleans())
@pytest.mark.slow
@example(records=[{"data": [], "includes": True}], layout="object", ensure_ascii=False)
def test_tweet_json_never_crashes(records, layout, ensure_ascii):
    with tempfile.TemporaryDirectory() as scratch:
        source = write_json(crawl_folder(scratch), records, layout, ensure_ascii)
        fmt = detect_format(source)
        assert fmt in ("tweets", "jsonl")
        posts = read("tweets", source)
        check_posts(posts)
        shown = range(1 if layout == "object" else len(records))
        pages_without_tweets = {i for i in shown if records[i].get("data") == []}
        found = located(posts, layout)  # every tweet is at least one post (a page without tweets none, or an error)
        assert set(shown) - pages_without_tweets <= found <= set(shown)
        assert all(p.error for p in posts if located([p], layout) <= pages_without_tweets)
        flat = read("jsonl", source)
        check_posts(flat)
        assert located(flat, layout) == set(shown)
        check_ingest(source, "tweets", posts)


@SETTINGS
@given(values=st.lists(JUNK, min_size=1, max_size=4), layout=st.sampled_from(["array", "jsonl"]))
def test_any_json_values_never_crash(values, layout):
    with tempfile.TemporaryDirectory() as scratch:
        source = write_json(Path(scratch), values, layout, True)
        check_posts(read("tweets", source))
        posts = read("jsonl", source)
        check_posts(posts)
        if layout == "jsonl" and len(values) == 1 and isinstance(values[0], list):  # one line: a JSON array
            assert located(posts, "array") == set(range(len(values[0])))
        else:
            assert located(posts, layout) == set(range(len(values)))  # every value is at least one post


# --------------------------------------------------------------------------- JSONL bytes
FLAT_POST = st.fixed_dictionaries({}, optional={
    "id": maybe(IDS), "post_id": maybe(IDS), "text": maybe(ODD_TEXT), "caption": maybe(ODD_TEXT),
    "image": maybe(st.one_of(IMAGE_REFS, st.lists(IMAGE_REFS, max_size=3))), "label": maybe(ODD_TEXT),
    "text_label": maybe(st.sampled_from(["pos", "negative", "2", "bogus"])), "lang": maybe(JUNK_TEXT),
}).map(drop_nones)
BROKEN_LINES = st.one_of(
    st.sampled_from([b"{broken", b"[1, 2", b"}", b"null", b"\"just a string\"", b"\x00\x00", b"\xff\xfe{}",
                     b"{\"id\": 1e999999}", b"{\"id\": " + b"9" * 5000 + b"}", b"[" * 3000 + b"]" * 3000,
                     b"{\"text\": \"\\ud800\"}", b"\xc3\x28", b"\r", b"   "]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
)


@SETTINGS
@given(first=FLAT_POST, lines=st.lists(st.one_of(FLAT_POST, BROKEN_LINES, st.just(b"")), max_size=8),
       bom=st.booleans(), crlf=st.booleans(), ensure_ascii=st.booleans())
@example(first={"id": 1, "text": "t", "image": "good.jpg"}, lines=[b"\xef\xbb\xbf{\"id\": 2}", b"", b"\xff\xfe"],
         bom=True, crlf=True, ensure_ascii=False)
@example(first={"id": "\ud800", "text": "a\udfffb", "image": "good.jpg"},
         lines=[b"{\"id\": " + b"9" * 5000 + b"}", b"[" * 3000 + b"]" * 3000], bom=False, crlf=False, ensure_ascii=True)
@pytest.mark.slow
def test_jsonl_with_broken_lines(first, lines, bom, crlf, ensure_ascii):
    encoded = []
    for line in [first, *lines]:
        if isinstance(line, dict):
            line = json.dumps(line, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
        encoded.append(line + (b"\r" if crlf else b""))
    body = (codecs.BOM_UTF8 if bom else b"") + b"\n".join(encoded)
    with tempfile.TemporaryDirectory() as scratch:
        source = crawl_folder(scratch) / "posts.jsonl"
        source.write_bytes(body)
        assert detect_format(source) in ("jsonl", "tweets")
        posts = read("jsonl", source)
        check_posts(posts, records=1)
        # the file starts with an object, so it is read line by line: every line with content is a post
        lines_with_content = {n for n, line in enumerate(encoded, 1) if line.strip().removeprefix(codecs.BOM_UTF8)}
        found = {int(p.source.rsplit(":", 1)[1]) if ":" in p.source else 1 for p in posts}  # one long line: "posts.jsonl"
        assert found == lines_with_content
        check_ingest(source, "jsonl", posts)


# --------------------------------------------------------------------------- CSV
CSV_COLUMNS = st.lists(st.sampled_from(["id", "post_id", "Text", "caption", "image", "image_path", "url", "label",
                                        "image_label", "lang", "created_at", "junk", "", "id"]),
                       min_size=1, max_size=6)
CSV_FIELD = st.one_of(IMAGE_REFS, JUNK_TEXT, st.sampled_from(["good.jpg", "a\nb", "\"quoted\"", "x,y;z|w\tv",
                                                               "\x00", "pos", "", "é😊", "'", "\\"]))


@SETTINGS
@given(columns=CSV_COLUMNS, rows=st.lists(st.lists(CSV_FIELD, max_size=8), max_size=6),
       delimiter=st.sampled_from([",", ";", "\t", "|"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
       raw=st.lists(st.binary(max_size=30), max_size=2), suffix=st.sampled_from([".csv", ".tsv"]))
def test_csv_of_any_dialect(columns, rows, delimiter, quoting, encoding, raw, suffix):
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, quoting=quoting)
    writer.writerow(columns)
    writer.writerows(rows)
    try:
        body = text.getvalue().encode(encoding)
    except UnicodeEncodeError:
        body = text.getvalue().encode("utf-8")
    body += b"\n".join(raw)
    with tempfile.TemporaryDirectory() as scratch:
        source = crawl_folder(scratch) / f"posts{suffix}"
        source.write_bytes(body)
        assert detect_format(source) == "csv"
        posts = read("csv", source)
        check_posts(posts)
        check_ingest(source, "csv", posts)


def test_home_directory_of_an_unknown_user(tmp_path):
    source = tmp_path / "posts.csv"
    source.write_text("id,text,image\n1,a picture,~no-such-user-here/a.jpg\n")
    counts = ingest(source, tmp_path / "ds", workers=1)
    assert counts == {"posts": 1, "ok": 0, "error": 1, "images": 0, "with_human_labels": 0}
    (row,) = Dataset(tmp_path / "ds").read_table("posts").to_pylist()
    assert row["ingest_reason"] == "image file not found (~no-such-user-here/a.jpg: no such home directory)"


def test_csv_field_over_the_csv_module_limit(tmp_path):
    source = tmp_path / "posts.csv"
    source.write_text("id,text,image\n1,\"" + "x" * 200_000 + "\",a.jpg\n2,fine,a.jpg\n")
    posts = {p.post_id: p for p in read("csv", source)}
    assert posts["1"].error.startswith("malformed row at posts.csv:") and "field larger than field limit" in posts["1"].error
    assert posts["2"].error == "" and posts["2"].text == "fine"


# --------------------------------------------------------------------------- MVSA folders
STEMS = st.sampled_from(["1", "2", "3", "10", "007", "1_1", "a b", "x", "-4", "12345678901234567890"])
TEXT_BYTES = st.one_of(st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=40),
                       st.sampled_from([b"", "très fâché… vraiment".encode("cp1252"), "хлеб".encode("koi8_r"),
                                        codecs.BOM_UTF8 + b"bom", b"\x00"]))
IMAGE_BYTES = st.sampled_from([GOOD_JPEG, b"", b"not a jpeg", GOOD_JPEG[:100]])
LABEL_LINES = st.one_of(
    st.tuples(STEMS, st.lists(st.tuples(st.sampled_from(["positive", "negative", "neutral", "pos", "?", ""]),
                                        st.sampled_from(["positive", "negative", "neutral", "2", ""])),
                              min_size=1, max_size=3)).map(lambda t: t[0] + "\t" + "\t".join(",".join(v) for v in t[1])),
    st.sampled_from(["ID\ttext,image", "", "\t", "1", "1 positive,negative", ",,,", "1\tpositive", "1\t,\t,"]),
    JUNK_TEXT,
)


@SETTINGS
@given(entries=st.dictionaries(STEMS, st.tuples(st.one_of(st.none(), TEXT_BYTES),
                                                st.lists(st.tuples(st.sampled_from(sorted(IMAGE_SUFFIXES) + [".JPG"]),
                                                                   IMAGE_BYTES), max_size=2)),
                               max_size=6),
       labels=st.one_of(st.none(), st.lists(LABEL_LINES, max_size=6)), label_encoding=st.sampled_from(["utf-8", "cp1252"]),
       bad_name=st.booleans())
@pytest.mark.slow
def test_mvsa_folders(entries, labels, label_encoding, bad_name):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "mvsa"
        data = root / "data"
        data.mkdir(parents=True)
        stems = set()
        for stem, (text, images) in entries.items():
            if text is not None:
                (data / f"{stem}.txt").write_bytes(text)
                stems.add(stem)
            for suffix, image in images:
                (data / f"{stem}{suffix}").write_bytes(image)
                stems.add(stem)
        if bad_name:  # a file name that is not UTF-8, as copied from an old file system
            os.close(os.open(os.fsencode(data) + b"/caf\xe9.jpg", os.O_CREAT | os.O_WRONLY))
            stems.add(os.fsdecode(b"caf\xe9"))
        (data / "subdir.jpg").mkdir()  # a folder named like an image is no post
        if labels is not None:
            (root / "labelResultAll.txt").write_bytes("\n".join(labels).encode(label_encoding, "replace"))
        posts = read("mvsa", root)
        check_posts(posts)
        assert read("mvsa", data) == posts  # the folder or its data/ directory
        # every stem with a file is a post (one per image), and nothing else is
        assert {p.source.rsplit("/", 1)[1].rsplit(".", 1)[0] for p in posts} == \
            {s.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for s in stems}
        if labels is None or not stems:
            assert all(p.text_label is None and p.image_label is None for p in posts)
        check_ingest(root, "mvsa", posts)


def test_mvsa_file_name_that_is_not_utf8(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "1.txt").write_text("fine")
    (data / "1.jpg").write_bytes(GOOD_JPEG)
    with open(os.fsencode(data) + b"/2\xff.jpg", "wb") as handle:
        handle.write(GOOD_JPEG)
    posts = {p.post_id: p for p in read("mvsa", data)}
    assert posts["1"].error == ""
    assert posts["2\ufffd"].image_ref is None
    assert "image name 'data/2\ufffd.jpg' is not valid UTF-8; rename the file" in posts["2\ufffd"].error
    counts = ingest(tmp_path, tmp_path / "ds", workers=1)
    assert counts["posts"] == 2 and counts["ok"] == 1


def test_unknown_format_names_the_file_and_what_to_do(tmp_path):
    source = tmp_path / "crawl.xlsx"
    source.write_bytes(b"PK-ish but not really")
    with pytest.raises(ValueError, match=r"cannot tell the format of .*crawl.xlsx; give a folder, a "
                                         r".jsonl/.json/.csv/.tsv file, a .zip/.tar/.tar.gz archive"):
        detect_format(source)


# =========================================================================== images
# Every decoder visent has: ingest's sniff_image and ImageFetcher (local files), the clean stage's
# analyse_image and the backbones' load_image (all of them visent.core.images underneath).
def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


_NOISE = Image.fromarray(np.random.default_rng(7).integers(0, 255, (40, 48, 3), dtype=np.uint8))
SMALL_IMAGES = {
    "jpeg": _encoded(_NOISE, "JPEG"),
    "progressive jpeg": _encoded(_NOISE, "JPEG", progressive=True),
    "png": _encoded(_NOISE, "PNG"),
    "gif": _encoded(_NOISE, "GIF"),
    "animated gif": _encoded(_NOISE, "GIF", save_all=True, append_images=[_NOISE.rotate(90)]),
    "webp": _encoded(_NOISE, "WEBP"),
    "lossless webp": _encoded(_NOISE, "WEBP", lossless=True),
}


def decode_everywhere(data: bytes, folder: Path) -> dict:
    """What each decoder makes of ``data``, checked to say why whenever it refuses."""
    ext, reason = sniff_image(data)
    assert (ext is None) != (reason == ""), (ext, reason)
    path = folder / "image.bin"
    path.write_bytes(data)
    fetched = ImageFetcher(workers=1).fetch(str(path))
    assert fetched.ok == (ext is not None) and (fetched.ok or fetched.reason == reason)
    check, phash = analyse_image(path)
    assert check.ok == (phash is not None) and (check.ok or check.reason)
    try:
        loaded = load_image(path, 4096)  # no reduced decoding: the full image
    except ImageError as exc:
        assert str(exc) == f"{path}: {exc.reason}"
        loaded = exc
    if check.ok:  # what the clean stage keeps, the backbones can read
        assert isinstance(loaded, Image.Image) and loaded.mode == "RGB"
        assert sorted(loaded.size) == sorted((check.width, check.height))
    if isinstance(loaded, ImageError) and not check.ok and ext is None:  # refused everywhere: for the same reason
        assert reason == check.reason == loaded.reason, (reason, check.reason, loaded.reason)
    return {"sniff": ext, "reason": reason, "check": check, "loaded": loaded}


@SETTINGS
@given(data=st.one_of(st.binary(max_size=600),
                      st.tuples(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                                                 b"BM", b"II*\x00", b"P6\n2 2\n255\n"]),
                                st.binary(max_size=200)).map(b"".join)))
@example(data=b"")
@example(data=b"<html><body>rate limited</body></html>")
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning:PIL")  # Pillow on a random TIFF's directory
def test_zero_and_random_bytes(data):
    with tempfile.TemporaryDirectory() as scratch:
        seen = decode_everywhere(data, Path(scratch))
        if not data:
            assert seen["reason"] == seen["check"].reason == seen["loaded"].reason == "empty file"
        if seen["sniff"] is None:
            assert not seen["check"].ok and isinstance(seen["loaded"], Exception)


@SETTINGS
@given(kind=st.sampled_from(sorted(SMALL_IMAGES)), data=st.data())
def test_truncated_at_any_cut(kind, data):
    whole = SMALL_IMAGES[kind]
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    with tempfile.TemporaryDirectory() as scratch:
        seen = decode_everywhere(whole[:cut], Path(scratch))
    if seen["sniff"] is not None:  # cut after the image data (a trailer, a later frame): still the whole picture
        assert seen["check"].ok and seen["loaded"].size == (48, 40)
        first_frame = Image.open(io.BytesIO(whole)).convert("RGB")
        assert np.abs(np.asarray(seen["loaded"], np.int16) - np.asarray(first_frame, np.int16)).max() <= 2
    else:
        assert not seen["check"].ok
        assert seen["reason"].startswith(("corrupt ", "truncated ", "not an image", "empty file")), seen["reason"]


@SETTINGS
@given(kind=st.sampled_from(sorted(SMALL_IMAGES)), data=st.data())
def test_damaged_bytes(kind, data):
    damaged = bytearray(SMALL_IMAGES[kind])
    for _ in range(data.draw(st.integers(1, 3), label="damages")):
        damaged[data.draw(st.integers(0, len(damaged) - 1), label="at")] = data.draw(st.integers(0, 255), label="to")
    with tempfile.TemporaryDirectory() as scratch:
        decode_everywhere(bytes(damaged), Path(scratch))


def test_broken_png_chunk_is_a_clear_error(tmp_path):
    damaged = bytearray(SMALL_IMAGES["png"])
    damaged[35] = 0  # the length of the chunk after IHDR: Pillow then reads garbage as the next chunk's name
    seen = decode_everywhere(bytes(damaged), tmp_path)
    assert seen["sniff"] is None and seen["reason"].startswith("corrupt PNG image (broken PNG file (chunk")
    assert seen["check"].reason == seen["reason"] and seen["loaded"].reason == seen["reason"]
    assert seen["loaded"].fault == "corrupt" and isinstance(seen["loaded"], ValueError)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (the data is one short row)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(SMALL_IMAGES["gif"])
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


@pytest.mark.parametrize(("data", "width", "height"), [(png_claiming(50_000, 50_000), 50_000, 50_000),
                                                     (gif_claiming(65_535, 65_535), 65_535, 65_535)], ids=["png", "gif"])
def test_decompression_bombs_are_refused(tmp_path, data, width, height):
    seen = decode_everywhere(data, tmp_path)
    assert seen["reason"] == (f"too many pixels ({width} x {height} = {width * height:,} pixels, more than the limit "
                              f"{Image.MAX_IMAGE_PIXELS:,})")
    assert seen["check"].reason == seen["loaded"].reason == seen["reason"]
    assert seen["loaded"].fault == "too_many_pixels" and (seen["loaded"].width, seen["loaded"].height) == (width, height)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # said in visent's words, not Pillow's
def test_images_over_the_limit_but_under_twice_it(tmp_path):
    # Pillow refuses only above twice MAX_IMAGE_PIXELS and warns below: visent refuses from the limit on
    path = tmp_path / "big.png"
    path.write_bytes(png_claiming(12_000, 12_000))
    assert 12_000 * 12_000 > Image.MAX_IMAGE_PIXELS
    reason = f"too many pixels (12000 x 12000 = 144,000,000 pixels, more than the limit {Image.MAX_IMAGE_PIXELS:,})"
    assert analyse_image(path)[0].reason == reason
    with pytest.raises(ImageError, match=r"big.png: too many pixels \(12000 x 12000 = 144,000,000 pixels"):
        load_image(path, 224)
    assert sniff_image(path.read_bytes()) == (None, reason)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_sniff_refuses_what_clean_refuses(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)
    data = _encoded(Image.new("RGB", (150, 150), (9, 9, 9)), "PNG")  # 22500 pixels: over the limit, under twice it
    (tmp_path / "a.png").write_bytes(data)
    reason = "too many pixels (150 x 150 = 22,500 pixels, more than the limit 20,000)"
    assert analyse_image(tmp_path / "a.png")[0].reason == reason
    assert sniff_image(data) == (None, reason)
    with pytest.raises(ImageError, match=r"a\.png: too many pixels \(150 x 150"):
        load_image(tmp_path / "a.png", 224)


def test_a_caller_may_set_a_lower_pixel_limit(tmp_path):
    data = _encoded(Image.new("RGB", (150, 100), (9, 9, 9)), "PNG")
    with pytest.raises(ImageError) as refused:
        load_image(data, 224, max_pixels=14_999)
    assert refused.value.reason == "too many pixels (150 x 100 = 15,000 pixels, more than the limit 14,999)"
    assert str(refused.value) == refused.value.reason  # bytes have no file name to give
    again = pickle.loads(pickle.dumps(refused.value))  # as a worker process would hand it back
    assert (again.fault, again.reason, again.width, again.height) == ("too_many_pixels", refused.value.reason, 150, 100)
    assert load_image(data, 224, max_pixels=15_000).size == (150, 100)
    assert load_image(data, 224, max_pixels=10**12).size == (150, 100)  # never above Pillow's own limit, though


def test_huge_dimensions_within_limits(tmp_path):
    big = Image.new("RGB", (6000, 4000), (20, 120, 220))
    big.paste((250, 250, 0), (0, 0, 600, 400))
    (tmp_path / "big.jpg").write_bytes(_encoded(big, "JPEG", quality=80))
    assert sniff_image((tmp_path / "big.jpg").read_bytes()) == ("jpg", "")
    check = analyse_image(tmp_path / "big.jpg")[0]
    assert (check.ok, check.width, check.height) == (True, 6000, 4000)
    loaded = load_image(tmp_path / "big.jpg", 224)  # decoded at a reduced scale
    assert 224 <= loaded.height < 4000 and loaded.width / loaded.height == pytest.approx(1.5, rel=0.01)
    assert loaded.getpixel((2, 2))[2] < 80 and loaded.getpixel((loaded.width - 3, loaded.height - 3))[2] > 180

    panorama = tmp_path / "panorama.png"
    panorama.write_bytes(_encoded(Image.new("RGB", (30_000, 20), (1, 2, 3)), "PNG"))
    assert analyse_image(panorama)[0].ok and load_image(panorama, 224).size == (30_000, 20)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # red
    cmyk.paste((255, 255, 0, 0), (20, 0, 40, 30))        # blue on the right
    (tmp_path / "cmyk.jpg").write_bytes(_encoded(cmyk, "JPEG", quality=95))
    assert sniff_image((tmp_path / "cmyk.jpg").read_bytes()) == ("jpg", "")
    assert analyse_image(tmp_path / "cmyk.jpg")[0].ok
    loaded = load_image(tmp_path / "cmyk.jpg", 30)
    left, right = np.asarray(loaded, np.int16)[15, 5], np.asarray(loaded, np.int16)[15, 35]
    assert loaded.mode == "RGB" and left[0] > 200 and left[1] < 60 and left[2] < 60
    assert right[2] > 200 and right[0] < 60 and right[1] < 60


@SETTINGS
@given(values=st.lists(st.integers(0, 65535), min_size=2, max_size=16, unique=True))
@example(values=[0, 1000, 30000, 65535])
@example(values=[256, 257])
@example(values=[0, 233])  # 233 * (255 / 233) is 254.99998 in float32
def test_16bit_png_keeps_the_brightness_order(values):
    row = np.array(values, dtype=np.uint16)[None, :]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "deep.png"
        Image.fromarray(row).save(path)
        assert Image.open(path).mode == "I;16"
        seen = decode_everywhere(path.read_bytes(), Path(scratch))
        assert seen["sniff"] == "png" and seen["check"].ok
        grey = np.asarray(seen["loaded"], np.int16)[0]
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
    order = np.argsort(values)
    assert (np.diff(grey[order, 0]) >= 0).all()  # brighter stays brighter
    assert grey[order[-1], 0] == 255 and grey[order[0], 0] < 255


def test_transparency_is_flattened_onto_white(tmp_path):
    rgba = Image.new("RGBA", (30, 10), (255, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (10, 0, 20, 10))
    rgba.paste((0, 0, 255, 128), (20, 0, 30, 10))
    la = Image.new("LA", (30, 10), (0, 0))
    la.paste((0, 255), (10, 0, 20, 10))
    palette = Image.new("P", (30, 10), 0)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    palette.paste(1, (10, 0, 30, 10))
    cases = {"rgba.png": (_encoded(rgba, "PNG"), [(255, 255, 255), (255, 0, 0), (127, 127, 255)]),
             "la.png": (_encoded(la, "PNG"), [(255, 255, 255), (0, 0, 0), (255, 255, 255)]),
             "palette.png": (_encoded(palette, "PNG", transparency=0), [(255, 255, 255), (0, 200, 0), (0, 200, 0)]),
             "palette.gif": (_encoded(palette, "GIF", transparency=0), [(255, 255, 255), (0, 200, 0), (0, 200, 0)]),
             "rgba.webp": (_encoded(rgba, "WEBP", lossless=True), [(255, 255, 255), (255, 0, 0), (127, 127, 255)])}
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert sniff_image(data)[1] == "" and analyse_image(tmp_path / name)[0].ok
        loaded = load_image(tmp_path / name, 10)
        got = [loaded.getpixel((x, 5)) for x in (5, 15, 25)]
        assert np.abs(np.array(got) - np.array(expected)).max() <= 2, (name, got)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 12), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (tmp_path / "anim.gif").write_bytes(data)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    assert sniff_image(data) == ("gif", "")
    check = analyse_image(tmp_path / "anim.gif")[0]
    assert (check.ok, check.width, check.height, check.format) == (True, 16, 12, "GIF")
    loaded = load_image(tmp_path / "anim.gif", 12)
    assert loaded.size == (16, 12) and loaded.getpixel((8, 6)) == (255, 0, 0)


@pytest.mark.parametrize(("orientation", "size", "corner"), [
    (1, (60, 40), "top left"), (3, (60, 40), "bottom right"), (6, (40, 60), "top right"), (8, (40, 60), "bottom left"),
])
def test_exif_orientation_is_applied(tmp_path, orientation, size, corner):
    stored = Image.new("RGB", (60, 40), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # the marked corner: top left as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    path.write_bytes(_encoded(stored, "JPEG", exif=exif, quality=95))
    assert sniff_image(path.read_bytes()) == ("jpg", "")
    loaded = load_image(path, 64)
    assert loaded.size == size
    w, h = loaded.size
    probes = {"top left": (3, 3), "top right": (w - 4, 3), "bottom left": (3, h - 4), "bottom right": (w - 4, h - 4)}
    red = {name for name, xy in probes.items() if loaded.getpixel(xy)[0] > 200 and loaded.getpixel(xy)[2] < 60}
    assert red == {corner}
