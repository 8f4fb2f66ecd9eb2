"""What run_ppo.py and run_grpo.py share: their common flags, the policy's tokenizer and prompt format, and the
prompts they train on, built the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from rre.loading import load_errors
from rre.offline_models import smollm2_path
from rre.prompts import PromptFormat, resolve_prompt_format


@dataclass
class TrainingArguments:
    """The flags run_ppo.py and run_grpo.py share (the paper's names); each script's ScriptArguments extends them."""

    model_name: str | None = field(
        default=None, metadata={"help": "policy: hub name or local folder (default: offline SmolLM2-135M-Instruct)"}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer (default: model_name)"})
    cache_dir: str | None = field(default=None, metadata={"help": "hub cache directory"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from the hub"})
    dataset_path: str = field(default="data/train.json", metadata={"help": "training prompts (JSON/JSONL/dataset)"})
    prompt_format: str = field(
        default="auto",
        metadata={"help": "alpaca (the paper's AlpacaFarm template) | chat (the tokenizer's chat template) | auto: "
                  "chat when the tokenizer has a chat template (SmolLM2-Instruct), else alpaca"},
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "drop longer prompts at load time (default: output_max_length, as the paper)"}
    )
    logging_dir: str | None = field(default=None, metadata={"help": "tensorboard folder (default: {output_dir}/logs)"})
    log_with: str = field(default="tensorboard", metadata={"help": "tensorboard | wandb | none"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default="q_proj,v_proj", metadata={"help": "comma-separated LoRA targets"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a {output_dir}_step_N folder, or 'latest' (starts fresh when none exists)"}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads per process"})
    features_module: str | None = field(
        default=None, metadata={"help": "Python file with EXTRA_FEATURES (and optionally combine) to extend the reward"}
    )


def process_settings(num_threads: int | None) -> None:
    """Per process, before any model loads: no tokenizer thread pool beside torch's, and --num_threads."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if num_threads:
        torch.set_num_threads(num_threads)


def policy_and_format(args: TrainingArguments) -> tuple[str, Any, PromptFormat]:
    """The policy's name (default: the offline SmolLM2), its tokenizer (padding with EOS when it has no pad token)
    and the prompt format (`auto`: the tokenizer's chat template when it has one, else Alpaca)."""
    from transformers import AutoTokenizer

    model_name = args.model_name
    if model_name is None:
        model_name = smollm2_path(args.cache_dir) if args.cache_dir else smollm2_path()
    tok_flag = "tokenizer_name" if args.tokenizer_name else "model_name"
    with load_errors(tok_flag, args.tokenizer_name or model_name):
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name or model_name, cache_dir=args.cache_dir,
                                                  trust_remote_code=args.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model_name, tokenizer, resolve_prompt_format(args.prompt_format, tokenizer)


def tokenize_prompts(examples, prompt_format, tokenizer, max_length: int):
    """Prompt token ids of each example; examples with longer prompts are dropped (count printed)."""
    add_special = prompt_format.add_special_tokens
    kept, prompts = [], []
    for ex in examples:
        ids = tokenizer(prompt_format.build(ex.instruction, ex.input), add_special_tokens=add_special)["input_ids"]
        if len(ids) <= max_length:
            kept.append(ex)
            prompts.append(torch.tensor(ids, dtype=torch.long))
    return kept, prompts, len(examples) - len(kept)
