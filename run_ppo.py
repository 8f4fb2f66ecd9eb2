"""Train a LoRA policy with PPO against the white-box proxy reward (the paper's `run_ppo.py`).

    accelerate launch --config_file configs/zero2-bf16.yaml run_ppo.py --exp_name=alpaca_test \
        --model_name=$MODEL_NAME --dataset_path=data/train.json --dev_prompt_path=data/dev.json ...
    python run_ppo.py --overall_steps=3 ...          # one process, CPU or one GPU

The flags keep the paper's names (`--help` lists them, with the reward's flags). Outputs:
  {output_dir}/training_config.json   every flag of the run
  {logging_dir}/trl                   tensorboard scalars, through accelerate's trackers (--log_with;
                                      logging_dir defaults to {output_dir}/logs)
  {output_dir}_step_{N}/              every save_freq steps: LoRA adapter (PeftModel.from_pretrained on the
                                      base model loads it), value_head.safetensors, tokenizer, a copy of
                                      training_config.json, training_state.json (readable summary) and
                                      state/ (accelerate's save_state), which --resume_from_checkpoint restores
  {output_dir}_final/                 the same at the end
A checkpoint is built under a hidden `.partial-` name and renamed once complete, so a killed save never looks
like one (checkpoints.py lists the complete ones); the next start removes what a killed save left. What a
checkpoint holds and how a run resumes from it: rre/run_state.py.
"""

from __future__ import annotations

import rre.openmp  # noqa: F401  (first: sets OpenMP's barrier wait before torch loads)

import importlib.util
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from reward_model import ReversedEngineeredRewardForInference, RewardConfig, check_reward_flags, training_reward
from rre import validation
from rre.checkpoints import check_run_target, checkpoint_path
from rre.data import load_examples
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.features import check_features_module
from rre.files import PPO_CHECKPOINT
from rre.ppo import PolicyWithValueHead, PPOConfig, PPOTrainer, ValueHead, optimizer_steps_per_ppo_step, train_chunk_size
from rre.precision import mixed_precision_for
from rre.prompts import PROMPT_FORMATS, TEMPLATES
from rre.proxy_settings import proxy_settings
from rre.run_state import PromptStream, find_resume, read_run_summary, register_run_state, restore, save_checkpoint
from rre.training import (
    ATTENTION_CHOICES,
    PRECISION_SPELLINGS,
    SharedTrainingFlags,
    finished,
    mixed_precision_setting,
    policy_and_format,
    policy_folder,
    process_settings,
    prompt_and_response,
    run_inputs,
    start_run_folder,
    tokenize_prompts,
)
from rre.validation import parse_flags

# ---------------------------------------------------------------------------------------------------------
# Flags.


@dataclass
class ScriptArguments(SharedTrainingFlags):
    """Run flags; names follow the paper's `ScriptArguments`. PPO and reward flags are listed separately."""

    exp_name: str = field(default="ppo", metadata={"help": "experiment name (tensorboard/wandb run name)"})
    dev_prompt_path: str | None = field(default="data/dev.json", metadata={"help": "dev prompts evaluated at each save"})
    dev_max_examples: int | None = field(default=None, metadata={"help": "evaluate only the first N dev prompts"})
    output_dir: str = field(default="runs/ppo", metadata={"help": "run folder; checkpoints go to {output_dir}_step_N"})
    overall_steps: int = field(default=10000, metadata={"help": "number of PPO steps"})
    save_freq: int | None = field(default=500, metadata={"help": "evaluate and save every N steps (0/None: only final)"})
    eval_table_rows: int = field(default=3, metadata={"help": "dev rows printed at each evaluation"})
    accumulation_from_launch: bool = field(
        default=True,
        metadata={"help": "as the paper's stack (accelerate 0.23): when the launch config sets gradient_accumulation_steps "
                  "(accelerate launch exports it as ACCELERATE_GRADIENT_ACCUMULATION_STEPS; the paper's "
                  "zero2-bf16.yaml sets 1), it replaces --gradient_accumulation_steps as the number of mini-batches "
                  "per optimizer step. false: always --gradient_accumulation_steps"},
    )
    # Flags of the paper's script that change nothing here; accepted so its command runs as written.
    adafactor: bool = field(default=False, metadata={"help": "the paper's flag; only false (Adam) is supported"})
    batched_gen: bool = field(default=True, metadata={"help": "the paper's flag; no effect (generation is batched)"})
    reward_model_name: str | None = field(
        default=None, metadata={"help": "the paper's flag; no effect (the proxy is the white-box reward)"}
    )
    chat_template_name: str | None = field(
        default=None, metadata={"help": "the paper's flag: a template by name (alpaca, vicuna_v1.1, llama-2, tulu, "
                                "zephyr, almost), the same as --prompt_format NAME (default: --prompt_format)"}
    )
    load_in_8bit: bool = field(default=False, metadata={"help": "the paper's flag; no effect (only false is supported)"})


