"""Train a LoRA policy with TRL's GRPO or RLOO against the same white-box proxy reward as run_ppo.py.

    python run_grpo.py --trainer=grpo --overall_steps=3 --save_freq=1 ...      # one process, CPU or one GPU
    accelerate launch --config_file configs/zero2-cpu.yaml run_grpo.py --trainer=rloo ...

The paper trained with PPO (TRL 0.7.4, reimplemented in ppo.py). TRL 1.13+ has no PPO; its GRPOTrainer and
RLOOTrainer are what is used today. This script runs them unchanged (no subclassing): the white-box reward is
a TRL reward function that reads the query, reference answer and qtype from the dataset's own columns, and two
TrainerCallbacks write the project's checkpoint layout and print the per-step line. Outputs, as run_ppo.py:
  {output_dir}/training_config.json   every flag of the run, with "trainer": "grpo" | "rloo"
  {output_dir}/logs (logging_dir)     tensorboard scalars (or wandb with --log_with=wandb)
  {output_dir}_step_{N}/              every save_freq steps: LoRA adapter (PeftModel.from_pretrained on the base
                                      model loads it), tokenizer, training_config.json, and TRL's own training
                                      state (optimizer, scheduler, RNG, trainer_state.json) that
                                      --resume_from_checkpoint restores
  {output_dir}_final/                 adapter, tokenizer and training_config.json at the end
One step is one batch of `batch_size` generated samples per process (batch_size / num_generations prompts),
scored and used for `num_iterations` optimizer updates; with the default num_iterations=1 a step is one
optimizer update, so --overall_steps and --save_freq count the same rollouts as in run_ppo.py.
"""

from __future__ import annotations

import rre.openmp  # noqa: F401  (first: sets OpenMP's barrier wait before torch loads)

import importlib.util
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from reward_model import ReversedEngineeredRewardForInference, RewardConfig, check_reward_flags, training_reward
from rre import validation
from rre.checkpoints import check_run_target, checkpoint_path, latest_checkpoint
from rre.data import load_examples
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.features import check_features_module
from rre.files import (
    GRPO_CHECKPOINT,
    new_partial_dir,
    partial_path,
    read_json,
    remove_trainer_leftovers,
    replace_dir,
    require_key,
)
from rre.precision import announce, resolve_dtype
from rre.prompts import PROMPT_FORMATS
from rre.proxy_settings import proxy_settings, write_training_config
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

TRAINERS = ("grpo", "rloo")
# --mixed_precision (--precision) as the policy weights' dtype: precision.py's choices.
POLICY_DTYPES = {"auto": "auto", "no": "float32", "bf16": "bfloat16"}
TRAINER_STATE = "trainer_state.json"  # TRL/transformers' own state file: marks a complete step folder


@dataclass
class ScriptArguments(SharedTrainingFlags):
    """Run flags; the names are run_ppo.py's (the paper's), plus --trainer."""

    trainer: str = field(default="grpo", metadata={"help": "grpo (TRL GRPOTrainer) | rloo (TRL RLOOTrainer)"})
    exp_name: str = field(default="grpo", metadata={"help": "experiment name (tensorboard/wandb run name)"})
    output_dir: str = field(default="runs/grpo", metadata={"help": "run folder; checkpoints go to {output_dir}_step_N"})
    overall_steps: int = field(default=10000, metadata={"help": "number of steps (rollout batches)"})
    save_freq: int | None = field(default=500, metadata={"help": "save {output_dir}_step_N every N steps (0: only final)"})


