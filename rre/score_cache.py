"""Scores cached on disk, keyed by a hash of exactly what was scored: a re-run with nothing new scores nothing
(eval_monotonicity.py and prescreen.py share these files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from rre.files import write_json
from rre.records import read_json, require_key


def content_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def read_cache(cache: Path) -> tuple[str, list] | None:
    """(key, scores) of a cache file, None when there is none; a broken one is one line naming it (delete it to
    score again)."""
    if not cache.is_file():
        return None
    stored = read_json(cache, "score cache")
    return require_key(stored, "key", str(cache), str), require_key(stored, "scores", str(cache), list)


def cached_scores(cache: Path, key_obj: Any, compute: Callable[[], list[float]]) -> list[float]:
    """Scores from `cache` when its key (a hash of exactly what is scored) matches, else computed and stored."""
    key = content_hash(key_obj)
    stored = read_cache(cache)
    if stored is not None and stored[0] == key:
        return stored[1]
    scores = compute()
    write_json(cache, {"key": key, "scores": scores}, indent=None)
    return scores