# Paper flags that are accepted but do nothing here, with the one line printed when one is given.
NO_EFFECT_FLAGS = {
    "batched_gen": "generation is always batched here",
    "reward_model_name": "the proxy is the white-box reward (its encoder is --relevance_model)",
    "load_in_8bit": "the policy loads in its --mixed_precision dtype",
}


def parse_args(argv: list[str] | None = None) -> tuple[ScriptArguments, PPOConfig, RewardConfig]:
    """Flags, checked before anything loads: a bad one ends the run with one `error:` line and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    args, ppo_config, reward_config = parse_flags((ScriptArguments, PPOConfig, RewardConfig), argv,
                                                  __doc__.split("\n")[0])
    # The paper's reward ranges up to output_max_length / 100 for CONSTRAINED answers.
    if not validation.flag_given(argv, "max_sequence_length"):
        reward_config.max_sequence_length = ppo_config.output_max_length
    for name in sorted(validation.given_flags(argv, NO_EFFECT_FLAGS)):
        print(f"note: --{name} has no effect here: {NO_EFFECT_FLAGS[name]}", file=sys.stderr)
    with exit_on_data_error():
        check_flags(args, ppo_config, reward_config)
        apply_paper_spellings(args, ppo_config, reward_config, argv)
    return args, ppo_config, reward_config


def apply_paper_spellings(args: ScriptArguments, ppo_config: PPOConfig, reward_config: RewardConfig,
                          argv: list[str]) -> None:
    """The paper's flags mapped onto this project's: `--chat_template_name NAME` is `--prompt_format NAME`, and
    under `--response_postprocess paper` `--rollout_postprocessing=false` turns the reward's cut off, as the
    paper's script passed that flag to its reward as `do_strip`."""
    if args.chat_template_name is not None:
        if args.chat_template_name not in TEMPLATES:
            raise DataError(f"--chat_template_name must be one of {', '.join(TEMPLATES)}; got "
                            f"{args.chat_template_name!r}")
        if validation.flag_given(argv, "prompt_format") and args.prompt_format != args.chat_template_name:
            raise DataError(f"--chat_template_name {args.chat_template_name} and --prompt_format "
                            f"{args.prompt_format} name two prompt formats; give one")
        args.prompt_format = args.chat_template_name
    if reward_config.response_postprocess == "paper" and not ppo_config.rollout_postprocessing:
        if validation.flag_given(argv, "do_strip") and reward_config.do_strip:
            raise DataError("--rollout_postprocessing=false under --response_postprocess paper turns the reward's "
                            "cut off (as the paper's script did); --do_strip=true asks for it: give one")
        reward_config.do_strip = False


def check_flags(args: ScriptArguments, ppo_config: PPOConfig, reward_config: RewardConfig) -> None:
    """Every flag that can be checked without loading a model (validation.py)."""
    validation.finite_flags(args, ppo_config)
    validation.range_flags(args, ppo_config)
    validation.seed("seed", args.seed, processes=int(os.environ.get("WORLD_SIZE", "1")))  # each process seeds seed + rank
    validation.one_of("prompt_format", args.prompt_format, PROMPT_FORMATS + ("auto",))
    validation.one_of("log_with", args.log_with, ("tensorboard", "wandb", "none"))
    if args.log_with == "wandb" and importlib.util.find_spec("wandb") is None:
        raise DataError("--log_with=wandb needs the wandb package (pip install wandb)")
    if args.mixed_precision is not None:  # None: accelerate's config, else the precision rule
        validation.one_of("mixed_precision", args.mixed_precision, tuple(PRECISION_SPELLINGS))
    validation.one_of("attn_implementation", args.attn_implementation, ATTENTION_CHOICES)
    if args.adafactor:
        raise DataError("--adafactor=true is not supported (the optimizer is Adam, as in the paper's command)")
    if args.load_in_8bit:
        raise DataError("--load_in_8bit=true is not supported (LoRA trains on the full-precision base)")
    validation.non_negative("overall_steps", args.overall_steps)
    validation.non_negative("save_freq", args.save_freq, allow_none=True)
    validation.non_negative("eval_table_rows", args.eval_table_rows)
    for name in ("dev_max_examples", "max_prompt_length", "num_threads"):
        validation.positive(name, getattr(args, name), allow_none=True)
    for name in ("lora_r", "lora_alpha"):
        validation.positive(name, getattr(args, name))
    try:
        ppo_config.validate()
    except ValueError as err:
        raise DataError(str(err)) from None
    check_reward_flags(reward_config)
    validation.training_paths(args)
    validation.fits_context("model_name", policy_folder(args), prompt_and_response(args, ppo_config.output_max_length))
    if args.dev_prompt_path and args.save_freq:
        validation.input_data("dev_prompt_path", args.dev_prompt_path)
    if args.resume_from_checkpoint and args.resume_from_checkpoint != "latest":
        read_run_summary(Path(args.resume_from_checkpoint))
    check_features_module("features_module", args.features_module)
    check_run_target(args.output_dir, args.resume_from_checkpoint, args.overwrite, PPO_CHECKPOINT, run_inputs(args))


