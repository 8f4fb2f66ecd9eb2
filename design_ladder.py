"""Run the paper's reward-design ladder (LI -> LI x RP -> LI x QR x RP -> full, plus your own features) and report
whether each design's proxy and the gold rise together, with intervals over seeds.

For every design x seed it trains a policy (run_ppo.py, or run_grpo.py with --trainer grpo|rloo) saving a
checkpoint every --save_every steps, answers the eval set with the base policy (step 0) and every checkpoint
(evaluation.py), scores every answer with the run's own proxy and with each gold (eval_monotonicity.py), then
writes {ladder_dir}/ladder.json, ladder.md and ladder.png. Each of those is a phase skipped when its output is
complete: rerunning with one more design or seed computes only what is new, and a killed ladder resumes
(training from its latest checkpoint, answering from evaluation.py's partial file).

    python design_ladder.py --relevance_model minilm            # laptop defaults (docs/ladder.md)
    python design_ladder.py --relevance_model minilm --plan_only   # print the plan and the cost, run nothing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from reward_model import RewardConfig, check_reward_flags
from rre import ladder, validation
from rre.checkpoints import is_complete, latest_checkpoint
from rre.data import load_examples
from rre.errors import DataError, exit_on_data_error
from rre.files import LADDER, atomic_write, mark_dir, read_json, replaceable, write_json
from rre.gold import GOLD_TYPES
from rre.offline_models import smollm2_folder, smollm2_path

ROOT = Path(__file__).resolve().parent  # the checkout: default paths are relative to it

ENV = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false",
       "PYTHONUNBUFFERED": "1"}
PAPER_EVAL = "data/alpaca_eval.json"
EVAL_SET = "eval_set.json"  # the ladder's eval subset, inside its folder
ANSWER_SETTINGS = "answer_settings.json"  # how its answers are drawn: one way per folder
STEP_LINE = re.compile(r"step (\d+)/\d+ \| reward .*\| ([\d.]+)s(?: \(gen|$)")
TRAIN_STATE = {"ppo": "training_state.json", "grpo": "trainer_state.json", "rloo": "trainer_state.json"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()), allow_abbrev=False)
    d = " (default: %(default)s)"
    p.add_argument("--ladder_dir", default="runs/ladder", help="where every run, answer, score and the report go" + d)
    p.add_argument("--designs", default="li,full",
                   help=f"comma-separated built-in designs ({', '.join(ladder.DESIGNS)}); the first is the one the "
                        "others are compared with, seed by seed" + d)
    p.add_argument("--features_module", action="append", default=[],
                   help="a file of your own features (README, 'Add a feature'): one more design named after the "
                        "file, on the flags of --features_base; repeat for several")
    p.add_argument("--features_base", default="full", help="the built-in design a --features_module extends" + d)
    p.add_argument("--seeds", default="1,2,3,4,5,6",
                   help="comma-separated training (and answer sampling) seeds; 6 let an exact sign-flip test of a "
                        "paired difference reach p = 0.031 (4: 0.125)" + d)
    p.add_argument("--trainer", default="ppo", choices=["ppo", "grpo", "rloo"],
                   help="ppo: run_ppo.py (the paper's); grpo | rloo: run_grpo.py" + d)
    p.add_argument("--model_name", default=None, help="policy (default: the offline SmolLM2-135M-Instruct)")
    p.add_argument("--checkpoints", type=int, default=4, help="checkpoints per run, besides the base policy" + d)
    p.add_argument("--save_every", type=int, default=4, help="PPO steps between checkpoints" + d)
    p.add_argument("--batch_size", type=int, default=8, help="rollouts per PPO step" + d)
    p.add_argument("--mini_batch_size", type=int, default=2, help="samples per forward/backward" + d)
    p.add_argument("--gradient_accumulation_steps", type=int, default=2, help="PPO only" + d)
    p.add_argument("--new_tokens", type=int, default=128,
                   help="rollout length (--output_max_length): room for answers to finish, so that length is not "
                        "simply reaching the cap" + d)
    p.add_argument("--learning_rate", type=float, default=3e-4,
                   help="the quickstart's; the paper's 1e-5 is for 10,000 steps" + d)
    p.add_argument("--dataset_path", default="data/train.json", help="training prompts" + d)
    p.add_argument("--max_prompt_length", type=int, default=256, help="longer training prompts are dropped" + d)
    p.add_argument("--relevance_model", default=RewardConfig.relevance_model,
                   help="e(.) of QR and RAR: the paper's encoder, or minilm (the offline one)" + d)
    p.add_argument("--rar_max_dot", default="auto", help="as run_ppo.py" + d)
    p.add_argument("--accelerate_config", default=None,
                   help="launch training with `accelerate launch --config_file` (configs/zero2-bf16.yaml on GPUs, "
                        "configs/zero2-cpu.yaml as the quickstart; default: one plain python process)")
    p.add_argument("--num_processes", type=int, default=1, help="with --accelerate_config" + d)
    p.add_argument("--response_postprocess", default="clean", choices=("paper", "clean"),
                   help="passed to training, answering and scoring (--response_postprocess of run_ppo.py): clean cuts "
                   "every rollout, answer and scored text at the first stop string, as the ladder's figures in "
                   "docs/ladder.md were measured; paper is the paper's post-processing" + d)
    p.add_argument("--extra_train_args", default="", help="more flags for run_ppo.py / run_grpo.py (later wins)")
    p.add_argument("--eval_path", default=None,
                   help=f"eval instructions (default: {PAPER_EVAL}; or the AlpacaFarm validation file)")
    p.add_argument("--eval_size", type=int, default=200, help="instructions answered, evenly spaced over the file" + d)
    p.add_argument("--eval_tokens", type=int, default=128, help="answer length (evaluation.py --max_new_tokens)" + d)
    p.add_argument("--eval_sampling", default="per_prompt", choices=("per_prompt", "global"),
                   help="evaluation.py --sample_seeding: per_prompt draws each instruction's answer from its own "
                        "stream (seeded by the run's seed and the instruction), so every checkpoint and every design "
                        "of a seed answers with the same random numbers; global is the paper's one stream" + d)
    p.add_argument("--eval_batch_size", type=int, default=16, help="prompts per generate call" + d)
    p.add_argument("--gold", action="append", default=[],
                   help="gold reward model; repeat for several (default: the offline stand-in, trained by "
                        "train_reward_model.py into {ladder_dir}/gold_standin)")
    p.add_argument("--gold_type", action="append", default=[],
                   help=f"{' | '.join(GOLD_TYPES)}: one for all golds or one each (default: classifier)")
    p.add_argument("--gold_device", default="auto", help="auto | cuda | cpu" + d)
    p.add_argument("--gold_batch_size", type=int, default=8, help="responses per gold forward" + d)
    p.add_argument("--time_per_step", type=float, default=None,
                   help="seconds per PPO step for the first estimate (default: the 2-core CPU figure, scaled)")
    p.add_argument("--plan_only", action="store_true", help="print the plan and its cost, run nothing")
    argv = list(sys.argv[1:] if argv is None else argv)
    # argparse takes a value that starts with "--" for a flag: `--extra_train_args "--num_generations=2"` would
    # fail, so the value after --extra_train_args is attached to it.
    for i in range(len(argv) - 2, -1, -1):
        if argv[i] == "--extra_train_args":
            argv[i:i + 2] = [f"--extra_train_args={argv[i + 1]}"]
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------
# Settings, checked before any work.


def int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise DataError(f"--{flag}: expected distinct integers, got {text!r}")
    return values


def local_path(name: str | None) -> str | None:
    """A path the user typed, made absolute (the commands run from the repository root): relative to the current
    folder when it is there, else to the repository (the defaults, data/train.json); a hub name stays as it is."""
    if name is None or Path(name).is_absolute():
        return name
    for base in (Path.cwd(), ROOT):
        if (base / name).exists():
            return str((base / name).resolve())
    return name


def absolute_paths(a: argparse.Namespace) -> None:
    a.ladder_dir = str(Path(a.ladder_dir).resolve())
    for flag in ("model_name", "dataset_path", "eval_path", "accelerate_config"):
        setattr(a, flag, local_path(getattr(a, flag)))
    a.features_module = [local_path(p) for p in a.features_module]
    a.gold = [local_path(g) for g in a.gold]


def check_args(a: argparse.Namespace) -> None:
    try:
        shlex.split(a.extra_train_args)
    except ValueError as err:
        raise DataError(f"--extra_train_args {a.extra_train_args!r}: {err}") from None
    for flag in ("checkpoints", "save_every", "batch_size", "mini_batch_size", "gradient_accumulation_steps",
                 "new_tokens", "eval_size", "eval_tokens", "eval_batch_size", "num_processes", "gold_batch_size"):
        if getattr(a, flag) < 1:
            raise DataError(f"--{flag} must be >= 1, got {getattr(a, flag)}")
    if a.checkpoints < 2:
        raise DataError(f"--checkpoints must be >= 2 (a correlation across checkpoints), got {a.checkpoints}")
    for seed in int_list("seeds", a.seeds):
        validation.seed("seeds", seed)
    policy = a.model_name or str(smollm2_folder())
    validation.fits_context("model_name", policy, {"max_prompt_length": a.max_prompt_length,
                                                   "new_tokens": a.new_tokens})
    validation.fits_context("model_name", policy, {"eval_tokens": a.eval_tokens}, prompt_room=1)
    for path in a.features_module:
        if not Path(path).is_file():
            raise DataError(f"--features_module {path}: no such file")
    if a.accelerate_config and not Path(a.accelerate_config).is_file():
        raise DataError(f"--accelerate_config {a.accelerate_config}: no such file")
    if not Path(a.dataset_path).exists():
        raise DataError(f"--dataset_path {a.dataset_path}: no such file")
    for kind in a.gold_type:
        if kind not in GOLD_TYPES:
            raise DataError(f"--gold_type: unknown value {kind!r} (expected {' / '.join(GOLD_TYPES)})")
    if a.gold_type and len(a.gold_type) not in (1, max(len(a.gold), 1)):
        raise DataError(f"--gold_type: {len(a.gold_type)} values for {len(a.gold)} --gold; give one or one each")


def eval_source(a: argparse.Namespace) -> Path:
    """The eval file: --eval_path, else the paper's data/alpaca_eval.json when it is there."""
    if a.eval_path:
        if not Path(a.eval_path).is_file():
            raise DataError(f"--eval_path {a.eval_path}: no such file")
        return Path(a.eval_path)
    if (ROOT / PAPER_EVAL).is_file():
        return ROOT / PAPER_EVAL
    raise DataError(f"no eval set: {PAPER_EVAL} is missing; fetch it with `bash scripts/get_paper_data.sh`, or pass "
                    "--eval_path FILE (e.g. the AlpacaFarm validation file alpacafarm_val.json)")


