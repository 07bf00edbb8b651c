"""The ingest stage: readers for every source format, image checks, resume and re-run."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

from conftest import MVSA, needs_mvsa
from visent import Dataset
from visent.core.schema import HUMAN_LABELS, POSTS
from visent.ingest import READERS, detect_format, ingest
from visent.ingest import stage as stage_module


def jpeg(color=(200, 30, 30), size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def png(color=(10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


CP1252_TEXT = "Je suis très fâché contre ça… vraiment"


def rows(out: Path, table: str = "posts") -> dict[str, dict]:
    return {r["post_id"]: r for r in Dataset(out).read_table(table).to_pylist()}


def read(fmt: str, path: Path) -> list:
    return list(READERS.create(fmt, source=path))


# --------------------------------------------------------------------------- MVSA
@pytest.fixture
def mvsa(tmp_path) -> Path:
    root = tmp_path / "mvsa"
    data = root / "data"
    data.mkdir(parents=True)
    (data / "1.jpg").write_bytes(jpeg((250, 200, 0)))
    (data / "1.txt").write_text("Sunny day at the beach 😊 #happy \n", encoding="utf-8")
    (data / "2.jpg").write_bytes(jpeg((0, 0, 90)))
    (data / "2.txt").write_bytes(CP1252_TEXT.encode("cp1252") + b" \n")
    (data / "3.txt").write_text("text without its picture", encoding="utf-8")
    (data / "4.jpg").write_bytes(b"this is not a jpeg at all")
    (data / "4.txt").write_text("broken picture", encoding="utf-8")
    (data / "5.jpg").write_bytes(jpeg((9, 9, 9)))
    (data / "10.jpg").write_bytes(jpeg((250, 200, 0)))  # same bytes as 1.jpg
    (data / "10.txt").write_text("ten", encoding="utf-8")
    (root / "labelResultAll.txt").write_text(
        "ID\ttext,image\n1\tpositive,positive\n2\tnegative,neutral\n4\tneutral,negative\n10\tpositive,positive\n")
    return root


def test_mvsa_folder(mvsa, tmp_path):
    out = tmp_path / "ds"
    counts = ingest(mvsa, out, workers=2)
    assert counts == {"posts": 6, "ok": 3, "error": 3, "images": 3, "with_human_labels": 4, "text_repaired": 1}
    posts = rows(out)
    assert list(posts) == ["1", "2", "3", "4", "5", "10"]
    assert posts["1"]["text"] == "Sunny day at the beach 😊 #happy"
    assert posts["2"]["text"] == CP1252_TEXT
    assert posts["1"]["source"] == "data/1.txt" and posts["1"]["image_ref"] == "data/1.jpg"
    assert posts["3"]["ingest_reason"] == "no image file for data/3.txt"
    assert posts["4"]["ingest_reason"] == "not an image (text)"
    assert posts["5"]["text"] == "" and posts["5"]["ingest_reason"] == "no text file (data/5.txt missing)"
    assert posts["1"]["image_sha256"] == posts["10"]["image_sha256"]
    assert (out / posts["1"]["image_file"]).read_bytes() == (mvsa / "data" / "1.jpg").read_bytes()
    assert {p["ingest_status"] for k, p in posts.items() if k in ("1", "2", "10")} == {"ok"}
    dataset = Dataset(out)
    assert dataset.read_table("posts").schema.equals(POSTS)
    assert dataset.read_table("human_labels").schema.equals(HUMAN_LABELS)
    assert rows(out, "human_labels")["2"] == {"post_id": "2", "text_label": "negative", "image_label": "neutral"}
    assert set(rows(out, "human_labels")) == {"1", "2", "4", "10"}


def test_mvsa_data_dir_and_detection(mvsa):
    assert detect_format(mvsa) == "mvsa"
    assert detect_format(mvsa / "data") == "mvsa"
    via_data = read("mvsa", mvsa / "data")
    via_root = read("mvsa", mvsa)
    assert via_data == via_root and via_root[1].text_label == "negative"


def test_mvsa_multiple_annotators_majority_vote(mvsa):
    (mvsa / "labelResultAll.txt").write_text(
        "ID\ttext,image\ttext,image\ttext,image\n"
        "1\tpositive,positive\tpositive,neutral\tneutral,neutral\n"
        "2\tnegative,positive\tneutral,neutral\tpositive,negative\n")
    posts = {p.post_id: p for p in read("mvsa", mvsa)}
    assert (posts["1"].text_label, posts["1"].image_label) == ("positive", "neutral")
    assert (posts["2"].text_label, posts["2"].image_label) == (None, None)  # three-way ties


# --------------------------------------------------------------------------- JSONL / CSV posts
def test_jsonl_posts_with_local_images_and_labels(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(png())  # named .jpg, stored as what it is
    lines = [
        json.dumps({"post_id": "p1", "full_text": "great", "image_path": "img/a.jpg", "label": "pos",
                    "lang": "en", "created_at": "2015-02-01"}),
        "{this is not json",
        json.dumps({"text": "no id, no picture"}),
        json.dumps({"id": 7, "caption": "missing file", "image": "img/none.jpg", "text_label": "negative"}),
        json.dumps(["not", "an", "object"]),
    ]
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert detect_format(source) == "jsonl"
    ingest(source, tmp_path / "ds", workers=2)
    posts = rows(tmp_path / "ds")
    assert list(posts) == ["p1", "posts.jsonl:2", "3", "7", "posts.jsonl:5"]
    assert posts["p1"]["image_file"].endswith(".png") and posts["p1"]["lang"] == "en"
    assert posts["p1"]["created_at"] == "2015-02-01" and posts["p1"]["ingest_status"] == "ok"
    assert posts["posts.jsonl:2"]["source"] == "posts.jsonl:2"
    assert posts["posts.jsonl:2"]["ingest_reason"].startswith("invalid JSON at posts.jsonl:2")
    assert posts["3"]["text"] == "no id, no picture" and posts["3"]["ingest_reason"] == "no image in post"
    assert posts["7"]["ingest_reason"] == "image file not found (img/none.jpg)"
    assert posts["posts.jsonl:5"]["ingest_reason"] == "expected a JSON object at posts.jsonl:5, got list"
    labels = rows(tmp_path / "ds", "human_labels")
    assert labels == {"p1": {"post_id": "p1", "text_label": None, "image_label": "positive"},
                      "7": {"post_id": "7", "text_label": "negative", "image_label": None}}
    assert "image_label" not in Dataset(tmp_path / "ds").read_table("posts").column_names


def test_a_broken_line_never_takes_the_id_of_a_real_post(tmp_path):
    """A line that is no post is named by its place in the file, not by its line number, which a real post may
    have as its id (here post "2", one line below the junk)."""
    source = tmp_path / "t.jsonl"
    source.write_text(json.dumps({"id": "1", "text": "first"}) + "\n{junk\n" + json.dumps({"id": "2", "text": "second"})
                      + "\n[1, 2]\n" + json.dumps({"id": "4", "text": "fourth"}) + "\n")
    ingest(source, tmp_path / "ds")
    posts = rows(tmp_path / "ds")
    assert list(posts) == ["1", "t.jsonl:2", "2", "t.jsonl:4", "4"]
    assert [posts[i]["ingest_reason"] for i in ("1", "2", "4")] == ["no image in post"] * 3  # no duplicate
    assert posts["t.jsonl:2"]["ingest_reason"].startswith("invalid JSON at t.jsonl:2")


def test_csv_posts(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    body = ("Tweet_ID;Full_Text;Image_Path;Image_Label\n"
            "11;très bien;a.jpg;positive\n"
            "12;sans image;;\n"
            "13;too;many;fields;here\n"
            "\n"
            "14;ça va;a.jpg;2\n")
    source = tmp_path / "posts.csv"
    source.write_bytes(body.encode("cp1252"))
    assert detect_format(source) == "csv"
    counts = ingest(source, tmp_path / "ds", workers=2)
    posts = rows(tmp_path / "ds")
    assert list(posts) == ["11", "12", "3", "14"]
    assert posts["11"]["text"] == "très bien" and posts["11"]["source"] == "posts.csv:2"
    assert posts["12"]["ingest_reason"] == "no image in post"
    assert posts["3"]["ingest_reason"] == "malformed row at posts.csv:4 (5 fields, header has 4)"
    assert posts["14"]["text"] == "ça va" and posts["14"]["image_sha256"] == posts["11"]["image_sha256"]
    assert counts["with_human_labels"] == 2
    assert rows(tmp_path / "ds", "human_labels")["14"]["image_label"] == "positive"


def test_duplicate_ids_are_kept_and_flagged(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(json.dumps({"id": "x", "text": t, "image": "a.jpg"}) for t in "abc"))
    ingest(source, tmp_path / "ds", workers=1)
    posts = rows(tmp_path / "ds")
    assert list(posts) == ["x", "x#2", "x#3"]
    assert posts["x"]["ingest_status"] == "ok"
    assert posts["x#3"]["ingest_reason"] == "duplicate post id x (first at posts.jsonl:1)"
    assert posts["x#3"]["text"] == "c"


# --------------------------------------------------------------------------- text that is not UTF-8
def test_a_latin1_line_in_a_utf8_jsonl_is_repaired_and_counted(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    lines = [json.dumps({"id": "1", "text": "Ünïcödé déjà vu", "image": "a.jpg"}, ensure_ascii=False).encode(),
             json.dumps({"id": "2", "text": "Café très agréable", "image": "a.jpg"}, ensure_ascii=False).encode("latin-1"),
             # one line that mixes both: its UTF-8 stays UTF-8, its latin-1 bytes read as latin-1
             b'{"id": "3", "text": "' + "déjà ".encode() + "très bien".encode("latin-1") + b'", "image": "a.jpg"}',
             json.dumps({"id": "4", "text": "plain", "image": "a.jpg"}).encode()]
    source = tmp_path / "posts.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    counts = ingest(source, tmp_path / "ds", workers=1)
    posts = rows(tmp_path / "ds")
    assert {k: p["text"] for k, p in posts.items()} == {
        "1": "Ünïcödé déjà vu", "2": "Café très agréable", "3": "déjà très bien", "4": "plain"}
    assert {p["ingest_status"] for p in posts.values()} == {"ok"}
    assert counts["text_repaired"] == 2 and "text_suspect" not in counts


def test_a_whole_cp1252_csv_is_read_as_cp1252(tmp_path):
    # charset-normalizer scores cp1250 (and gb18030, ...) as well as cp1252 on so little text: "Trčs bien"
    (tmp_path / "a.jpg").write_bytes(jpeg())
    source = tmp_path / "posts.csv"
    source.write_bytes('id,text,image\n1,"Très bien, merci",a.jpg\n2,L’été à Noël,a.jpg\n3,plain words,a.jpg\n'
                       .encode("cp1252"))
    counts = ingest(source, tmp_path / "ds", workers=1)
    posts = rows(tmp_path / "ds")
    assert [p["text"] for p in posts.values()] == ["Très bien, merci", "L’été à Noël", "plain words"]
    assert [p["ingest_status"] for p in posts.values()] == ["ok", "ok", "ok"]
    assert counts["text_repaired"] == 2  # the rows that were not ASCII


def test_garbage_bytes_are_kept_with_a_reason_and_counted(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_bytes(b'{"id": "1", "text": "fine", "image": "a.jpg"}\n'
                      b'{"id": "2", "text": "junk \x81\x8d\xfe\x9d here", "image": "a.jpg"}\n')
    csv = tmp_path / "posts.csv"
    csv.write_bytes(b"id,text,image\n1,fine,a.jpg\n2,\x90\x00\x81 junk,a.jpg\n")
    for source in (jsonl, csv):
        counts = ingest(source, tmp_path / source.suffix, workers=1)
        posts = rows(tmp_path / source.suffix)
        assert list(posts) == ["1", "2"] and posts["1"]["ingest_status"] == "ok"
        assert posts["2"]["ingest_status"] == "error"
        assert posts["2"]["ingest_reason"] == ("text is neither UTF-8 nor cp1252: its bytes do not read as text; "
                                               "save the source as UTF-8 and ingest again")
        assert "\ufffd" in posts["2"]["text"] and "junk" in posts["2"]["text"]
        assert posts["2"]["image_file"]  # the rest of the post is there
        assert counts["text_suspect"] == 1 and "text_repaired" not in counts


def test_a_text_of_unclear_encoding_is_kept_with_a_reason(tmp_path):
    # a short Russian line in cp1251: too little text for charset-normalizer, and no plausible cp1252
    (tmp_path / "a.jpg").write_bytes(jpeg())
    source = tmp_path / "posts.jsonl"
    source.write_bytes(json.dumps({"id": "1", "text": "ok", "image": "a.jpg"}).encode() + b"\n" +
                       json.dumps({"id": "2", "text": "Привет, как дела?", "image": "a.jpg"},
                                  ensure_ascii=False).encode("cp1251") + b"\n")
    counts = ingest(source, tmp_path / "ds", workers=1)
    post = rows(tmp_path / "ds")["2"]
    assert post["ingest_status"] == "error"
    assert post["ingest_reason"] == ("text is not UTF-8 and its encoding is unclear (read as cp1252, a guess); "
                                     "save the source as UTF-8 and ingest again")
    assert counts["text_suspect"] == 1


def test_a_utf16_tsv_is_read_by_its_byte_order_mark(tmp_path):
    # Excel's "Unicode text" is UTF-16 with a byte order mark; with junk after it (a cut download), charset-normalizer
    # guessed cp1252 and every field read "i\x00m\x00a\x00g\x00e\x00"
    source = tmp_path / "posts.tsv"
    source.write_bytes("id\ttext\timage\r\n1\tCafé 😊\ta.jpg\r\n".encode("utf-16") +
                       b"X\xbb\xbf,\xe07S\xc9\xbd\xfa\x0f\xf0\x16\x9d\xc9WVt\x06fv")
    first, *junk = read("csv", source)
    assert (first.post_id, first.text, first.image_ref, first.error) == ("1", "Café 😊", "a.jpg", "")
    assert junk and all(post.error for post in junk)  # kept, with a reason


def test_the_legacy_encoding_of_a_source_needs_clear_evidence():
    from visent.core.encoding import TextDecoder, detect_encoding

    assert detect_encoding("Très bien, merci".encode("cp1252")) is None  # gb18030 scores as well
    long = "今天天气很好，我们去公园吧。晚上一起吃饭怎么样？".encode("gb18030")
    assert detect_encoding(long) == "gb18030"
    # an MVSA folder's posts: each short, but pooled they are clear
    decoder = TextDecoder.learn([b"plain", long[:12], long[12:]])
    assert decoder.read(long[:12]).text == "今天天气很好" and decoder.read(long[:12]).repaired
    assert decoder.read(b"plain").encoding == "utf-8" and not decoder.read(b"plain").repaired


# --------------------------------------------------------------------------- tweets
def v1_tweet(tid: str, text: str, photos: list[str], **extra) -> dict:
    media = [{"type": "photo", "media_url_https": u, "media_url": u.replace("https", "http")} for u in photos]
    tweet = {"id": int(tid), "id_str": tid, "full_text": text, "lang": "en",
             "created_at": "Wed Oct 10 20:19:24 +0000 2018", "entities": {"media": media[:1]}}
    if media:
        tweet["extended_entities"] = {"media": media}
    tweet.update(extra)
    return tweet


def test_v1_single_object_with_several_photos(tmp_path):
    source = tmp_path / "tweet.json"
    source.write_text(json.dumps(v1_tweet("100", "three photos", ["https://x/1.jpg", "https://x/2.jpg",
                                                                   "https://x/3.jpg"]), indent=2))
    assert detect_format(source) == "tweets"
    posts = read("tweets", source)
    assert [p.post_id for p in posts] == ["100", "100_1", "100_2"]
    assert [p.image_ref for p in posts] == ["https://x/1.jpg", "https://x/2.jpg", "https://x/3.jpg"]
    assert {p.text for p in posts} == {"three photos"} and {p.source for p in posts} == {"tweet.json"}
    assert posts[0].lang == "en" and posts[0].created_at.endswith("2018")


def test_v1_array_retweet_streaming_and_no_photo(tmp_path):
    original = v1_tweet("1", "the original, in full", ["https://x/orig.jpg"])
    retweet = {"id_str": "2", "text": "RT @a: the original, in…", "retweeted_status": original, "entities": {}}
    streaming = {"id_str": "3", "text": "short…", "truncated": True, "extended_tweet": {
        "full_text": "short text made long", "extended_entities": {"media": [
            {"type": "photo", "media_url_https": "https://x/s.jpg"}]}}}
    entities_only = {"id_str": "4", "text": "old style", "entities": {"media": [
        {"type": "photo", "media_url_https": "https://x/e.jpg"}]}}
    video = v1_tweet("5", "a video", [])
    video["extended_entities"] = {"media": [{"type": "video", "media_url_https": "https://x/v.jpg"}]}
    source = tmp_path / "tweets.json"
    source.write_text(json.dumps([retweet, streaming, entities_only, video]))
    posts = {p.post_id: p for p in read("tweets", source)}
    assert (posts["2"].text, posts["2"].image_ref) == ("the original, in full", "https://x/orig.jpg")
    assert (posts["3"].text, posts["3"].image_ref) == ("short text made long", "https://x/s.jpg")
    assert posts["4"].image_ref == "https://x/e.jpg" and posts["4"].source == "tweets.json[2]"
    assert posts["5"].image_ref is None and posts["5"].error == "no image in post"


def test_v2_response_pages_in_jsonl(tmp_path):
    page = {
        "data": [
            {"id": "20", "text": "cut short…", "note_tweet": {"text": "the whole long note"}, "lang": "fr",
             "attachments": {"media_keys": ["3_1", "7_2", "3_3"]}},
            {"id": "21", "text": "RT @b: hello", "referenced_tweets": [{"type": "retweeted", "id": "99"}]},
            {"id": "22", "text": "video only", "attachments": {"media_keys": ["7_2"]}},
        ],
        "includes": {
            "media": [{"media_key": "3_1", "type": "photo", "url": "https://pbs/1.jpg"},
                      {"media_key": "7_2", "type": "video", "preview_image_url": "https://pbs/v.jpg"},
                      {"media_key": "3_3", "type": "photo", "url": "https://pbs/3.jpg"},
                      {"media_key": "3_9", "type": "photo", "url": "https://pbs/9.jpg"}],
            "tweets": [{"id": "99", "text": "hello from the source", "attachments": {"media_keys": ["3_9"]}}],
        },
    }
    second = {"data": {"id": "30", "text": "one more", "attachments": {"media_keys": ["k"]}},
              "includes": {"media": [{"media_key": "k", "type": "photo", "url": "https://pbs/k.jpg"}]}}
    source = tmp_path / "pages.jsonl"
    source.write_text(json.dumps(page) + "\n" + "{broken\n" + json.dumps(second) + "\n")
    assert detect_format(source) == "tweets"
    posts = read("tweets", source)
    assert [p.post_id for p in posts] == ["20", "20_1", "21", "22", "pages.jsonl:2", "30"]
    by_id = {p.post_id: p for p in posts}
    assert by_id["20"].text == "the whole long note" and by_id["20"].lang == "fr"
    assert (by_id["20"].image_ref, by_id["20_1"].image_ref) == ("https://pbs/1.jpg", "https://pbs/3.jpg")
    assert (by_id["21"].text, by_id["21"].image_ref) == ("hello from the source", "https://pbs/9.jpg")
    assert by_id["22"].error == "no image in post"
    assert by_id["pages.jsonl:2"].error.startswith("invalid JSON at pages.jsonl:2") and by_id["30"].source == "pages.jsonl:3"


def test_tweets_end_to_end_with_file_urls(tmp_path):
    (tmp_path / "p.jpg").write_bytes(jpeg())
    (tmp_path / "q.png").write_bytes(png())
    tweet = v1_tweet("7", "two local photos", [(tmp_path / "p.jpg").as_uri(), (tmp_path / "q.png").as_uri()])
    source = tmp_path / "t.jsonl"
    source.write_text(json.dumps(tweet) + "\n" + json.dumps(v1_tweet("8", "text only", [])) + "\n")
    counts = ingest(source, tmp_path / "ds", workers=2)
    assert counts == {"posts": 3, "ok": 2, "error": 1, "images": 2, "with_human_labels": 0}
    posts = rows(tmp_path / "ds")
    assert posts["7_1"]["image_file"].endswith(".png") and posts["8"]["ingest_reason"] == "no image in post"
    assert not Dataset(tmp_path / "ds").has_table("human_labels")


# --------------------------------------------------------------------------- folders and detection
def test_folder_of_files_and_pairs(tmp_path):
    root = tmp_path / "crawl"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "a.jpg").write_bytes(jpeg())
    (root / "posts.csv").write_text("text,image\nfrom csv,assets/a.jpg\n")
    (root / "day2").mkdir()
    (root / "day2" / "more.jsonl").write_text(json.dumps({"text": "from jsonl", "image": "../assets/a.jpg"}) + "\n")
    (root / "pairs").mkdir()
    (root / "pairs" / "cat.png").write_bytes(png())
    (root / "pairs" / "cat.txt").write_text("a cat")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.csv").write_text("text,image\nhidden,a.jpg\n")
    assert detect_format(root) == "folder"
    ingest(root, tmp_path / "ds", workers=2)
    posts = rows(tmp_path / "ds")
    assert list(posts) == ["posts.csv:1", "day2/more.jsonl:1", "pairs/cat"]  # lone assets/a.jpg is no post
    assert {p["ingest_status"] for p in posts.values()} == {"ok"}
    assert posts["pairs/cat"]["text"] == "a cat" and posts["pairs/cat"]["source"] == "pairs/cat.txt"


def test_folder_of_pairs_reports_lone_files(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "beach.jpg").write_bytes(jpeg())
    (tmp_path / "src" / "beach.txt").write_text("at the beach")
    (tmp_path / "src" / "alone.jpg").write_bytes(jpeg((1, 2, 3)))
    assert detect_format(tmp_path / "src") == "folder"
    posts = {p.post_id: p for p in read("folder", tmp_path / "src")}
    assert posts["beach"].error == "" and posts["alone"].error == "no text file (alone.txt missing)"


def test_detect_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nothing")
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(ValueError):
        detect_format(tmp_path / "notes.md")
    with pytest.raises(ValueError):
        ingest(tmp_path, tmp_path / "ds", format="parquet")


def test_format_override(tmp_path):
    source = tmp_path / "flat.jsonl"
    source.write_text(json.dumps({"id_str": "5", "text": "hi", "user": {}, "extended_entities": {"media": [
        {"type": "photo", "media_url_https": "https://x/p.jpg"}]}}) + "\n")
    assert detect_format(source) == "tweets"
    assert read("tweets", source)[0].image_ref == "https://x/p.jpg"
    assert read("jsonl", source)[0].error == "no image in post"


# --------------------------------------------------------------------------- resume, re-run, options
class Interrupted(BaseException):
    """Stands for Ctrl-C or a killed process in the middle of a run."""


def test_interrupted_run_resumes_without_duplicates(mvsa, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    ingest(mvsa, reference, workers=1, batch_size=2)

    real_row = stage_module._row
    calls: list[str] = []

    def crash_on_fifth(post, fetcher, dataset):
        calls.append(post.post_id)
        if len(calls) == 5:
            raise Interrupted
        return real_row(post, fetcher, dataset)

    out = tmp_path / "ds"
    monkeypatch.setattr(stage_module, "_row", crash_on_fifth)
    with pytest.raises(Interrupted):
        ingest(mvsa, out, workers=1, batch_size=2)
    assert len(list((out / "work" / "ingest").glob("part-*.parquet"))) == 2
    assert not Dataset(out).stage_done("ingest")

    calls.clear()
    counts = ingest(mvsa, out, workers=1, batch_size=2)
    assert calls == ["5", "10"]  # the two finished batches were not done again
    assert counts == ingest(mvsa, reference, workers=1, batch_size=2)
    assert Dataset(out).read_table("posts").equals(Dataset(reference).read_table("posts"))
    assert Dataset(out).read_table("human_labels").equals(Dataset(reference).read_table("human_labels"))
    assert not (out / "work" / "ingest").exists()


def test_rerun_is_a_noop_and_new_options_redo(mvsa, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    first = ingest(mvsa, out, workers=2)
    before = (out / "posts.parquet").stat().st_mtime_ns

    def fail(*args):
        raise AssertionError("a finished stage must not run again")

    with monkeypatch.context() as patch:
        patch.setattr(stage_module, "_row", fail)
        assert ingest(str(mvsa), out, workers=8, batch_size=3) == first  # workers/batch size do not matter
    assert (out / "posts.parquet").stat().st_mtime_ns == before

    assert ingest(mvsa, out, limit=2)["posts"] == 2
    assert list(rows(out)) == ["1", "2"]
    assert ingest(mvsa, out, ids={"10", "4", "nope"})["posts"] == 2
    assert list(rows(out)) == ["4", "10"]
    assert Dataset(out).stage_info("ingest")["params"]["ids"]["count"] == 3


def test_labels_of_an_earlier_source_are_removed(mvsa, tmp_path):
    out = tmp_path / "ds"
    ingest(mvsa, out)
    assert Dataset(out).has_table("human_labels")
    source = tmp_path / "plain.jsonl"
    source.write_text(json.dumps({"id": 1, "text": "t"}) + "\n")
    ingest(source, out)
    assert not Dataset(out).has_table("human_labels")


# --------------------------------------------------------------------------- real data
@needs_mvsa
def test_real_mvsa_first_posts(tmp_path):
    counts = ingest(MVSA, tmp_path / "ds", limit=50)
    assert counts["posts"] == 50 and counts["ok"] == 50 and counts["with_human_labels"] == 50
    posts = rows(tmp_path / "ds")
    ids = list(posts)
    assert ids == sorted(ids, key=int)
    labels = rows(tmp_path / "ds", "human_labels")
    assert set(labels) == set(ids)
    assert all(r["image_label"] in ("negative", "neutral", "positive") for r in labels.values())


@needs_mvsa
def test_real_mvsa_non_utf8_texts(tmp_path):
    counts = ingest(MVSA, tmp_path / "ds", ids={"1091", "2780"})
    posts = rows(tmp_path / "ds")
    assert "#хлебивино" in posts["1091"]["text"]
    assert posts["2780"]["text"].endswith("#Beryl http:…")
    assert counts["text_repaired"] == 2  # GB18030, learnt on the folder's texts that are not UTF-8


def test_odd_shapes_in_valid_json_never_crash(tmp_path):
    source = tmp_path / "odd.jsonl"
    odd = [
        {"id_str": "1", "user": {}, "extended_tweet": "not an object"},
        {"data": [{"id": "2", "attachments": {"media_keys": [{"unhashable": 1}]}}], "includes": {"media": []}},
        {"id_str": "3", "user": {}, "entities": {"media": [{"type": "photo", "media_url_https": "https://x/3.jpg"}]}},
    ]
    source.write_text("\n".join(json.dumps(o) for o in odd) + "\n")
    posts = {p.post_id: p for p in read("tweets", source)}
    assert posts["odd.jsonl:1"].error.startswith("unexpected structure at odd.jsonl:1 (AttributeError")
    assert posts["odd.jsonl:2"].error.startswith("unexpected structure at odd.jsonl:2 (TypeError")
    assert posts["3"].error == "" and posts["3"].image_ref == "https://x/3.jpg"


# --------------------------------------------------------------------------- fields visent does not read
def test_every_record_field_listed_is_read(tmp_path):
    """RECORD_FIELDS, which the warnings quote, lists exactly what the JSON/CSV reader reads: each field alone
    changes the post, and a field not listed changes nothing but ``ignored``."""
    from visent.ingest.readers import RECORD_FIELDS

    values = {"image label": "positive", "text label": "negative"}

    def post(record: dict) -> dict:
        source = tmp_path / "one.jsonl"
        source.write_text(json.dumps(record) + "\n")
        [found] = read("jsonl", source)
        return {k: v for k, v in vars(found).items() if k not in ("fields", "ignored")}

    empty = post({"unrelated": "x"})
    for what, keys in RECORD_FIELDS.items():
        for key in keys:
            assert post({key.upper(): values.get(what, "7")}) != empty, key
    [alone] = read("jsonl", tmp_path / "one.jsonl")
    assert alone.fields == ("CREATED_AT",) and alone.ignored == ()


def test_cli_warns_once_when_no_field_is_read_and_keeps_every_row(tmp_path):
    from typer.testing import CliRunner

    from visent.cli import app

    (tmp_path / "a.jpg").write_bytes(jpeg())
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps({"uid": i, "Caption_Text": "so happy", "picture": "a.jpg"}) + "\n"
                              for i in range(3)))
    with pytest.warns(UserWarning) as warned:
        result = CliRunner().invoke(app, ["ingest", str(source), "--out", str(tmp_path / "ds")],
                                    terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    [warning] = [w for w in warned if "no field visent reads" in str(w.message)]
    message = str(warning.message)
    assert message.startswith(f"{source}: 3 of 3 posts have no field visent reads")
    assert "fields found: uid, Caption_Text, picture" in message
    assert "text: text, full_text, caption; image: image, image_path, image_url" in message
    posts = rows(tmp_path / "ds")
    assert list(posts) == ["1", "2", "3"]  # every row kept, with its status
    assert all(p["ingest_status"] == "error" and p["ingest_reason"] == "no image in post" for p in posts.values())
    assert "ignored_fields" in result.output and "uid, Caption_Text, picture" in result.output


def test_cli_summary_names_the_ignored_fields_of_a_csv(tmp_path):
    from typer.testing import CliRunner

    from visent.cli import app

    (tmp_path / "a.jpg").write_bytes(jpeg())
    source = tmp_path / "posts.csv"
    source.write_text("id,text,image,likes,Author\n1,so happy,a.jpg,3,ann\n2,so sad,a.jpg,0,bob\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each post has fields visent reads: no warning
        result = CliRunner().invoke(app, ["ingest", str(source), "--out", str(tmp_path / "ds")],
                                    terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "ignored_fields" in line]
    assert len(lines) == 1 and "likes, Author" in lines[0]
    assert [p["ingest_status"] for p in rows(tmp_path / "ds").values()] == ["ok", "ok"]
    # the summary of a re-run (a no-op) says it again; a source whose fields are all read has no such line
    again = CliRunner().invoke(app, ["ingest", str(source), "--out", str(tmp_path / "ds")], terminal_width=200)
    assert "likes, Author" in again.output
    source.write_text("id,text,image\n1,so happy,a.jpg\n")
    assert "ignored_fields" not in ingest(source, tmp_path / "ds2")
