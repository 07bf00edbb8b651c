"""Arrow schemas of the dataset tables, shared by every stage."""

from __future__ import annotations

import pyarrow as pa

POSTS = pa.schema([
    ("post_id", pa.string()),        # unique row key; "<id>_<k>" for the k-th extra image of a post
    ("source", pa.string()),         # where the row came from, e.g. "tweets.jsonl:17" or "data/12.txt"
    ("text", pa.string()),           # post text ("" when the post has none)
    ("lang", pa.string()),           # language code when the source gives one
    ("created_at", pa.string()),     # as given by the source
    ("image_ref", pa.string()),      # the image as the source names it: a path or a URL
    ("image_sha256", pa.string()),   # SHA-256 of the stored bytes (null when there is no image)
    ("image_file", pa.string()),     # path inside the dataset, images/ab/<sha256>.<ext>
    ("ingest_status", pa.string()),  # "ok" or "error"
    ("ingest_reason", pa.string()),  # "" when ok, else why
])

HUMAN_LABELS = pa.schema([
    ("post_id", pa.string()),
    ("text_label", pa.string()),     # negative / neutral / positive, or null
    ("image_label", pa.string()),
])

TEACH = pa.schema([
    ("post_id", pa.string()),
    ("teacher", pa.string()),
    ("p_negative", pa.float32()),
    ("p_neutral", pa.float32()),
    ("p_positive", pa.float32()),
    ("teach_label", pa.string()),
    ("teach_confidence", pa.float32()),
    ("teach_status", pa.string()),   # "ok" or "skipped"
    ("teach_reason", pa.string()),
])

CLEAN = pa.schema([
    ("post_id", pa.string()),
    ("clean_status", pa.string()),   # "kept" or "dropped"
    ("clean_step", pa.string()),     # the step that dropped the row (a name of visent.clean.STEPS); null when kept
    ("clean_reason", pa.string()),   # "" when kept, else why the first step that dropped the row did
    ("label", pa.string()),          # the teacher label the student trains on
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("phash", pa.string()),          # 64-bit perceptual hash, 16 hex digits
    ("duplicate_of", pa.string()),   # post kept in place of this one, for duplicates
])

PROB_COLUMNS = ("p_negative", "p_neutral", "p_positive")
