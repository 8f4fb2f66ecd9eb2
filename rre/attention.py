"""Two switches on a transformers model's attention: the KV-cache keyword its forward takes (the decode path and
the gold stand-in's frozen pass), and sdpa for passes without a backward (the gold stand-in)."""

from __future__ import annotations

import inspect
from contextlib import contextmanager

from torch import nn


def cache_argument(model: nn.Module) -> str:
    """The keyword a transformers model's forward takes its KV cache by: transformers 5 renamed
    `past_key_values` to `cache` within its 5.x releases, and requirements.txt admits both."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@contextmanager
def sdpa_attention(model: nn.Module):
    """Inside the block, a transformers model loaded with eager attention runs sdpa (restored after).

    The CPU models load eager for its faster backward; a pass without one (the gold stand-in's frozen pass)
    runs faster on sdpa's fused kernel. (Decoding has its own attention: rre/decode.py.)
    """
    original = model.config._attn_implementation
    if original != "eager":
        yield
        return
    model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        model.set_attn_implementation(original)