def eval_records(source: Path, size: int) -> list[dict]:
    """`size` instructions evenly spaced over the eval file (read in place), as the ladder's eval set."""
    examples = load_examples(source, require_qtype=True)
    if len(examples) > size:
        stride = len(examples) / size
        examples = [examples[int(i * stride)] for i in range(size)]
    elif len(examples) < size:
        print(f"note: {source} holds {len(examples)} instructions, fewer than --eval_size {size}: using all")
    return [{"instruction": e.instruction, "input": e.input, "output": e.reference, "qtype": e.qtype}
            for e in examples]


def answer_settings(a: argparse.Namespace) -> dict[str, Any]:
    """What decides how the ladder's answers are drawn: one folder's answers all share it."""
    return {"eval_tokens": a.eval_tokens, "eval_sampling": a.eval_sampling,
            "response_postprocess": a.response_postprocess}


def check_ladder_dir(folder: Path, records: list[dict], a: argparse.Namespace) -> None:
    """--ladder_dir is new, empty, or a ladder folder answered on the same eval set in the same way (it resumes);
    anything else stops here, before the folder or any file is made."""
    replaceable("ladder_dir", folder, LADDER)
    path = folder / EVAL_SET
    if path.is_file() and read_json(path, "the ladder's eval set", expect=list) != records:
        raise DataError(f"{path}: this ladder folder answered other instructions (--eval_path/--eval_size "
                        "changed); use another --ladder_dir")
    path = folder / ANSWER_SETTINGS
    if path.is_file():
        before = read_json(path, "the ladder's answer settings", expect=dict)
        changed = [f"--{k} {before.get(k)} -> {v}" for k, v in answer_settings(a).items() if before.get(k) != v]
        if changed:
            raise DataError(f"{path}: this ladder folder answered otherwise ({', '.join(changed)}); use another "
                            "--ladder_dir")