@dataclass
class TRLArguments:
    """Optimizer flags, mapped onto GRPOConfig / RLOOConfig. Defaults are chosen, not TRL's, where TRL's differ
    from what the paper's PPO did (README, "PPO, GRPO or RLOO")."""

    batch_size: int = field(default=16, metadata={"help": "generated samples per step per process (the paper's "
                                                          "PPO batch: 16 samples); batch_size/num_generations prompts"})
    mini_batch_size: int = field(default=2, metadata={"help": "samples per forward/backward (gradients are "
                                                              "accumulated over the batch: one update per step)"})
    learning_rate: float = field(default=1e-5, metadata={"help": "learning rate, constant (the paper's PPO; TRL: "
                                                                  "1e-6, linear decay)"})
    output_max_length: int = field(default=512, metadata={"help": "maximum new tokens per response"})
    num_generations: int = field(
        default=4, metadata={"help": "responses per prompt (the group). PPO drew 1 per prompt; the group baseline "
                             "needs >= 2; TRL's defaults are 8 (GRPO) and 2 (RLOO); 4 keeps 4 prompts per batch of 16"})
    beta: float = field(
        default=0.2, metadata={"help": "KL coefficient, fixed: the paper's PPO init_kl_coef (its adaptive controller "
                               "has no TRL counterpart). GRPO adds it to the loss (k3 estimator; TRL default 0.0); "
                               "RLOO subtracts it x sequence KL from the reward, as PPO did (TRL default 0.05)"})
    loss_type: str = field(
        default="bnpo", metadata={"help": "GRPO only: bnpo = token losses averaged over the mini-batch's tokens, as "
                                  "TRL 0.7.4's PPO masked mean did (TRL default: dapo, over the global batch's tokens)"})
    num_iterations: int = field(
        default=1, metadata={"help": "updates per generated batch (TRL default 1; the paper's PPO did 4 epochs of "
                             "mini-batches). With k > 1, one step of --overall_steps is one update, k per batch"})
    cliprange: float = field(default=0.2, metadata={"help": "ratio clip epsilon (the paper's and TRL's 0.2)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (the paper's DeepSpeed launch)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (top_k=0, top_p=1 as the paper)"})


