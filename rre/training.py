"""What run_ppo.py and run_grpo.py share: the prompts they train on, built the same way."""

from __future__ import annotations

import torch


def tokenize_prompts(examples, prompt_format, tokenizer, max_length: int):
    """Prompt token ids of each example; examples with longer prompts are dropped (count printed)."""
    add_special = prompt_format.name == "alpaca"  # a chat template already writes the special tokens
    kept, prompts = [], []
    for ex in examples:
        ids = tokenizer(prompt_format.build(ex.instruction, ex.input), add_special_tokens=add_special)["input_ids"]
        if len(ids) <= max_length:
            kept.append(ex)
            prompts.append(torch.tensor(ids, dtype=torch.long))
    return kept, prompts, len(examples) - len(kept)