def start_ladder_dir(folder: Path, records: list[dict], source: Path, a: argparse.Namespace) -> Path:
    """The ladder folder (marked when new), its eval set and its answer settings, written once."""
    if not folder.exists() or not any(folder.iterdir()):
        folder.mkdir(parents=True, exist_ok=True)
        mark_dir(folder, LADDER.command)
    if not (folder / ANSWER_SETTINGS).is_file():
        write_json(folder / ANSWER_SETTINGS, answer_settings(a))
    path = folder / EVAL_SET
    if not path.is_file():
        atomic_write(path, json.dumps(records, indent=1, ensure_ascii=False))
        print(f"eval set: {len(records)} instructions from {source} (read in place) -> {path}")
    return path


# ---------------------------------------------------------------------------------------------------------
# Subprocesses: each phase is one command of the project, its output in a log file.


def run(cmd: list[str], log: Path, label: str, append: bool = False) -> float:
    """Run one command with its output in `log` (after what it holds with `append`: a resumed training run keeps
    its earlier steps' lines); returns its wall time. A failure stops the ladder with one line (the log's last
    lines shown above it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  {label}: $ {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    with open(log, "a" if append else "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **ENV}, stdout=f, stderr=subprocess.STDOUT)
    wall = time.monotonic() - start
    if proc.returncode:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
        print("\n".join("    | " + line for line in tail), file=sys.stderr)
        sys.exit(f"error: {label} failed (exit {proc.returncode}); full log: {log}")
    print(f"  {label}: done in {ladder.hours(wall)}", flush=True)
    return wall


class Ladder:
    """Paths, commands and phase states of one ladder folder."""

    def __init__(self, a: argparse.Namespace, designs: list[ladder.Design], seeds: list[int], model: str,
                 golds: list[str], gold_types: list[str], eval_path: Path, n_eval: int):
        self.a, self.designs, self.seeds, self.model = a, designs, seeds, model
        self.golds, self.gold_types, self.eval_path, self.n_eval = golds, gold_types, eval_path, n_eval
        self.dir = Path(a.ladder_dir)
        self.steps = ladder.checkpoint_steps(a.checkpoints, a.save_every)
        self.py = sys.executable

    # --- where things are ---
    def run_dir(self, design: ladder.Design, seed: int) -> Path:
        return self.dir / design.name / f"seed{seed}"

    def base_dir(self, seed: int) -> Path:
        return self.dir / "base" / f"seed{seed}"

    def base_answers(self, seed: int) -> Path:
        return self.base_dir(seed) / f"alpaca-eval-{Path(self.model.rstrip('/')).name}.json"

    def checkpoint(self, design: ladder.Design, seed: int, step: int) -> Path:
        return self.run_dir(design, seed) / f"policy_step_{step}"

    # --- commands ---
    def train_command(self, design: ladder.Design, seed: int) -> list[str]:
        a = self.a
        script = "run_ppo.py" if a.trainer == "ppo" else "run_grpo.py"
        flags = [f"--model_name={self.model}", f"--output_dir={self.run_dir(design, seed) / 'policy'}",
                 f"--exp_name={design.name}_seed{seed}", f"--seed={seed}",
                 f"--overall_steps={a.checkpoints * a.save_every}", f"--save_freq={a.save_every}",
                 f"--dataset_path={a.dataset_path}", f"--max_prompt_length={a.max_prompt_length}",
                 f"--output_max_length={a.new_tokens}", f"--batch_size={a.batch_size}",
                 f"--mini_batch_size={a.mini_batch_size}", f"--learning_rate={a.learning_rate}",
                 f"--relevance_model={a.relevance_model}", f"--rar_max_dot={a.rar_max_dot}", "--log_with=none",
                 "--resume_from_checkpoint=latest", f"--response_postprocess={a.response_postprocess}",
                 *design.train_flags()]
        if a.trainer == "ppo":  # the ladder answers its own eval set at every checkpoint: no dev pass in training
            flags += [f"--gradient_accumulation_steps={a.gradient_accumulation_steps}", "--dev_prompt_path="]
        else:
            flags += [f"--trainer={a.trainer}"]
        flags += shlex.split(a.extra_train_args)
        if a.accelerate_config:
            return ["accelerate", "launch", "--num_machines", "1", "--num_processes", str(a.num_processes),
                    "--config_file", a.accelerate_config, script, *flags]
        return [self.py, script, *flags]

    def answer_command(self, seed: int, checkpoints: list[Path]) -> list[str]:
        """evaluation.py answering `checkpoints` one after the other in one process (none: the base policy)."""
        a = self.a
        where = ["--peft_model_name", *map(str, checkpoints)] if checkpoints else [
            f"--output_dir={self.base_dir(seed)}"]
        return [self.py, "evaluation.py", f"--base_model_name={self.model}", *where, "--evaluations=alpaca",
                f"--eval_path={self.eval_path}", f"--max_new_tokens={a.eval_tokens}",
                f"--batch_size={a.eval_batch_size}", f"--seed={seed}", f"--sample_seeding={a.eval_sampling}",
                f"--response_postprocess={a.response_postprocess}"]

    def score_command(self, design: ladder.Design, seed: int) -> list[str]:
        golds = [f"--gold_model={g}" for g in self.golds] + [f"--gold_type={t}" for t in self.gold_types]
        return [self.py, "eval_monotonicity.py", f"--output_dir={self.run_dir(design, seed)}", "--model_prefix=policy",
                f"--eval_path={self.eval_path}", *golds, f"--gold_device={self.a.gold_device}",
                f"--gold_batch_size={self.a.gold_batch_size}", "--include_base",
                f"--base_outputs={self.base_dir(seed)}", "--win_rate=false",
                f"--response_postprocess={self.a.response_postprocess}", "--steps",
                *[str(s) for s in self.steps[1:]]]

    # --- phase states ---
    def trained(self, design: ladder.Design, seed: int) -> bool:
        return is_complete(Path(f"{self.run_dir(design, seed) / 'policy'}_final"))

    def resume_step(self, design: ladder.Design, seed: int) -> int:
        latest = latest_checkpoint(self.run_dir(design, seed) / "policy", TRAIN_STATE[self.a.trainer])
        return int(latest.name.rsplit("_", 1)[1]) if latest else 0

    def answered(self, seed: int, checkpoint: Path | None) -> bool:
        if checkpoint is None:
            return self.base_answers(seed).is_file()
        return (checkpoint / f"alpaca-eval-{checkpoint.name}.json").is_file()

    def scored(self, design: ladder.Design, seed: int) -> bool:
        """monotonicity.json of this run covers every step of the ladder, with these golds and this eval set, and
        was written after every answer it reads (an answer regenerated since is scored again)."""
        path = self.run_dir(design, seed) / "monotonicity.json"
        answers = [self.base_answers(seed)] + [self.checkpoint(design, seed, s) / f"alpaca-eval-policy_step_{s}.json"
                                               for s in self.steps[1:]]
        if not path.is_file() or not all(p.is_file() for p in answers):
            return False
        if max(p.stat().st_mtime for p in answers) > path.stat().st_mtime:
            return False
        result = read_json(path)
        models = [g["gold_model"] for g in result["golds"]] if "golds" in result else [result.get("gold_model")]
        return result.get("steps") == self.steps and models == self.golds and result.get("eval_path") == str(
            self.eval_path)

    def check_settings(self, design: ladder.Design, seed: int) -> None:
        """A run folder is trained with one command only: a folder started with other settings stops the ladder
        (its checkpoints would mix two runs)."""
        record = self.run_dir(design, seed) / "ladder_run.json"
        command = self.train_command(design, seed)[1:]  # without the interpreter
        if record.is_file():
            before = read_json(record).get("train_command")
            if before != command:
                changed = sorted(set(before or []) ^ set(command))
                raise DataError(f"{record}: this run was started with other settings ({', '.join(changed[:4])}); "
                                "use another --ladder_dir or remove the run folder")

    def record_settings(self, design: ladder.Design, seed: int) -> None:
        folder = self.run_dir(design, seed)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "ladder_run.json", {"design": design.record(), "seed": seed,
                                                "train_command": self.train_command(design, seed)[1:]})


# ---------------------------------------------------------------------------------------------------------
# Plan and cost.


def plan(lad: Ladder) -> tuple[ladder.Work, ladder.Work, list[str]]:
    """(all the ladder's work, what is left of it, one line per run saying what it still needs)."""
    a, total, left, lines = lad.a, ladder.Work(), ladder.Work(), []
    steps_per_run = a.checkpoints * a.save_every
    for seed in lad.seeds:
        total.add_answers(lad.n_eval)
        if not lad.answered(seed, None):
            left.add_answers(lad.n_eval)
            lines.append(f"base policy seed {seed}: answer the eval set")
    for design in lad.designs:
        for seed in lad.seeds:
            lad.check_settings(design, seed)
            total.add_training(steps_per_run, a.batch_size)
            todo = []
            if not lad.trained(design, seed):
                done = lad.resume_step(design, seed)
                left.add_training(steps_per_run - done, a.batch_size)
                todo.append(f"train {steps_per_run - done} steps" + (f" (resume at step {done})" if done else ""))
            missing = [s for s in lad.steps[1:] if not lad.answered(seed, lad.checkpoint(design, seed, s))]
            for _ in lad.steps[1:]:
                total.add_answers(lad.n_eval)
            for _ in missing:
                left.add_answers(lad.n_eval)
            if missing:
                todo.append(f"answer {len(missing)} checkpoint(s)")
            total.add_scoring(len(lad.steps) * lad.n_eval, len(lad.golds))
            if not lad.scored(design, seed):
                left.add_scoring(len(lad.steps) * lad.n_eval, len(lad.golds))
                todo.append("score")
            lines.append(f"{design.name} seed {seed}: " + (", ".join(todo) if todo else "complete (skipped)"))
    return total, left, lines


def timing_key(lad: Ladder) -> dict[str, Any]:
    a = lad.a
    return {"model": lad.model, "trainer": a.trainer, "batch_size": a.batch_size, "new_tokens": a.new_tokens,
            "eval_size": lad.n_eval, "eval_tokens": a.eval_tokens, "checkpoints": a.checkpoints,
            "golds": lad.golds, "accelerate_config": a.accelerate_config}


def timing(lad: Ladder) -> ladder.Timing:
    """Measured on this ladder folder's first run when it was (same settings), else the up-front figures."""
    path = lad.dir / "timings.json"
    if path.is_file():
        saved = read_json(path)
        if saved.get("settings") == timing_key(lad):
            return ladder.Timing(**saved["timing"])
    a = lad.a
    return ladder.default_timing(a.batch_size, a.new_tokens, lad.n_eval, a.eval_tokens, a.checkpoints,
                                 len(lad.golds), a.time_per_step)


def step_times(log: Path, start: int = 0) -> list[float]:
    """Seconds of each step the trainer printed (run_ppo.py's and run_grpo.py's step lines) after byte `start`."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace").replace("\r", "\n")
    return [float(m.group(2)) for m in map(STEP_LINE.search, text.splitlines()) if m]


# ---------------------------------------------------------------------------------------------------------
# The ladder.


def prepare_gold(a: argparse.Namespace, folder: Path) -> tuple[list[str], list[str]]:
    """The golds and their types; without --gold, the offline stand-in (trained once into the ladder folder)."""
    if a.gold:
        types = a.gold_type or ["classifier"]
        return list(a.gold), types * len(a.gold) if len(types) == 1 else list(types)
    standin = folder / "gold_standin"
    print(f"gold: the offline stand-in {standin} (a small Bradley-Terry reward model, not Starling-RM-34B; "
          "--gold to use another)")
    if a.gold_type and a.gold_type != ["classifier"]:
        raise DataError("--gold_type: the offline stand-in is a classifier; give --gold with another type")
    return [str(standin)], ["classifier"]


def train_standin(folder: Path) -> None:
    standin = folder / "gold_standin"
    if (standin / "config.json").is_file():
        return
    print("gold stand-in: training it (train_reward_model.py)", flush=True)
    run([sys.executable, "train_reward_model.py", f"--output_dir={standin}"], folder / "logs" /
        "gold_standin.log", "gold stand-in")


def execute(lad: Ladder, left: ladder.Work) -> None:
    """Every phase not yet complete, run by run; after the first run measured here, the estimate of the rest."""
    logs = lad.dir / "logs"
    measured: dict[str, float] = {}
    for seed in lad.seeds:
        if not lad.answered(seed, None):
            measured.setdefault("answer_s", run(lad.answer_command(seed, []), logs / f"base_seed{seed}.log",
                                                f"answer base seed {seed}"))
    done = ladder.Work()
    for design in lad.designs:
        for seed in lad.seeds:
            name, folder = f"{design.name} seed {seed}", lad.run_dir(design, seed)
            print(f"[{design.name} seed {seed}] {folder}", flush=True)
            if not lad.trained(design, seed):
                lad.record_settings(design, seed)
                start_step = lad.resume_step(design, seed)
                log = logs / f"train_{design.name}_seed{seed}.log"
                size = log.stat().st_size if log.is_file() else 0
                wall = run(lad.train_command(design, seed), log, f"train {name}", append=True)
                times = step_times(log, size)
                done.add_training(lad.a.checkpoints * lad.a.save_every - start_step, lad.a.batch_size)
                if times and "step_s" not in measured:
                    measured["step_s"] = statistics.median(times[1:] or times)
                    measured["train_start_s"] = max(wall - sum(times), 0.0)
            missing = [s for s in lad.steps[1:] if not lad.answered(seed, lad.checkpoint(design, seed, s))]
            if missing:  # one process for all of them: the imports and start are paid once per run
                label = f"answer {name} step{'s' * (len(missing) > 1)} {','.join(map(str, missing))}"
                wall = run(lad.answer_command(seed, [lad.checkpoint(design, seed, s) for s in missing]),
                           logs / f"answer_{design.name}_seed{seed}.log", label)
                measured["answer_s"] = wall / len(missing)  # per checkpoint, this process's start shared among them
                for _ in missing:
                    done.add_answers(lad.n_eval)
            if not lad.scored(design, seed):
                wall = run(lad.score_command(design, seed), logs / f"score_{design.name}_seed{seed}.log",
                           f"score {name}")
                measured.setdefault("score_s", wall)
                done.add_scoring(len(lad.steps) * lad.n_eval, len(lad.golds))
            if len(measured) == 4 and "printed" not in measured:
                measured["printed"] = 1.0
                report_measured(lad, measured, left, done)


def report_measured(lad: Ladder, measured: dict[str, float], left: ladder.Work, done: ladder.Work) -> None:
    """Save what the first run measured (the next invocation's estimate) and print the rest's estimate by it."""
    t = ladder.Timing(measured["step_s"], measured["train_start_s"], measured["answer_s"], measured["score_s"],
                      source="measured on this ladder's first run")
    write_json(lad.dir / "timings.json", {"settings": timing_key(lad), "timing": vars(t)})
    rest = ladder.Work(**{k: getattr(left, k) - getattr(done, k) for k in vars(left)})
    print("\n".join(ladder.describe_work(rest, t, "measured; still to run")), flush=True)


def read_curves(lad: Ladder) -> dict[str, dict[int, dict[str, Any]]]:
    """design -> seed -> {steps, proxy, golds: {name: means}, proxy_sd, answers, answer_tokens, cut, training,
    settings} from each run's monotonicity.json, score caches, answers, training log and training_config.json."""
    curves: dict[str, dict[int, dict[str, Any]]] = {}
    names = gold_names(lad.golds)
    count_tokens = token_counter(lad.model)
    for design in lad.designs:
        curves[design.name] = {}
        for seed in lad.seeds:
            path = lad.run_dir(design, seed) / "monotonicity.json"
            result = read_json(path)
            gold_means = ([g["steps_mean_gold"] for g in result["golds"]] if "golds" in result
                          else [result["steps_mean_gold"]])
            answers = [ladder.answer_numbers(read_json(Path(row["outputs"]), expect=list), count_tokens)
                       for row in result["checkpoints"]]
            # eval_monotonicity's split of each gold by cut vs finished answers, per checkpoint, by gold name
            cut = [dict(zip(names, list((row.get("cut_golds") or {}).values()) or [row.get("cut")]))
                   for row in result["checkpoints"]]
            log = lad.dir / "logs" / f"train_{design.name}_seed{seed}.log"
            curves[design.name][seed] = {
                "steps": result["steps"], "proxy": result["steps_mean_proxy"], "golds": dict(zip(names, gold_means)),
                "proxy_sd": base_proxy_sd(lad.base_dir(seed), result["steps_mean_proxy"][0]),
                "answers": answers, "answer_tokens": [x["mean_tokens"] for x in answers], "cut": cut,
                "training": ladder.parse_training_log(log.read_text(errors="replace")) if log.is_file() else None,
                "settings": run_settings(lad, design, seed), "monotonicity": str(path)}
    return curves


def token_counter(model: str):
    """Answer length in the policy's tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def base_proxy_sd(base: Path, base_mean: float) -> float | None:
    """The SD of a design's proxy over the base policy's answers: eval_monotonicity.py caches each proxy's
    per-answer scores beside the base answers (scores-proxy-{tag}.json, one file per proxy); the design's is the
    one whose mean reward is the run's step-0 proxy mean."""
    for cache in sorted(base.glob("scores-proxy-*.json")):
        rewards = [row["reward"] for row in read_json(cache)["scores"]]
        if rewards and math.isclose(statistics.fmean(rewards), base_mean, rel_tol=1e-9, abs_tol=1e-12):
            return ladder.proxy_sd(rewards)
    return None


def run_settings(lad: Ladder, design: ladder.Design, seed: int) -> dict[str, Any] | None:
    """The settings the run trained with (steps, batch, learning rate, KL, post-processing, encoder dtype), from
    its final checkpoint's training_config.json (else its last checkpoint's)."""
    folder = lad.run_dir(design, seed)
    for ck in [folder / "policy_final", *(lad.checkpoint(design, seed, s) for s in reversed(lad.steps[1:]))]:
        if (ck / "training_config.json").is_file():
            return ladder.training_settings(read_json(ck / "training_config.json"))
    return None


def gold_names(golds: list[str]) -> list[str]:
    names = [Path(g.rstrip("/")).name for g in golds]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def report(lad: Ladder, total: ladder.Work) -> dict[str, Any]:
    """ladder.json (every number), ladder.md (the tables) and ladder.png, from the runs' files alone."""
    curves = read_curves(lad)
    names = gold_names(lad.golds)
    summaries = {d: {g: ladder.design_summary(runs, g) for g in names} for d, runs in curves.items()}
    compared = ladder.comparisons(summaries)
    a = lad.a
    settings = {k: v for k, v in vars(a).items() if k != "plan_only"}
    trained = {d: {seed: run["settings"] for seed, run in runs.items()} for d, runs in curves.items()}
    result = {"settings": {**settings, "model_name": lad.model, "golds": lad.golds, "gold_types": lad.gold_types,
                           "eval_set": str(lad.eval_path), "eval_size": lad.n_eval, "steps": lad.steps,
                           "trained_with": first_settings(trained)},
              "designs": {d.name: d.record() for d in lad.designs}, "seeds": lad.seeds, "curves": curves,
              "summary": summaries, "paired": compared, "cost": total.record(timing(lad)),
              "interval": "mean over seeds +/- t(0.975, n-1) x sd / sqrt(n); p: exact two-sided sign-flip "
                          "permutation test of a zero mean over seeds",
              "power": ladder.power_line(len(lad.seeds))}
    write_json(lad.dir / "ladder.json", result)
    title = (f"{Path(lad.model.rstrip('/')).name}, {a.trainer.upper()}, {len(lad.seeds)} seeds, "
             f"{lad.n_eval} eval instructions")
    table = ladder.markdown_table(summaries)
    pairs = ladder.paired_table(compared) if compared else ""
    widths = ladder.interval_widths(summaries)
    md = [f"# Reward-design ladder: {title}", "",
          "Change from the base policy (step 0) to the last checkpoint (the proxy also in SDs of the design's proxy "
          "over the base answers), Spearman/Kendall of the proxy and gold means across checkpoints, the last "
          "training step's KL and the last checkpoint's mean answer length in tokens: mean over seeds [95% "
          "t-interval], p = exact sign-flip test. hacking: proxy up and gold down, both intervals excluding zero.",
          "", table]
    if pairs:
        md += ["Paired by seed (the same base answers and answer draws), each design minus the first:", "", pairs]
    md += [ladder.power_line(len(lad.seeds)), "", "Interval half-widths reached:", "", *[f"- {w}" for w in widths],
           "", f"Steps: {lad.steps}; trained with: {json.dumps(result['settings']['trained_with'])}; figure: "
           "ladder.png; every number: ladder.json.", ""]
    atomic_write(lad.dir / "ladder.md", "\n".join(md))
    ladder.plot_ladder(curves, names, lad.dir / "ladder.png", title)
    print("\n" + table)
    if pairs:
        print("paired by seed, each design minus the first:\n" + pairs)
    print(ladder.power_line(len(lad.seeds)))
    print("interval half-widths reached (they shrink about as 1/sqrt(seeds)):")
    for w in widths:
        print(f"  {w}")
    print(f"wrote {lad.dir / 'ladder.json'}, {lad.dir / 'ladder.md'} and {lad.dir / 'ladder.png'}")
    return result


def first_settings(trained: dict[str, dict[int, dict[str, Any] | None]]) -> dict[str, Any] | None:
    """The training settings every run shares (steps, batch, learning rate, KL, post-processing, encoder dtype):
    the first run's, checked against the others; a run that differs is named in "differs"."""
    runs = [(d, seed, s) for d, by_seed in trained.items() for seed, s in by_seed.items() if s is not None]
    if not runs:
        return None
    first = runs[0][2]
    differs = [f"{d} seed {seed}" for d, seed, s in runs[1:] if s != first]
    return {**first, **({"differs": differs} if differs else {})}


def main(argv: Sequence[str] | None = None) -> None:
    a = parse_args(argv)
    with exit_on_data_error():
        absolute_paths(a)
        check_args(a)
        designs = ladder.build_designs([d.strip() for d in a.designs.split(",") if d.strip()], a.features_module,
                                       a.features_base)
        seeds = int_list("seeds", a.seeds)
        if any(d.flags["relevance_scaling"] for d in designs):  # offline without the encoder: stop before any work
            check_reward_flags(RewardConfig(relevance_model=a.relevance_model, rar_max_dot=a.rar_max_dot))
        model = a.model_name or smollm2_path()
        if not a.model_name:
            print(f"policy: the offline SmolLM2-135M-Instruct ({model}; --model_name for another)")
        folder = Path(a.ladder_dir)
        source = eval_source(a)
        records = eval_records(source, a.eval_size)
        check_ladder_dir(folder, records, a)
        golds, gold_types = prepare_gold(a, folder)
        eval_path = folder / EVAL_SET if a.plan_only else start_ladder_dir(folder, records, source, a)
        lad = Ladder(a, designs, seeds, model, golds, gold_types, eval_path, len(records))
        total, left, lines = plan(lad)
        print(f"ladder: {len(designs)} design(s) ({', '.join(d.name for d in designs)}) x {len(seeds)} seed(s) "
              f"{seeds}; steps {lad.steps} (0 = base policy); {lad.n_eval} eval instructions ({eval_path})")
        print("plan:")
        for line in lines:
            print(f"  {line}")
        print(ladder.power_line(len(seeds)))
        t = timing(lad)
        for line in ladder.describe_work(total, t, "whole ladder") + ladder.describe_work(left, t, "still to run"):
            print(line)
        if not a.gold and not (folder / "gold_standin" / "config.json").is_file():
            print("plus, once, the gold stand-in's training: about 1 min (26-51 s in docs/performance.md)")
        if a.plan_only:
            return
        if not a.gold:
            train_standin(folder)
        execute(lad, left)
        report(lad, total)


if __name__ == "__main__":
    main()