def parse_args(argv: list[str] | None = None) -> tuple[ScriptArguments, TRLArguments, RewardConfig]:
    """Flags, checked before anything loads: a bad one ends the run with one `error:` line and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    args, trl_args, reward_config = validation.parse_flags((ScriptArguments, TRLArguments, RewardConfig), argv,
                                                  __doc__.split("\n")[0])
    if not validation.flag_given(argv, "max_sequence_length"):  # as run_ppo.py: RAR tops at output length
        reward_config.max_sequence_length = trl_args.output_max_length
    with exit_on_data_error():
        check_flags(args, trl_args, reward_config, argv)
    return args, trl_args, reward_config


def check_flags(args: ScriptArguments, trl_args: TRLArguments, reward_config: RewardConfig, argv) -> None:
    """Every flag that can be checked without loading a model (validation.py)."""
    validation.finite_flags(args, trl_args)
    validation.range_flags(args, trl_args)
    validation.one_of("trainer", args.trainer, TRAINERS)
    validation.one_of("prompt_format", args.prompt_format, PROMPT_FORMATS + ("auto",))
    validation.one_of("log_with", args.log_with, ("tensorboard", "wandb", "none"))
    if args.log_with == "wandb" and importlib.util.find_spec("wandb") is None:
        raise DataError("--log_with=wandb needs the wandb package (pip install wandb)")
    if args.mixed_precision is not None:
        validation.one_of("mixed_precision", args.mixed_precision, tuple(s for s in PRECISION_SPELLINGS if s != "fp16"))
    validation.one_of("attn_implementation", args.attn_implementation, ATTENTION_CHOICES)
    validation.positive("overall_steps", args.overall_steps)
    validation.non_negative("save_freq", args.save_freq, allow_none=True)
    for name in ("max_prompt_length", "num_threads"):
        validation.positive(name, getattr(args, name), allow_none=True)
    for name in ("lora_r", "lora_alpha"):
        validation.positive(name, getattr(args, name))
    for name in ("batch_size", "mini_batch_size", "learning_rate", "output_max_length", "num_iterations",
                 "temperature"):
        validation.positive(name, getattr(trl_args, name))
    if trl_args.num_generations < 2:
        raise DataError("--num_generations must be >= 2 (the group baseline compares responses to one prompt)")
    if trl_args.batch_size % trl_args.num_generations:
        raise DataError(f"--batch_size ({trl_args.batch_size}) must be a multiple of --num_generations "
                        f"({trl_args.num_generations})")
    if trl_args.batch_size % trl_args.mini_batch_size:
        raise DataError(f"--batch_size ({trl_args.batch_size}) must be a multiple of --mini_batch_size "
                        f"({trl_args.mini_batch_size})")
    if args.trainer == "rloo" and validation.flag_given(argv, "loss_type"):
        raise DataError("--loss_type applies to --trainer=grpo only")
    check_reward_flags(reward_config)
    validation.training_paths(args)
    validation.fits_context("model_name", policy_folder(args), prompt_and_response(args, trl_args.output_max_length))
    if args.resume_from_checkpoint and args.resume_from_checkpoint != "latest":
        if not (Path(args.resume_from_checkpoint) / TRAINER_STATE).is_file():
            raise DataError(f"--resume_from_checkpoint {args.resume_from_checkpoint}: not a {args.output_dir}_step_N "
                            f"folder (no {TRAINER_STATE})")
    check_features_module("features_module", args.features_module)
    check_run_target(args.output_dir, args.resume_from_checkpoint, args.overwrite, GRPO_CHECKPOINT, run_inputs(args))


# ---------------------------------------------------------------------------------------------------------
# The reward, as TRL calls it.


class WhiteBoxReward:
    """The white-box reward as a TRL reward function.

    TRL calls it with the prompts, the decoded completions and every other dataset column as a keyword list
    (one entry per completion): the reward reads `query`, `reference` and `qtype` from there, never from the
    prompt text. It returns exactly ReversedEngineeredRewardForInference's values, and logs the reward's mean and
    std and each feature's mean under the names run_ppo.py uses (env/reward_mean, env/reward_std, env/<feature>).
    """

    __name__ = "white_box"  # TRL names the reward's metrics after the function

    def __init__(self, white_box_reward: ReversedEngineeredRewardForInference):
        self.white_box_reward = white_box_reward

    def __call__(self, prompts: list, completions: list, query: list[str], reference: list[str],
                 qtype: list[str | None], log_metric=None, **_) -> list[float]:
        rewards, features = self.white_box_reward(query, completions, reference, qtype, return_features=True)
        if log_metric is not None:
            for name, value in feature_means(rewards, features).items():
                log_metric(name, value)
        return rewards


def feature_means(rewards: list[float], features: list[dict]) -> dict[str, float]:
    """Reward mean/std and the mean of every numeric feature (NaN entries, i.e. not computed, skipped)."""
    r = torch.tensor(rewards, dtype=torch.float64)
    out = {"env/reward_mean": r.mean().item(), "env/reward_std": r.std().item() if len(rewards) > 1 else 0.0}
    for name in features[0]:
        if name == "reward":  # the same as env/reward_mean
            continue
        values = [f[name] for f in features if isinstance(f[name], (int, float)) and not isinstance(f[name], bool)]
        values = [float(v) for v in values if not math.isnan(v)]
        if values:
            out[f"env/{name}"] = sum(values) / len(values)
    return out


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: TRL writes its own checkpoint-N; a callback moves it to {output_dir}_step_N.


def make_callbacks(output_dir: str, config_record: dict, total_steps: int):
    """Two TrainerCallbacks (the public hook of transformers' Trainer): checkpoint layout and the step line."""
    from accelerate import PartialState
    from transformers import TrainerCallback

    class StepCheckpoints(TrainerCallback):
        """After TRL saved `checkpoint-N` (adapter, tokenizer, optimizer, RNG, trainer state), add
        training_config.json and rename it to `{output_dir}_step_N`, where evaluation.py and scripts look."""

        def on_save(self, args, state, control, **kwargs):
            PartialState().wait_for_everyone()  # every process has written its RNG/optimizer shard
            if state.is_world_process_zero:
                src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                write_training_config(src, config_record)
                replace_dir(src, checkpoint_path(output_dir, f"step_{state.global_step}"), GRPO_CHECKPOINT)
            PartialState().wait_for_everyone()

    class StepLine(TrainerCallback):
        """One line per step on the main process, like run_ppo.py's, ending with the step's wall time
        (generation, reward, update; a checkpoint save counts in the step after it)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_end, self.step_time = time.perf_counter(), float("nan")

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.last_end, self.step_time = now, now - self.last_end

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "env/reward_mean" not in logs:
                return
            g = logs.get
            print(f"step {state.global_step}/{total_steps} | reward {g('env/reward_mean'):.3f} +/- "
                  f"{g('env/reward_std', float('nan')):.3f} | kl {g('kl', float('nan')):.3f} | "
                  f"loss {g('loss', float('nan')):.4f} | len {g('completions/mean_length', float('nan')):.1f} | "
                  f"LI {g('env/LI', float('nan')):.3f} RP {g('env/RP', float('nan')):.3f} "
                  f"QR {g('env/QR', float('nan')):.3f} RAR {g('env/RAR', float('nan')):.3f} | "
                  f"{self.step_time:.1f}s", flush=True)

    return [StepCheckpoints(), StepLine()]


# ---------------------------------------------------------------------------------------------------------


def build_trainer(args: ScriptArguments, trl_args: TRLArguments, reward_config: RewardConfig):
    """Tokenizer, prompts, policy, reward and the TRL trainer; returns (trainer, tokenizer, config_record)."""
    from accelerate import PartialState

    # Read from the launcher's environment: the process group is made by the TRL config below (gloo on CPU),
    # and accelerate's state is a singleton that a bare PartialState() here would fix without that backend.
    world_size, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    main_proc = int(os.environ.get("RANK", "0")) == 0
    model_name, tokenizer, prompt_format = policy_and_format(args)
    fmt_name = prompt_format.name
    dataset = prompt_dataset(args, trl_args, reward_config, tokenizer, prompt_format, world_size, main_proc)
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    model, dtype, lora = load_policy(args, model_name, device, main_proc)
    reward_config, white_box_reward = training_reward(reward_config, prompt_format.stop_strings,
                                                      args.features_module, device)
    Config, Trainer, common = trl_config(args, trl_args, world_size, device, main_proc)
    config = Config(**common)
    state = PartialState()

    config_record = {"trainer": args.trainer, "script": asdict(args), "trl": asdict(trl_args),
                     "reward": asdict(reward_config),
                     "resolved": {"model_name": model_name, "prompt_format": fmt_name,
                                  "num_processes": state.num_processes, "distributed_type": str(state.distributed_type),
                                  "precision": str(dtype).removeprefix("torch."), "trl_version": _trl_version(),
                                  "trl_config": {k: common[k] for k in ("num_generations", "beta", "num_iterations",
                                                                        "learning_rate", "epsilon")}
                                  | ({"loss_type": trl_args.loss_type} if args.trainer == "grpo" else {})},
                     # What eval_monotonicity.py and score_outputs.py rebuild the trained proxy from.
                     "proxy": proxy_settings(reward_config, fmt_name, prompt_format.stop_strings, args.features_module)}
    trainer = Trainer(model=model, reward_funcs=[WhiteBoxReward(white_box_reward)], args=config, train_dataset=dataset,
                      processing_class=tokenizer, peft_config=lora,
                      callbacks=make_callbacks(args.output_dir, config_record, args.overall_steps))
    return trainer, tokenizer, config_record


def prompt_dataset(args: ScriptArguments, trl_args: TRLArguments, reward_config: RewardConfig, tokenizer,
                   prompt_format, world_size: int, main_proc: bool):
    """The training prompts as run_ppo.py builds them (longer ones dropped); the reward's inputs travel as their
    own columns (query, reference, qtype)."""
    from datasets import Dataset

    max_prompt = args.max_prompt_length or trl_args.output_max_length
    examples = load_examples(args.dataset_path, require_qtype=reward_config.needs_qtype)
    examples, _, dropped = tokenize_prompts(examples, prompt_format, tokenizer, max_prompt)
    prompts_per_step = trl_args.batch_size * world_size // trl_args.num_generations
    if len(examples) < prompts_per_step:
        raise DataError(f"{args.dataset_path}: {len(examples)} prompts are fewer than the {prompts_per_step} one step uses")
    if main_proc:
        print(f"train: {len(examples)} prompts from {args.dataset_path} ({dropped} longer than {max_prompt} tokens "
              f"dropped); prompt format: {prompt_format.name}", file=sys.stderr)
    return Dataset.from_list([{"prompt": prompt_format.build(e.instruction, e.input), "query": e.query,
                               "reference": e.reference, "qtype": e.qtype} for e in examples])


def load_policy(args: ScriptArguments, model_name: str, device: torch.device, main_proc: bool):
    """The policy in --precision's dtype, and its LoRA config: (model, dtype, lora)."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    requested = POLICY_DTYPES[mixed_precision_setting(args.mixed_precision) or "auto"]
    dtype = resolve_dtype(requested, device)
    if main_proc:
        announce("policy", dtype, requested, device)
    attn = args.attn_implementation
    if attn == "auto":
        attn = "eager" if device.type == "cpu" else None
    with load_errors("model_name", model_name):
        model = AutoModelForCausalLM.from_pretrained(model_name, cache_dir=args.cache_dir, dtype=dtype,
                                                     trust_remote_code=args.trust_remote_code,
                                                     attn_implementation=attn)
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=[m.strip() for m in args.lora_target_modules.split(",")])
    return model, dtype, lora


