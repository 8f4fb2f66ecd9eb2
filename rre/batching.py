"""Texts of similar length share a forward, so little compute goes to padding: the batching every encoder, gold
model, generation loop and the gold stand-in use."""

from __future__ import annotations

from typing import Sequence

import torch


def sorted_batches(lengths: Sequence[int], batch_size: int, longest_first: bool = False) -> list[list[int]]:
    """Indices sorted by length (stable; longest first puts an out-of-memory error at the start), cut every
    `batch_size`."""
    key = (lambda i: -lengths[i]) if longest_first else (lambda i: lengths[i])
    order = sorted(range(len(lengths)), key=key)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def length_batches(lengths: list[int], max_batch: int, overhead: int = 32) -> list[list[int]]:
    """Indices in batches of similar length, for right-padded forwards: sorted by length and cut where the
    padded tokens plus `overhead` token-equivalents per forward (its fixed per-call cost) are fewest, at most
    `max_batch` each. Texts of one prompt range from a few words to the full answer, so batching them as they
    come nearly doubled the tokens computed."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0] + [float("inf")] * len(order)  # best[j]: cost of the j shortest, batched optimally
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(max(0, j - max_batch), j):  # last batch = order[i:j], padded to order[j - 1]'s length
            cost = best[i] + (j - i) * lengths[order[j - 1]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], len(order)
    while j:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token id lists into (input_ids, attention_mask), padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask
