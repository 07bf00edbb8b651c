"""The ``tweets`` reader: Twitter API v1.1 tweets or v2 response pages, in JSON, a JSON array or JSONL; detected
on a JSON file whose first value is a Twitter API object (tried before the ``jsonl`` reader)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visent.ingest.readers.json_posts import _json_values, _read_json, is_json
from visent.ingest.readers.records import IMAGE_KEYS, RawPost, _expand_images, _first, _str
from visent.ingest.readers.registry import register_reader

_TWEET_KEYS = frozenset({"id_str", "entities", "extended_entities", "extended_tweet", "retweeted_status",
                         "user", "attachments", "edit_history_tweet_ids", "note_tweet"})


def is_tweets(path: Path) -> bool:
    """A JSON file whose first readable value is a Twitter API object."""
    if not is_json(path):
        return False
    for _, _, value, error, _ in _json_values(path, path.name):
        if not error:
            return _looks_like_tweets(value)
    return False


def _looks_like_tweets(value: Any) -> bool:
    """True for a Twitter API object: a v2 response page, or a v1.1/v2 tweet without flat image keys."""
    if not isinstance(value, dict):
        return False
    if isinstance(value.get("data"), (list, dict)):
        return True
    return bool(_TWEET_KEYS & value.keys()) and not any(k in value for k in IMAGE_KEYS)


def _v1_text(tweet: dict[str, Any]) -> str:
    extended = tweet.get("extended_tweet") or tweet.get("extended_text") or {}
    return _str(_first(extended, ("full_text",)) or _first(tweet, ("full_text", "text"))) or ""


def _v1_photos(tweet: dict[str, Any]) -> list[str]:
    for holder in (tweet.get("extended_tweet") or {}, tweet):
        for key in ("extended_entities", "entities"):
            media = (holder.get(key) or {}).get("media") or []
            urls = [m.get("media_url_https") or m.get("media_url") for m in media
                    if isinstance(m, dict) and m.get("type", "photo") == "photo"]
            urls = list(dict.fromkeys(u for u in urls if u))
            if urls:
                return urls
    return []


def _v1_posts(tweet: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    """API v1.1 tweet; a retweet takes the text and photos of the retweeted tweet."""
    core = tweet.get("retweeted_status") if isinstance(tweet.get("retweeted_status"), dict) else tweet
    post = RawPost(post_id=_str(tweet.get("id_str") or tweet.get("id")) or fallback_id, source=where,
                   text=_v1_text(core), base_dir=base_dir, lang=_str(tweet.get("lang")),
                   created_at=_str(tweet.get("created_at")))
    return _expand_images(post, _v1_photos(core), "no image in post")


def _v2_posts(page: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    """API v2 response page: photos are found through ``includes.media`` by media key."""
    data = page["data"]
    tweets = [data] if isinstance(data, dict) else data
    includes = page.get("includes") or {}
    media = {m["media_key"]: m for m in includes.get("media") or [] if isinstance(m, dict) and "media_key" in m}
    referenced = {str(t["id"]): t for t in includes.get("tweets") or [] if isinstance(t, dict) and "id" in t}
    posts: list[RawPost] = []
    for k, tweet in enumerate(tweets):
        own_id = fallback_id if len(tweets) == 1 else f"{fallback_id}.{k + 1}"
        if not isinstance(tweet, dict):
            posts.append(RawPost(post_id=own_id, source=where, error=f"tweet {k} at {where} is not an object"))
            continue
        core = tweet
        for ref in tweet.get("referenced_tweets") or []:
            if isinstance(ref, dict) and ref.get("type") == "retweeted" and str(ref.get("id")) in referenced:
                core = referenced[str(ref["id"])]
        keys = (core.get("attachments") or {}).get("media_keys") or []
        photos = [media[key]["url"] for key in keys
                  if key in media and media[key].get("type") == "photo" and media[key].get("url")]
        text = (core.get("note_tweet") or {}).get("text") or core.get("text") or ""
        post = RawPost(post_id=_str(tweet.get("id")) or own_id, source=where, text=str(text).strip(),
                       base_dir=base_dir, lang=_str(tweet.get("lang")), created_at=_str(tweet.get("created_at")))
        posts.extend(_expand_images(post, list(dict.fromkeys(photos)), "no image in post"))
    return posts


def _tweet_posts(value: dict[str, Any], where: str, fallback_id: str, base_dir: Path) -> list[RawPost]:
    if isinstance(value.get("data"), (list, dict)):
        return _v2_posts(value, where, fallback_id, base_dir)
    return _v1_posts(value, where, fallback_id, base_dir)


@register_reader("tweets", "Twitter API v1.1 tweets or v2 response pages (JSON, JSON array or JSONL)",
                 detect=is_tweets, order=20)
def read_tweets(source: Path, *, root: Path | None = None) -> Iterator[RawPost]:
    """Tweets; one record per photo (``<id>``, ``<id>_1``, ...), "no image in post" when there is none."""
    return _read_json(source, root, _tweet_posts)