# ---------------------------------------------------------------------------------------------------------
# The run: main, then the training loop.


def main(argv: list[str] | None = None) -> None:
    args, ppo_config, reward_config = parse_args(argv)
    process_settings(args.num_threads)
    with exit_on_data_error():
        if finished(args):
            return
        try:
            train(args, ppo_config, reward_config)
        except FloatingPointError as err:  # too many NaN/inf steps in a row
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)


def train(args: ScriptArguments, ppo_config: PPOConfig, reward_config: RewardConfig) -> None:
    from tqdm.auto import tqdm

    run = setup(args, ppo_config, reward_config)
    accelerator, trainer, main_proc = run.accelerator, run.trainer, run.accelerator.is_main_process
    if main_proc:
        start_run_folder(args, "run_ppo.py", PPO_CHECKPOINT, run.config_record)
    # TRL 0.7.4's tracker project name: tensorboard writes to {logging_dir}/trl; wandb names the run exp_name.
    accelerator.init_trackers("trl", config=tracker_config(run.config_record),
                              init_kwargs={"wandb": {"name": args.exp_name}})

    bar = tqdm(total=args.overall_steps, initial=trainer.current_step, desc="PPO steps", unit="step",
               disable=not main_proc, dynamic_ncols=True)
    while trainer.current_step < args.overall_steps:
        indices = run.stream.next_indices()
        stats = trainer.step([run.train_examples[i] for i in indices], [run.train_prompts[i] for i in indices])
        step = trainer.current_step
        if args.save_freq and step % args.save_freq == 0:
            if run.dev_examples:
                stats.update(evaluate(trainer, run.dev_examples, run.dev_prompts, run.reward_fn, accelerator,
                                      args.eval_table_rows, f"{args.exp_name} @ step {step}"))
            save_checkpoint(checkpoint_path(args.output_dir, f"step_{step}"), trainer, run.tokenizer, run.stream,
                            accelerator, run.config_record)
        accelerator.log(stats, step=step)
        if main_proc:
            bar.write(format_step_line(step, args.overall_steps, stats)
                      + (f" | dev {stats['eval/reward_mean']:.3f}" if "eval/reward_mean" in stats else ""))
        bar.update(1)
    bar.close()
    save_checkpoint(checkpoint_path(args.output_dir, "final"), trainer, run.tokenizer, run.stream, accelerator,
                    run.config_record)
    if main_proc:
        print(f"done: {trainer.current_step} steps; final adapter in {checkpoint_path(args.output_dir, 'final')}",
              file=sys.stderr)
    accelerator.end_training()


# ---------------------------------------------------------------------------------------------------------
# Builders: what `setup` puts together.


@dataclass
class PPORun:
    """Everything `setup` builds: the CLI loop below and bench/ppo_smollm2.py drive it."""

    accelerator: object
    trainer: PPOTrainer
    tokenizer: object
    stream: PromptStream
    train_examples: list
    train_prompts: list
    dev_examples: list
    dev_prompts: list
    reward_fn: object
    reward_model: ReversedEngineeredRewardForInference
    config_record: dict


