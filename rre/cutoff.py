"""Cut vs finished answers: the one definition of "cut" and the split of gold scores by it.

A gold reward model can learn to read whether an answer was stopped at the token cap instead of what it says;
a mean gold that moves with the share of cut answers then says more about the cap than about the policy. So every
gold figure is reported beside the share of cut answers and the mean gold of cut and of finished answers.

An answer is cut when decoding stopped at the token cap: no EOS among its tokens, no stop string in its decoded
text, and all `max_new_tokens` used. evaluation.py records it per answer in its outputs files (CUT_FIELD, beside
`output`); the PPO trainer logs the share of cut rollouts per step (CUT_SHARE_STAT). An outputs file written
without the field falls back to "its answer's token count reached the cap" (`cut_flags`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

CUT_FIELD = "truncated"  # per answer in evaluation.py's outputs files; alpaca_eval carries extra fields along unread
CUT_SHARE_STAT = "env/cut_share"  # share of cut rollouts in a PPO step's logged statistics


def was_cut(n_tokens: int, ended: bool, max_new_tokens: int, text: str = "",
            stop_strings: Sequence[str] = ()) -> bool:
    """Decoding stopped at the token cap: `n_tokens` new tokens (up to any EOS) reached `max_new_tokens`, no EOS
    (`ended` false) and no stop string in the decoded `text`."""
    return not ended and n_tokens >= max_new_tokens and not any(stop in text for stop in stop_strings)


def cut_flags(records: Sequence[dict[str, Any]], max_new_tokens: int | None,
              count_tokens: Callable[[list[str]], list[int]] | None) -> tuple[list[bool] | None, int]:
    """Per record: its recorded CUT_FIELD, else whether its output's token count (`count_tokens`, the policy
    tokenizer) reached `max_new_tokens`. Returns (flags, how many fell back); flags None where some record has no
    field and there is no tokenizer or cap to fall back on."""
    missing = [k for k, rec in enumerate(records) if not isinstance(rec.get(CUT_FIELD), bool)]
    flags = [bool(rec.get(CUT_FIELD)) for rec in records]
    if missing:
        if count_tokens is None or not max_new_tokens:
            return None, len(missing)
        counts = count_tokens([records[k]["output"] for k in missing])
        for k, n in zip(missing, counts):
            flags[k] = n >= max_new_tokens
    return flags, len(missing)


def fallback_note(n_fallback: int, n_total: int, where: str, max_new_tokens: int | None) -> str:
    """The one line that says cut flags were inferred from token counts (or could not be)."""
    if max_new_tokens:
        return (f"note: {where}: {n_fallback} of {n_total} answers carry no '{CUT_FIELD}' field; for them cut = "
                f"the answer's token count reached the cap of {max_new_tokens}")
    return (f"note: {where}: {n_fallback} of {n_total} answers carry no '{CUT_FIELD}' field and no tokenizer counts "
            "their tokens; cut vs finished not split")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def split_by_cut(scores: Sequence[float], cut: Sequence[bool]) -> dict[str, Any]:
    """Share of cut answers and the mean score of cut and of finished answers (None where a side is empty)."""
    if len(scores) != len(cut):
        raise ValueError(f"{len(scores)} scores for {len(cut)} cut flags")
    pairs = [(float(s), bool(c)) for s, c in zip(scores, cut) if not math.isnan(float(s))]
    n_cut = sum(c for _, c in pairs)
    return {"n": len(pairs), "n_cut": n_cut, "share_cut": n_cut / len(pairs) if pairs else None,
            "mean_cut": _mean([s for s, c in pairs if c]), "mean_finished": _mean([s for s, c in pairs if not c])}


def format_split(split: dict[str, Any] | None) -> str:
    """`12/30 cut, gold cut 0.41 / finished 1.93` (n/a for an empty side)."""
    if split is None:
        return "cut n/a"

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    return f"{split['n_cut']}/{split['n']} cut, gold cut {f(split['mean_cut'])} / finished {f(split['mean_finished'])}"
