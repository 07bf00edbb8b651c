"""Tweet normalisation shared by the teachers."""

from __future__ import annotations

import functools
import html
import re

_RETWEET = re.compile(r"\bRT\s+@\w+:?")
_URL = re.compile(r"\b(?:https?:|www\.)\S*|\bhttps?…")
_MENTION = re.compile(r"(?<![\w@])@\w+:?")
_HASHTAG = re.compile(r"(?<![\w#&])#(\w+)")
_WORD_BREAK = re.compile(
    r"(?<=[a-z])(?=[A-Z])"            # happyDay -> happy Day
    r"|(?<=[A-Z])(?=[A-Z][a-z])"      # NYCMarathon -> NYC Marathon
    r"|(?<=[A-Za-z])(?=[0-9])"        # love2 -> love 2
    r"|(?<=[0-9])(?=[A-Za-z])"        # 2012shit -> 2012 shit
)


# Bump when preprocess_tweet(..., for_model=True) changes: trained teachers record it, and a
# resumed `visent teacher train` retrains members made with another version.
MODEL_PREPROCESSING_VERSION = 1

_ELONGATION = re.compile(r"([^\W\d_])\1{2,}")  # a letter repeated 3+ times: "soooo" -> "soo"
_PUNCT_RUN = re.compile(r"([!?.])\1{2,}")  # "!!!!!" -> "!!!"


def _split_hashtag(match: re.Match[str]) -> str:
    return " " + _WORD_BREAK.sub(" ", match.group(1).replace("_", " ")) + " "


def preprocess_tweet(text: str, *, for_model: bool = False) -> str:
    """Normalise a post's text for a lexicon or language-model teacher.

    Unescapes HTML entities, drops retweet headers ("RT @user:"), URLs and @mentions, turns
    hashtags into words (``#HappyDay`` -> ``Happy Day``) and collapses whitespace. Emoji and
    emoticons are kept, since they carry sentiment (VADER's lexicon reads emoji itself).

    ``for_model`` (the trained teachers): elongations are shortened (``soooo goooood`` -> ``soo
    good``, ``!!!!!`` -> ``!!!``) and emoji become their names (``😍`` -> ``smiling face with
    heart-eyes``), which a subword vocabulary without emoji can read.
    """
    return _preprocess_tweet(text or "", for_model)


# a teacher normalises each text several times (routing, each member), in passes over all of its texts: the
# cache holds a whole pass of up to 65,536 texts (about 20 MB), so a second pass is all hits
@functools.lru_cache(maxsize=65536)
def _preprocess_tweet(text: str, for_model: bool) -> str:
    """:func:`preprocess_tweet`, memoised (a pure function of its arguments)."""
    text = html.unescape(text)
    text = _RETWEET.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _HASHTAG.sub(_split_hashtag, text)
    if for_model:
        text = _ELONGATION.sub(r"\1\1", text)
        text = _PUNCT_RUN.sub(r"\1\1\1", text)
        if not text.isascii():  # every emoji has a character beyond ASCII: plain texts skip the scan
            import emoji

            text = emoji.replace_emoji(text, replace=_emoji_name)
    return " ".join(text.split())


def _emoji_name(chars: str, data: dict) -> str:
    name = data.get("en", "")
    return f" {name.strip(':').replace('_', ' ')} " if name else " "
