"""Scores cached on disk, keyed by a hash of exactly what was scored: a re-run with nothing new scores nothing
(eval_monotonicity.py and prescreen.py share these files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rre.files import content_hash, read_json, require_key, write_json


def read_cache(cache: Path) -> tuple[str, list] | None:
    """(key, scores) of a cache file, None when there is none; a broken one is one line naming it (delete it to
    score again)."""
    if not cache.is_file():
        return None
    stored = read_json(cache, "score cache")
    return require_key(stored, "key", str(cache), str), require_key(stored, "scores", str(cache), list)


def stored_scores(cache: Path, key_obj: Any) -> list[float] | None:
    """The scores in `cache` when its key is the hash of `key_obj` (exactly what is scored), else None."""
    stored = read_cache(cache)
    return stored[1] if stored is not None and stored[0] == content_hash(key_obj) else None


def cached_scores(cache: Path, key_obj: Any, compute: Callable[[], list[float]]) -> list[float]:
    """Scores from `cache` when its key (a hash of exactly what is scored) matches, else computed and stored."""
    scores = stored_scores(cache, key_obj)
    if scores is not None:
        return scores
    scores = compute()
    write_json(cache, {"key": content_hash(key_obj), "scores": scores}, indent=None)
    return scores
