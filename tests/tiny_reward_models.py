"""Tiny random models saved to disk for the evaluation tests (real layouts, real tokenizer, no hub access)."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import tiny_llama_config


def save_tiny_starling(out_dir: str | Path, tokenizer_dir: str, seed: int = 0):
    """A tiny Starling-RM layout (LlamaModel under `transformer`, bias-free `v_head`); returns (folder, model).
    The tokenizer is not saved with it, as with the real checkpoint (its tokenizer is Yi-34B-Chat's)."""
    from transformers import AutoTokenizer

    from rre.gold import STARLING_PAD_ID, StarlingRewardModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    model = StarlingRewardModel(tiny_llama_config(tokenizer, pad_token_id=STARLING_PAD_ID)).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    return str(out_dir), model


def save_tiny_classifier(out_dir: str | Path, tokenizer_dir: str, seed: int = 0, num_labels: int = 1,
                         chat_template: bool = True):
    """A tiny LlamaForSequenceClassification reward model with SmolLM2's tokenizer; returns (folder, model)."""
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if not chat_template:
        tokenizer.chat_template = None
    torch.manual_seed(seed)
    config = tiny_llama_config(tokenizer, num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if not chat_template:
        for name in ("chat_template.jinja", "chat_template.json"):
            (Path(out_dir) / name).unlink(missing_ok=True)
    return str(out_dir), model


def save_lora_adapter(base_dir: str, out_dir: str | Path, seed: int) -> str:
    """A LoRA adapter on the tiny causal LM with random (non-zero) weights, so each checkpoint differs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(out_dir)
    return str(out_dir)
