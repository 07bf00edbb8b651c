"""The trained teachers on ONNX Runtime: same probabilities as torch, the export cached, a clear way out when
onnxruntime is missing."""

from __future__ import annotations

import numpy as np
import pytest

from visent.core.onnx import onnx_cache_root
from visent.teach import onnx as teach_onnx
from visent.teach.directory import DEFAULT_TEACHER_DIR, TrainedTeacher

TEXTS = ["I love my new puppy, best day ever!", "Worst service ever, I am so angry", "the meeting is at 3pm",
         "soooo goooood 😍😍", "meh", "", "RT @x: https://t.co/y #NotHappy at all", "ok"]


def _member(runtime: str):
    member = TrainedTeacher(DEFAULT_TEACHER_DIR).member("minilm")
    member.runtime = runtime
    return member


@pytest.mark.own_onnx_exports  # counts or needs the exports made by this test alone
@pytest.mark.slow
def test_onnx_member_matches_torch_and_its_export_is_cached(monkeypatch):
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "onnx")  # what a load looks for in the cache
    torch_probs = _member("torch").predict_proba(TEXTS)
    onnx_member = _member("onnx")
    onnx_probs = onnx_member.predict_proba(TEXTS)
    assert np.abs(onnx_probs - torch_probs).max() < 1e-5
    exports = sorted(p.name for p in onnx_cache_root().glob("*.onnx"))
    assert len(exports) == 1 and exports[0].startswith("teacher-minilm-") and exports[0].endswith(".fp32.onnx")

    # a second load finds the export: nothing is exported again, and the torch layers are never built
    def no_export(*args, **kwargs):
        raise AssertionError("the member was exported again")

    monkeypatch.setattr(teach_onnx, "export_member", no_export)
    again = _member("onnx")
    assert again.__dict__["_layers"] is None
    assert np.array_equal(again.predict_proba(TEXTS), onnx_probs)
    assert again.__dict__["_layers"] is None
    # other top-layer weights are another export
    other = {k: v + np.float16(0.01) if k.endswith("bias") else v for k, v in again._top_state().items()}
    assert teach_onnx.top_state_digest(other) != teach_onnx.top_state_digest(again._top_state())

    # int8 is a quantisation of that export: valid probabilities, mostly the same decisions
    int8 = _member("onnx-int8").predict_proba(TEXTS)
    assert int8.shape == (len(TEXTS), 3) and np.allclose(int8.sum(axis=1), 1)
    assert (int8.argmax(axis=1) == torch_probs.argmax(axis=1)).mean() >= 0.75


def test_runtime_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.delenv(teach_onnx.RUNTIME_ENV, raising=False)
    assert teach_onnx.default_runtime() == teach_onnx.DEFAULT_RUNTIME == "onnx-int8"
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "torch")
    assert teach_onnx.default_runtime() == "torch"
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "tensorflow")
    with pytest.raises(ValueError, match="onnx, onnx-int8, torch"):
        teach_onnx.default_runtime()


def test_missing_onnxruntime_falls_back_to_torch_or_says_what_to_do(monkeypatch):
    monkeypatch.setattr(teach_onnx, "onnxruntime_error", lambda: "ImportError: No module named 'onnxruntime'")
    monkeypatch.delenv(teach_onnx.RUNTIME_ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="runs on torch"):
        assert teach_onnx.default_runtime() == "torch"
    # asked for explicitly, ONNX Runtime is required, and the error names the way out
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "onnx")
    member = _member("onnx")
    with pytest.raises(teach_onnx.TeacherRuntimeError, match="VISENT_TEACHER_RUNTIME=torch"):
        member.predict_proba(["I love it"])


@pytest.mark.slow
def test_int8_member_reads_a_text_the_same_whatever_texts_come_with_it(monkeypatch):
    # dynamic int8 scales activations per call: a text taught in a batch would be read differently beside others,
    # so a crawl taught in two parts (a grown crawl) would not get the labels of one taught at once
    monkeypatch.setenv(teach_onnx.RUNTIME_ENV, "onnx-int8")
    member = _member("onnx-int8")
    many = TEXTS * 3 + [f"{text} and then some more words about it all" for text in TEXTS]
    together = member.predict_proba(many)
    for i in (0, 3, len(TEXTS) * 3 + 1):  # the same features; the head's sums may round in another order
        assert np.abs(member.predict_proba([many[i]])[0] - together[i]).max() < 1e-12
    assert np.abs(member.predict_proba(many[::-1])[::-1] - together).max() < 1e-12