def trl_config(args: ScriptArguments, trl_args: TRLArguments, world_size: int, device: torch.device,
               main_proc: bool):
    """TRL's config class, trainer class, and the config's arguments from our flags: (Config, Trainer, kwargs)."""
    trl_dir = Path(args.output_dir) / "trl"  # TRL's checkpoint-N land here, then move to {output_dir}_step_N
    grad_acc = trl_args.batch_size // trl_args.mini_batch_size
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        # A DeepSpeed launch config's gradient_accumulation_steps (1 in the paper's, reproduced by run_ppo.py) is a
        # PPO detail; here one optimizer update per rollout batch defines the method, so the batch's own count wins
        # (transformers would otherwise stop on the mismatch).
        launch_acc = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
        if launch_acc not in (None, "auto", str(grad_acc)) and main_proc:
            print(f"note: the launch config's gradient_accumulation_steps={launch_acc} is replaced by {grad_acc} "
                  "(batch_size / mini_batch_size): one optimizer update per rollout batch", file=sys.stderr)
        os.environ["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = str(grad_acc)
    launch_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    common = dict(
        output_dir=str(trl_dir), run_name=args.exp_name, seed=args.seed, max_steps=args.overall_steps,
        per_device_train_batch_size=trl_args.mini_batch_size, gradient_accumulation_steps=grad_acc,
        steps_per_generation=grad_acc, num_generations=trl_args.num_generations,
        max_completion_length=trl_args.output_max_length, learning_rate=trl_args.learning_rate,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=trl_args.max_grad_norm,
        beta=trl_args.beta, num_iterations=trl_args.num_iterations, epsilon=trl_args.cliprange,
        temperature=trl_args.temperature, top_k=0, top_p=1.0,
        # Base weights are already in the chosen dtype (LoRA float32): autocast only where the accelerate launch
        # config asks for it (configs/zero2-bf16.yaml on GPUs), so DeepSpeed and the Trainer agree.
        bf16=launch_precision == "bf16", fp16=launch_precision == "fp16", gradient_checkpointing=args.gradient_checkpointing,
        save_strategy="steps" if args.save_freq else "no", save_steps=args.save_freq or 1,
        logging_steps=1, report_to=[] if args.log_with == "none" else [args.log_with],
        ddp_backend="gloo" if world_size > 1 and device.type == "cpu" else None,
        log_completions=False, disable_tqdm=not main_proc,
    )
    if args.trainer == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

        common["loss_type"] = trl_args.loss_type
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    return Config, Trainer, common


def _trl_version() -> str:
    import trl

    return trl.__version__


def save_final(trainer, tokenizer, output_dir: str, config_record: dict) -> Path:
    """Adapter, tokenizer and training_config.json in {output_dir}_final (written aside, then renamed)."""
    final = checkpoint_path(output_dir, "final")
    tmp = partial_path(final)
    if trainer.accelerator.is_main_process:
        new_partial_dir(final, GRPO_CHECKPOINT)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))  # collective under DeepSpeed; the main process writes
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(tmp))
        write_training_config(tmp, config_record)
        replace_dir(tmp, final, GRPO_CHECKPOINT)
    trainer.accelerator.wait_for_everyone()
    return final


