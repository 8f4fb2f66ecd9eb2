"""What a PPO run's checkpoint holds, and how it is saved, found and restored.

A checkpoint `{output_dir}_step_N` (or `_final`) holds the LoRA adapter (PeftModel.from_pretrained on the base
model loads it), `value_head.safetensors`, the tokenizer, a copy of training_config.json, `training_state.json` (a
readable summary, written last) and `state/`: accelerate's save_state, which covers the optimizer (DeepSpeed's
ZeRO-2 partitions), every process's RNG and the registered objects (step and skip counters, KL controller, running
score moments, the prompt stream's position). It is built under a hidden `.partial-` name and renamed into place
once complete (files.py), so a killed save never looks like a checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from rre.checkpoints import latest_checkpoint
from rre.errors import DataError
from rre.files import PPO_CHECKPOINT, new_partial_dir, partial_path, read_json, replace_dir, write_json
from rre.ppo import PPOTrainer, trainable_named_parameters
from rre.proxy_settings import write_training_config

STATE_JSON = "training_state.json"  # readable summary of the run state; written last in a checkpoint
STATE_DIR = "state"  # accelerate's save_state: optimizer (ZeRO partitions), RNG, registered objects, LoRA weights
VALUE_HEAD = "value_head.safetensors"


class PromptStream:
    """Shuffled prompts, `batch_size` per process per step, epoch after epoch (incomplete tails dropped).

    Its state (epoch, position) is two integers, so a resumed run continues with the same prompts.
    """

    def __init__(self, size: int, batch_size: int, num_processes: int, process_index: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.num_processes, self.rank = num_processes, process_index
        self.epoch, self.position = 0, 0
        if size < batch_size * num_processes:
            raise DataError(f"{size} prompts are fewer than batch_size x processes ({batch_size * num_processes})")

    def next_indices(self) -> list[int]:
        chunk = self.batch_size * self.num_processes
        if self.position + chunk > self.size:
            self.epoch, self.position = self.epoch + 1, 0
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        mine = order[self.position + self.rank * self.batch_size: self.position + (self.rank + 1) * self.batch_size]
        self.position += chunk
        return mine.tolist()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]



def register_run_state(accelerator, trainer: PPOTrainer, stream: PromptStream) -> None:
    """Hand the run's state to accelerate: `save_state`/`load_state` then cover the optimizer (DeepSpeed's
    partitions under ZeRO-2), every process's RNG, and these objects (each has state_dict/load_state_dict):
    the step and skip counters, the KL controller, the running score moments and the prompt stream.

    Without DeepSpeed accelerate would save the whole model, frozen base included; the hooks keep only the
    trainable weights (LoRA, value head), which is all a resume needs beside --model_name."""
    for obj in (trainer, trainer.kl_ctl, trainer.running, stream):
        accelerator.register_for_checkpointing(obj)
    if trainer.is_deepspeed:
        return

    def keep_trainable(models, weights, output_dir) -> None:
        for i, model in enumerate(models):
            names = dict(trainable_named_parameters(model))
            weights[i] = {k: v for k, v in weights[i].items() if k in names}

    def load_trainable(models, input_dir) -> None:
        from safetensors.torch import load_file

        model = models.pop(0)  # loaded here, so that accelerate's strict load_state_dict does not see it
        saved = load_file(str(Path(input_dir) / "model.safetensors"))
        params = dict(trainable_named_parameters(model))
        if set(saved) != set(params):
            raise DataError(f"{input_dir}: the saved trainable weights do not match this model's "
                            f"({len(saved)} saved, {len(params)} here; same --model_name and LoRA flags?)")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.register_load_state_pre_hook(load_trainable)


def state_file_globals(deepspeed: bool) -> list:
    """The classes (beyond tensors and plain data) accelerate's and DeepSpeed's state files hold."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS  # numpy's RNG state

    allowed = list(TORCH_SAFE_GLOBALS)
    if deepspeed:
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address

        allowed += [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
    return allowed


def check_state_files(state_dir: Path, deepspeed: bool) -> None:
    """accelerate and DeepSpeed read their state files with full unpickling. Open each one first with
    `weights_only=True`, which admits only tensors, plain containers and the few named classes these files
    hold, so a tampered checkpoint stops here instead of running code."""
    allowed = state_file_globals(deepspeed)
    for f in sorted(state_dir.rglob("*")):
        if f.suffix in (".pkl", ".pt", ".bin"):
            try:
                with torch.serialization.safe_globals(allowed):
                    torch.load(f, map_location="cpu", weights_only=True)
            except Exception as err:  # any failure means: not plain data
                raise DataError(f"{f}: not plain tensors/data ({type(err).__name__}); refusing to unpickle it "
                                "(resume only from checkpoints run_ppo.py wrote)") from None


def drop_tied_frozen_weights(state_dir: Path, model: torch.nn.Module) -> None:
    """DeepSpeed's `exclude_frozen_parameters` still saves a frozen weight tied to another (SmolLM2's lm_head is
    its input embedding: 113 MB per checkpoint). Keep only the trainable tensors in its module-state file; the
    resume loads it with load_module_strict=False and the frozen base comes from --model_name again."""
    trainable = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    for f in state_dir.rglob("*model_states.pt"):
        with torch.serialization.safe_globals(state_file_globals(deepspeed=True)):
            state = torch.load(f, map_location="cpu", weights_only=True)
        state["module"] = {k: v for k, v in state["module"].items() if k in trainable}
        torch.save(state, f)


def save_checkpoint(path: Path, trainer: PPOTrainer, tokenizer, stream: PromptStream, accelerator,
                    config_record: dict | None = None) -> None:
    """The adapter (PEFT, loadable on the base model), value head, tokenizer, a copy of the run's
    training_config.json (the proxy it trained with travels with the checkpoint), and accelerate's run state in
    `state/`. Built under a hidden temporary name and renamed into place once complete (files.py), so a killed
    save never looks like a checkpoint. Collective: every process calls it."""
    from safetensors.torch import save_file

    tmp = partial_path(path)
    if accelerator.is_main_process:
        new_partial_dir(path, PPO_CHECKPOINT)
    accelerator.wait_for_everyone()
    # ZeRO-2: each process writes its optimizer partition; the frozen base is not saved.
    extra = {"exclude_frozen_parameters": True} if trainer.is_deepspeed else {}
    accelerator.save_state(str(tmp / STATE_DIR), safe_serialization=True, **extra)
    if accelerator.is_main_process:
        model = trainer.unwrapped
        if trainer.is_deepspeed:
            drop_tied_frozen_weights(tmp / STATE_DIR, model)
        model.policy.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
        save_file({k: v.detach().float().cpu().contiguous() for k, v in model.value_head.state_dict().items()},
                  str(tmp / VALUE_HEAD))
        tokenizer.save_pretrained(str(tmp))
        if config_record is not None:
            write_training_config(tmp, config_record)
        summary = {**trainer.state_dict(), "kl_coef": trainer.kl_ctl.value,
                   "running_scores": trainer.running.state_dict(), "data": stream.state_dict(),
                   "num_processes": accelerator.num_processes, "distributed_type": str(accelerator.distributed_type),
                   "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(tmp / STATE_JSON, summary)
        replace_dir(tmp, path, PPO_CHECKPOINT)
    accelerator.wait_for_everyone()


def read_run_summary(path: Path) -> dict:
    """The checkpoint's training_state.json: what `--resume_from_checkpoint` restores, in readable form."""
    if not (path / STATE_JSON).is_file() or not (path / STATE_DIR).is_dir():
        raise DataError(f"--resume_from_checkpoint {path}: not a complete checkpoint (no {STATE_JSON} and "
                        f"{STATE_DIR}/; a checkpoint without them loads and evaluates but cannot resume)")
    return read_json(path / STATE_JSON, "--resume_from_checkpoint")


def find_resume(resume_from_checkpoint: str | None, output_dir: str, accelerator, is_ds: bool) -> Path | None:
    """The checkpoint to resume from (None: start fresh), checked against this launch (DeepSpeed or not, processes)."""
    main_proc = accelerator.is_main_process
    resume_path, summary = None, {}
    if resume_from_checkpoint:
        if resume_from_checkpoint == "latest":
            resume_path = latest_checkpoint(output_dir, STATE_JSON)
            if resume_path is None and main_proc:
                print(f"no checkpoint {output_dir}_step_N found; starting from scratch", file=sys.stderr)
        else:
            resume_path = Path(resume_from_checkpoint)
        if resume_path is not None:
            summary = read_run_summary(resume_path)
            saved_world, saved_type = summary.get("num_processes"), summary.get("distributed_type")
            if ("DEEPSPEED" in str(saved_type)) != is_ds:  # the two keep the optimizer state in different files
                raise DataError(f"{resume_path} was written {'with' if not is_ds else 'without'} DeepSpeed "
                                f"({saved_type}); resume it under the launch it was written with")
            if saved_world != accelerator.num_processes:
                if is_ds:  # DeepSpeed restores a ZeRO-2 optimizer partition only onto the rank that wrote it
                    raise DataError(f"{resume_path} was written by {saved_world} processes and ZeRO-2 keeps one "
                                    f"optimizer partition per process: resume with --num_processes {saved_world}")
                if main_proc:
                    print(f"note: {resume_path} was written by {saved_world} processes, resuming with "
                          f"{accelerator.num_processes}: weights, optimizer and data position carry over; processes "
                          "without a saved RNG state start from the seed", file=sys.stderr)

    return resume_path


def restore(accelerator, resume_path: Path, is_ds: bool, trainer: PPOTrainer, stream: PromptStream) -> None:
    """Weights, optimizer (ZeRO partitions), RNG of every process, counters, KL, score moments, data position."""
    check_state_files(resume_path / STATE_DIR, is_ds)
    accelerator.load_state(str(resume_path / STATE_DIR), **({"load_module_strict": False} if is_ds else {}))
    if accelerator.is_main_process:
        print(f"resumed from {resume_path} at step {trainer.current_step} (kl_coef={trainer.kl_ctl.value:.6f}, "
              f"data epoch {stream.epoch} position {stream.position})", file=sys.stderr)
