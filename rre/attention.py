"""Two switches on a transformers model's attention that the PPO rollouts and the gold stand-in's frozen pass
both need: the KV-cache keyword its forward takes, and sdpa for passes without a backward."""

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

    The CPU policy loads eager for its faster backward; decoding has no backward, and sdpa's fused kernel
    (which also skips eager's copies of the grouped-query key/value heads, repeat_kv, for a single query)
    decodes faster: 16 x 64 tokens of SmolLM2-135M on 2 CPU cores took 4.2 s vs 4.6 s in bf16 autocast and
    9.0 s vs 9.8 s in float32.
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
