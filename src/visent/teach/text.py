"""Tweet normalisation shared by the teachers."""

from __future__ import annotations

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


def _split_hashtag(match: re.Match[str]) -> str:
    return " " + _WORD_BREAK.sub(" ", match.group(1).replace("_", " ")) + " "


def preprocess_tweet(text: str) -> str:
    """Normalise a post's text for a lexicon or language-model teacher.

    Unescapes HTML entities, drops retweet headers ("RT @user:"), URLs and @mentions, turns
    hashtags into words (``#HappyDay`` -> ``Happy Day``) and collapses whitespace. Emoji and
    emoticons are kept, since they carry sentiment.
    """
    text = html.unescape(text or "")
    text = _RETWEET.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _HASHTAG.sub(_split_hashtag, text)
    return " ".join(text.split())