def train(args: ScriptArguments, trl_args: TRLArguments, reward_config: RewardConfig) -> None:
    logging_dir = args.logging_dir or str(Path(args.output_dir) / "logs")
    os.environ["TENSORBOARD_LOGGING_DIR"] = logging_dir  # where transformers' tensorboard callback writes
    resume_path = None
    if args.resume_from_checkpoint == "latest":
        resume_path = latest_checkpoint(args.output_dir, TRAINER_STATE)
        if resume_path is None:
            print(f"no checkpoint {args.output_dir}_step_N found; starting from scratch", file=sys.stderr)
    elif args.resume_from_checkpoint:
        resume_path = Path(args.resume_from_checkpoint)  # checked by check_flags

    trainer, tokenizer, config_record = build_trainer(args, trl_args, reward_config)
    main_proc = trainer.accelerator.is_main_process
    if main_proc:
        for p in remove_trainer_leftovers(Path(args.output_dir.rstrip("/")) / "trl"):
            print(f"removed {p}: an unfinished save of a killed run", file=sys.stderr)
        start_run_folder(args, "run_grpo.py", GRPO_CHECKPOINT, config_record)
    if resume_path is not None and main_proc:
        state_file = resume_path / TRAINER_STATE
        step = require_key(read_json(state_file), "global_step", str(state_file), int)
        print(f"resumed from {resume_path} at step {step}", file=sys.stderr)
    trainer.train(resume_from_checkpoint=str(resume_path) if resume_path else None)
    final = save_final(trainer, tokenizer, args.output_dir, config_record)
    if main_proc:
        print(f"done: {trainer.state.global_step} steps of {args.trainer}; final adapter in {final}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args, trl_args, reward_config = parse_args(argv)
    process_settings(args.num_threads)
    with exit_on_data_error():
        if finished(args):
            return
        train(args, trl_args, reward_config)


if __name__ == "__main__":
    main()
