"""What run_ppo.py and run_grpo.py share: their common flags, the policy's tokenizer and prompt format, and the
prompts they train on, built the same way."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rre.checkpoints import check_run_target, finished_run
from rre.files import OutputKind, clean_partials, mark_dir, remove_own
from rre.errors import load_errors
from rre.offline_models import smollm2_folder, smollm2_path
from rre.prompts import PromptFormat, resolve_prompt_format
from rre.proxy_settings import write_training_config


@dataclass
class SharedTrainingFlags:
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
    overwrite: bool = field(
        default=False, metadata={"help": "start again over a run at --output_dir: its own _step_N and _final "
                                 "folders are removed first (without it, a run found there stops the script)"}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads per process"})
    mixed_precision: str | None = field(
        default=None,
        metadata={"aliases": ["--precision"],
                  "help": "auto | no | bf16 | fp16 (run_ppo.py only), or the same as dtype names: float32 (= no), "
                  "bfloat16 (= bf16); --precision is the same flag. Default: accelerate's config when run_ppo.py is "
                  "launched with one, else auto: bf16 where the device runs it natively (precision.py). run_ppo.py: "
                  "bf16 without DeepSpeed keeps the frozen base weights in bf16 and LoRA/value head in fp32 under "
                  "autocast; run_grpo.py: the policy weights' dtype, LoRA weights stay float32"},
    )
    attn_implementation: str = field(
        default="auto",
        metadata={"help": "auto: eager on CPU (its backward was ~1.7x faster than the CPU flash kernel in our "
                  "measurements), transformers' default elsewhere | eager | sdpa | flash_attention_2"},
    )
    features_module: str | None = field(
        default=None, metadata={"help": "Python file with EXTRA_FEATURES (and optionally combine) to extend the reward"}
    )


# --mixed_precision's values in accelerate's spelling; --precision's dtype names mean the same.
PRECISION_SPELLINGS = {"auto": "auto", "no": "no", "float32": "no", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16"}
ATTENTION_CHOICES = ("auto", "eager", "sdpa", "flash_attention_2")


def mixed_precision_setting(value: str | None) -> str | None:
    """The flag in accelerate's spelling (auto | no | bf16 | fp16); None when not given."""
    return None if value is None else PRECISION_SPELLINGS[value]


def run_inputs(args: SharedTrainingFlags) -> dict[str, str | None]:
    """The paths a training run reads, by flag: none of them may be written over or removed."""
    return {"model_name": args.model_name, "tokenizer_name": args.tokenizer_name, "dataset_path": args.dataset_path,
            "dev_prompt_path": getattr(args, "dev_prompt_path", None), "features_module": args.features_module,
            "resume_from_checkpoint": None if args.resume_from_checkpoint == "latest" else args.resume_from_checkpoint}


def start_run_folder(args: SharedTrainingFlags, command: str, kind: OutputKind, config_record: dict) -> Path:
    """On the main process, once every check has passed and before the first step: the old run's own folders
    removed (--overwrite), a killed save's leftovers tidied, the run folder made (marked when this run made it)
    and its training_config.json written."""
    base = Path(args.output_dir.rstrip("/"))
    for folder in check_run_target(args.output_dir, args.resume_from_checkpoint, args.overwrite, kind,
                                   run_inputs(args)):
        remove_own(folder, kind)
        print(f"removed {folder}: a checkpoint of the run at --output_dir (--overwrite)", file=sys.stderr)
    for p in clean_partials(base.parent, kind, f"{base.name}_step_", f"{base.name}_final"):
        print(f"removed {p}: an unfinished save of a killed run", file=sys.stderr)
    new = not base.exists() or not any(base.iterdir())
    base.mkdir(parents=True, exist_ok=True)
    if new:
        mark_dir(base, command)
    write_training_config(base, config_record)
    return base


def policy_folder(args: SharedTrainingFlags) -> str:
    """The policy the run loads (--model_name, else the offline SmolLM2's folder), for the checks that read its
    config.json before any weights load."""
    return args.model_name or str(smollm2_folder(args.cache_dir))


def prompt_and_response(args: SharedTrainingFlags, output_max_length: int) -> dict:
    """The token lengths a training sequence holds, for `validation.fits_context`: the longest prompt kept and
    the longest response."""
    prompt = args.max_prompt_length or (output_max_length, "its default: --output_max_length")
    return {"output_max_length": output_max_length, "max_prompt_length": prompt}


def finished(args: SharedTrainingFlags) -> bool:
    """With --resume_from_checkpoint=latest, a run at --output_dir that already reached --overall_steps is
    finished: say so (nothing is loaded or written) and let the script exit 0."""
    final = finished_run(args.output_dir, args.overall_steps) if args.resume_from_checkpoint == "latest" else None
    if final is not None:
        print(f"{final}: the run is finished ({args.overall_steps} steps); nothing to do (--overwrite=true to train "
              "it again)", file=sys.stderr)
    return final is not None


def process_settings(num_threads: int | None) -> None:
    """Per process, before any model loads: no tokenizer thread pool beside torch's, and --num_threads."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if num_threads:
        torch.set_num_threads(num_threads)


def policy_and_format(args: SharedTrainingFlags) -> tuple[str, Any, PromptFormat]:
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