def setup(args: ScriptArguments, ppo_config: PPOConfig, reward_config: RewardConfig) -> PPORun:
    """Accelerator, tokenizer, prompts, policy, optimizer, reward and trainer; restores a checkpoint."""
    from accelerate.utils import DistributedType, set_seed

    accelerator, accumulation, source, chunk = make_accelerator(args, ppo_config)
    is_ds = accelerator.distributed_type == DistributedType.DEEPSPEED
    set_seed(args.seed)  # identical initial LoRA and value-head weights on every process
    model_name, tokenizer, prompt_format = policy_and_format(args)
    train_examples, train_prompts, dev_examples, dev_prompts = load_prompts(args, ppo_config, reward_config,
                                                                            tokenizer, prompt_format, accelerator)
    stream = PromptStream(len(train_prompts), ppo_config.batch_size, accelerator.num_processes,
                          accelerator.process_index, args.seed)
    resume_path = find_resume(args.resume_from_checkpoint, args.output_dir, accelerator, is_ds)  # before building anything
    model, optimizer = prepare_policy(args, ppo_config, model_name, accelerator, is_ds, chunk, accumulation)
    reward_config, white_box_reward, reward_fn = build_reward(args, reward_config, prompt_format, accelerator)
    trainer = PPOTrainer(ppo_config, accelerator, model, optimizer, tokenizer, prompt_format, reward_fn,
                         warmup_steps=args.overall_steps * ppo_config.warmup_ratio, accumulation_steps=accumulation,
                         response_postprocess=reward_config.response_postprocess)
    register_run_state(accelerator, trainer, stream)
    if resume_path:
        restore(accelerator, resume_path, is_ds, trainer, stream)
    else:
        set_seed(args.seed + accelerator.process_index)  # different samples on each process
    fmt_name = prompt_format.name
    config_record = {"script": asdict(args), "ppo": asdict(ppo_config), "reward": asdict(reward_config),
                     "resolved": {"model_name": model_name, "prompt_format": fmt_name,
                                  "response_postprocess": reward_config.response_postprocess,
                                  "rollouts_cut_with_eos": trainer.cut_rollouts,
                                  "num_processes": accelerator.num_processes,
                                  "distributed_type": str(accelerator.distributed_type),
                                  "mixed_precision": accelerator.mixed_precision,
                                  "accumulation_steps": accumulation, "accumulation_source": source,
                                  "optimizer_steps_per_ppo_step": trainer.optimizer_steps_per_ppo_step},
                     "proxy": proxy_settings(reward_config, fmt_name, prompt_format.stop_strings, args.features_module)}
    return PPORun(accelerator, trainer, tokenizer, stream, train_examples, train_prompts, dev_examples, dev_prompts,
                  reward_fn, white_box_reward, config_record)


def make_accelerator(args: ScriptArguments, ppo_config: PPOConfig):
    """The Accelerator (mixed precision by choose_mixed_precision), and the optimizer accumulation: returns
    (accelerator, accumulation, where it came from, train chunk size)."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    handlers = []
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and not torch.cuda.is_available():
        # DeepSpeed on CPU: accelerate only counts the processes when the process group backend is named.
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    mixed_precision, why = choose_mixed_precision(mixed_precision_setting(args.mixed_precision), os.environ)
    logging_dir = args.logging_dir or str(Path(args.output_dir) / "logs")
    accelerator = Accelerator(mixed_precision=mixed_precision, kwargs_handlers=handlers,
                              log_with=None if args.log_with == "none" else args.log_with, project_dir=logging_dir)
    if accelerator.is_main_process:
        print(f"run_ppo.py: mixed precision {accelerator.mixed_precision} on {accelerator.device.type} ({why})",
              file=sys.stderr)
    accumulation, source = optimizer_accumulation(ppo_config, args.accumulation_from_launch)
    try:
        chunk = train_chunk_size(ppo_config, accumulation)
    except ValueError as err:
        raise DataError(f"{err} ({source})") from None
    # The PPO loop accumulates its own chunks (the trainer sets this again; DeepSpeed's prepare reads it).
    accelerator.gradient_accumulation_steps = ppo_config.mini_batch_size * accumulation // chunk
    if accelerator.is_main_process:
        print(f"optimizer steps per PPO step: {optimizer_steps_per_ppo_step(ppo_config, accumulation)} "
              f"(mini-batch {ppo_config.mini_batch_size}, accumulation {accumulation}; {source})", file=sys.stderr)
    return accelerator, accumulation, source, chunk


def choose_mixed_precision(flag: str | None, environ) -> tuple[str | None, str]:
    """(value for Accelerator, why): the flag when given; else accelerate's config when launched with one (it sets
    ACCELERATE_MIXED_PRECISION); else precision.py's rule: bf16 only where the device runs it natively."""
    if flag not in (None, "auto"):
        return flag, "requested"
    if flag is None and "ACCELERATE_MIXED_PRECISION" in environ:
        return None, "accelerate config"
    return mixed_precision_for("auto", "cuda" if torch.cuda.is_available() else "cpu"), "precision.py rule"


