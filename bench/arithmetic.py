"""What the benches put beside a measured time: the arithmetic of a pass and the rate this CPU reaches on a
dense matmul (the ceiling), so a phase's distance from the floor is visible."""

from __future__ import annotations

import time

import torch


def layer_and_head_params(lm) -> tuple[int, int]:
    """(weights a token passes through in a causal LM's layers, LM-head weights). Embeddings are lookups and
    LoRA weights are a rounding error; both are left out."""
    head = lm.get_output_embeddings().weight
    embed = lm.get_input_embeddings().weight
    body = sum(p.numel() for n, p in lm.named_parameters() if "lora_" not in n) - embed.numel()
    if head.data_ptr() != embed.data_ptr():  # untied: the head is a parameter of its own
        body -= head.numel()
    return body, head.numel()


def forward_flops(body: int, head: int, tokens: float, head_tokens: float) -> float:
    """2 FLOPs per weight per token through the layers, the LM head on `head_tokens` only; attention left out
    (a few % at these lengths)."""
    return 2 * body * tokens + 2 * head * head_tokens


def matmul_rate(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a size x size matmul at `dtype` on this machine's CPU, over about `seconds`."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * size ** 3 * n / (time.perf_counter() - start) / 1e9