def optimizer_accumulation(ppo_config: PPOConfig, from_launch: bool) -> tuple[int, str]:
    """Mini-batches per optimizer step, and where that number came from.

    The paper's stack: TRL 0.7.4 passed --gradient_accumulation_steps to accelerate 0.23's `Accelerator`, which
    took ACCELERATE_GRADIENT_ACCUMULATION_STEPS in its place when set. `accelerate launch` exports that variable
    from a DeepSpeed launch config's gradient_accumulation_steps, which the paper's zero2-bf16.yaml set to 1: the
    paper took an optimizer step every mini-batch (32 per PPO step of batch 16, mini-batch 2, 4 epochs).
    """
    env = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if from_launch and env and env.isdigit() and int(env) >= 1:
        return int(env), ("the launch config's gradient_accumulation_steps, which replaced "
                          f"--gradient_accumulation_steps={ppo_config.gradient_accumulation_steps} in the paper's stack; "
                          "--accumulation_from_launch=false to use the flag")
    return ppo_config.gradient_accumulation_steps, "--gradient_accumulation_steps"


def load_prompts(args: ScriptArguments, ppo_config: PPOConfig, reward_config: RewardConfig, tokenizer, prompt_format,
                 accelerator) -> tuple[list, list, list, list]:
    """Train and dev examples and their prompt token ids (longer prompts dropped); enough for one batch per process.
    The reward reads each example's own fields (query, reference, qtype), never the prompt text."""
    main_proc, fmt_name = accelerator.is_main_process, prompt_format.name
    max_prompt = args.max_prompt_length or ppo_config.output_max_length
    train_examples = load_examples(args.dataset_path, require_qtype=reward_config.needs_qtype)
    train_examples, train_prompts, too_long = tokenize_prompts(train_examples, prompt_format, tokenizer, max_prompt)
    if main_proc:
        print(f"train: {len(train_prompts)} prompts from {args.dataset_path} ({too_long} longer than {max_prompt} "
              f"tokens dropped); prompt format: {fmt_name}", file=sys.stderr)
    dev_examples, dev_prompts = [], []
    if args.dev_prompt_path and args.save_freq:
        dev_examples = load_examples(args.dev_prompt_path, require_qtype=reward_config.needs_qtype)[: args.dev_max_examples]
        dev_examples, dev_prompts, dropped = tokenize_prompts(dev_examples, prompt_format, tokenizer, max_prompt)
        if main_proc:
            print(f"dev: {len(dev_prompts)} prompts from {args.dev_prompt_path} ({dropped} dropped)", file=sys.stderr)
    need = ppo_config.batch_size * accelerator.num_processes
    if len(train_prompts) < need:
        why = (f"; {too_long} of its {len(train_examples) + too_long} prompts are longer than --max_prompt_length="
               f"{max_prompt} tokens" + ("" if args.max_prompt_length else " (it defaults to --output_max_length, "
                                         "as in the paper; set --max_prompt_length)") if too_long else "")
        raise DataError(f"--dataset_path {args.dataset_path}: {len(train_prompts)} usable prompts, fewer than "
                        f"batch_size x processes ({need}){why}")
    return train_examples, train_prompts, dev_examples, dev_prompts


def prepare_policy(args: ScriptArguments, ppo_config: PPOConfig, model_name: str, accelerator, is_ds: bool,
                   chunk: int, accumulation: int):
    """The policy (LoRA and value head) and its Adam optimizer, through accelerator.prepare (DeepSpeed's batch
    keys filled in by hand: no dataloader goes through prepare)."""
    bf16_base = accelerator.mixed_precision == "bf16" and not is_ds
    model = build_policy(args, ppo_config, model_name, bf16_base, accelerator.device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=ppo_config.learning_rate)
    if is_ds:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds.get("zero_optimization", {}).get("stage", 0) == 3:
            raise DataError("ZeRO-3 shards the parameters, which rollouts cannot use; use a ZeRO-2 config")
        # No dataloader goes through prepare, so the batch keys must be filled by hand.
        ds["train_micro_batch_size_per_gpu"] = chunk
        ds["gradient_accumulation_steps"] = accelerator.gradient_accumulation_steps
        ds["train_batch_size"] = ppo_config.mini_batch_size * accumulation * accelerator.num_processes
        ds["gradient_clipping"] = ppo_config.max_grad_norm or 0.0
    model, optimizer = accelerator.prepare(model, optimizer)

    return model, optimizer


def build_policy(args: ScriptArguments, ppo_config: PPOConfig, model_name: str, bf16_base: bool,
                 device: torch.device) -> PolicyWithValueHead:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    attn = args.attn_implementation
    if attn == "auto":
        attn = "eager" if device.type == "cpu" else None
    with load_errors("model_name", model_name):
        base = AutoModelForCausalLM.from_pretrained(
            model_name, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code,
            dtype=torch.bfloat16 if bf16_base else torch.float32, attn_implementation=attn)
    if args.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=[m.strip() for m in args.lora_target_modules.split(",")])
    # autocast_adapter_dtype keeps the LoRA weights in float32 even when the frozen base is bf16.
    policy = get_peft_model(base, lora, autocast_adapter_dtype=True)
    value_head = ValueHead(base.config.get_text_config().hidden_size, ppo_config.value_head_dropout)
    return PolicyWithValueHead(policy, value_head.to(base.device))


def build_reward(args: ScriptArguments, reward_config: RewardConfig, prompt_format, accelerator):
    """The proxy on this process's device: (its config, the reward, reward_fn(examples, texts))."""
    reward_config, white_box_reward = training_reward(reward_config, prompt_format.stop_strings,
                                                      args.features_module, accelerator.device)

    def reward_fn(examples, texts):
        return white_box_reward([e.query for e in examples], texts, [e.reference for e in examples],
                                [e.qtype for e in examples])

    return reward_config, white_box_reward, reward_fn


# ---------------------------------------------------------------------------------------------------------
# Evaluation and logging.


def evaluate(trainer: PPOTrainer, examples, prompts, reward_fn, accelerator, table_rows: int, title: str) -> dict:
    """Proxy reward of sampled dev responses (each process takes a share), with a few rows printed."""
    from accelerate.utils import gather_object

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(examples), world))
    size = trainer.config.generation_batch_size or trainer.config.batch_size
    rows = []
    for start in range(0, len(mine), size):
        idx = mine[start:start + size]
        _, texts = trainer.generate([prompts[i] for i in idx])
        scores = reward_fn([examples[i] for i in idx], texts)
        rows += [(i, t, s) for i, t, s in zip(idx, texts, scores)]
    rows = sorted(gather_object(rows))
    rewards = torch.tensor([s for _, _, s in rows], dtype=torch.float64)
    stats = {"eval/reward_mean": rewards.mean().item(),
             "eval/reward_std": rewards.std().item() if len(rows) > 1 else 0.0}
    if accelerator.is_main_process and table_rows:
        from rich.console import Console
        from rich.table import Table

        table = Table("prompt", "response", "reward", title=f"{title}: dev reward {stats['eval/reward_mean']:.3f} "
                      f"+/- {stats['eval/reward_std']:.3f} (n={len(rows)})", show_lines=True)
        for i, text, score in rows[:table_rows]:
            table.add_row(examples[i].query[:300], text[:500], f"{score:.3f}")
        Console(stderr=True).print(table)
    return stats


def tracker_config(record: dict) -> dict:
    """The run's settings as the flat scalar dict trackers accept (tensorboard's hparams reject None/lists)."""
    flat = {}
    for section, values in record.items():
        for key, value in values.items():
            flat[f"{section}/{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def format_step_line(step: int, total: int, s: dict[str, float]) -> str:
    return (f"step {step}/{total} | reward {s['env/reward_mean']:.3f} +/- {s['env/reward_std']:.3f} | "
            f"kl {s.get('objective/kl', float('nan')):.3f} | kl_coef {s['objective/kl_coef']:.4f} | "
            f"loss {s.get('ppo/loss/total', float('nan')):.4f} | len {s['tokens/responses_len_mean']:.1f} "
            f"(cut {s.get('env/cut_share', float('nan')):.2f}) | "
            f"{s['time/step']:.1f}s (gen {s['time/generation']:.1f}, reward {s['time/reward']:.1f}, "
            f"fwd {s['time/forward']:.1f}, update {s['time/update']:.1f})"
            + (f" | skipped {int(s['ppo/skipped_steps'])} steps" if s["ppo/skipped_steps"] else ""))


if __name__ == "__main__":
    main()
