"""Experiment (not a test): the same white-box reward under PPO (run_ppo.py), GRPO and RLOO (run_grpo.py).

Offline default: SmolLM2-135M-Instruct, data/train.json prompts, the full reward (LI, RP, QR, RAR with
branching, rar_max_dot=1.0 for MiniLM), the same number of generated samples per step for every trainer
(PPO: `batch` prompts x 1; GRPO/RLOO: batch/num_generations prompts x num_generations), a checkpoint every
`save_freq` steps. Every checkpoint answers data/eval.json (evaluation.py) and eval_monotonicity.py scores
them with the proxy and the gold stand-in. Prints one table: step time, the proxy reward curve during
training, proxy/gold means per checkpoint and Spearman of each trainer.

    python train_reward_model.py --output_dir /tmp/gold_standin      # the gold stand-in, once
    python bench/compare_trainers.py --gold /tmp/gold_standin --run_dir runs/compare

Each phase is skipped when its output exists, so a re-run only prints the table (or finishes what is missing).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV_FLAGS = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
STEP_TIME = {"ppo": re.compile(r"^step (\d+)/\d+ \| reward ([-\d.naif]+) .*\| ([\d.]+)s \(gen"),
             "grpo": re.compile(r"^step (\d+)/\d+ \| reward ([-\d.naif]+) .*\| ([\d.]+)s$")}


def run(cmd: list[str], log: Path) -> str:
    import os

    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **ENV_FLAGS}, capture_output=True, text=True)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode:
        sys.exit(f"error: {cmd[1]} failed (exit {proc.returncode}); see {log}")
    return proc.stdout


def train_flags(o, out: Path) -> list[str]:
    return [f"--model_name={o.model}", f"--output_dir={out}", f"--overall_steps={o.steps}",
            f"--save_freq={o.save_freq}", "--dataset_path=data/train.json", f"--output_max_length={o.new_tokens}",
            "--max_prompt_length=256", f"--learning_rate={o.lr}", "--lora_r=8", "--lora_alpha=16",
            "--lora_dropout=0.05", "--length_incentive=true", "--repetition_penalty=true", "--relevance_scaling=true",
            "--reward_branching=true", "--relevance_model=minilm", "--rar_max_dot=1.0", f"--seed={o.seed}",
            "--resume_from_checkpoint=latest"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gold", required=True, help="gold reward model folder (train_reward_model.py)")
    parser.add_argument("--run_dir", default="runs/compare")
    parser.add_argument("--trainers", default="ppo,grpo,rloo")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--save_freq", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="generated samples per step, for every trainer")
    parser.add_argument("--num_generations", type=int, default=4, help="GRPO/RLOO group size")
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--eval_tokens", type=int, default=32)
    parser.add_argument("--eval_every", type=int, default=1,
                        help="answer every k-th record of data/eval.json (2: 15 of 30, on a loaded CPU)")
    parser.add_argument("--lr", type=float, default=3e-4, help="the quickstart's; the paper's 1e-5 is for 10000 steps")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"],
                        help="bf16: base weights in bf16 for every trainer, LoRA in fp32")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ppo_sampler", default="loop", choices=["loop", "generate"],
                        help="PPO's --rollout_sampler; generate samples as TRL's GRPO/RLOO trainers do (like for like)")
    parser.add_argument("--model", default=None, help="policy (default: offline SmolLM2-135M-Instruct)")
    o = parser.parse_args()
    if o.model is None:
        from rre.offline_models import smollm2_path

        o.model = smollm2_path()
    py, root = sys.executable, Path(o.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    eval_path = "data/eval.json"
    if o.eval_every > 1:  # a subset in the same format, written into the run folder (never into the repo)
        eval_path = str(root / f"eval_every_{o.eval_every}.json")
        records = json.loads((ROOT / "data/eval.json").read_text())[:: o.eval_every]
        Path(eval_path).write_text(json.dumps(records, indent=2))
    results = {}
    for trainer in o.trainers.split(","):
        folder = root / trainer
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "policy"
        train_log = folder / "train.log"
        if not (folder / "policy_final").is_dir():
            if trainer == "ppo":
                cmd = [py, "run_ppo.py", *train_flags(o, out), f"--batch_size={o.batch}", "--mini_batch_size=2",
                       "--gradient_accumulation_steps=2", "--dev_prompt_path=data/dev.json", "--dev_max_examples=8",
                       "--eval_table_rows=0",
                       f"--mixed_precision={'bf16' if o.precision == 'bf16' else 'no'}",
                       f"--rollout_sampler={o.ppo_sampler}"]
            else:
                cmd = [py, "run_grpo.py", f"--trainer={trainer}", *train_flags(o, out), f"--batch_size={o.batch}",
                       "--mini_batch_size=2", f"--num_generations={o.num_generations}",
                       f"--precision={'bfloat16' if o.precision == 'bf16' else 'float32'}"]
            run(cmd, train_log)
        steps, rewards, times = [], [], []
        pattern = STEP_TIME["ppo" if trainer == "ppo" else "grpo"]
        for line in train_log.read_text().splitlines():
            m = pattern.match(line)
            if m:
                steps.append(int(m.group(1)))
                rewards.append(float(m.group(2)))
                times.append(float(m.group(3)))
        for ckpt in sorted(folder.glob("policy_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])):
            if not (ckpt / f"alpaca-eval-{ckpt.name}.json").is_file():
                run([py, "evaluation.py", f"--base_model_name={o.model}", f"--peft_model_name={ckpt}",
                     "--batch_size=16", "--evaluations=alpaca", f"--eval_path={eval_path}",
                     f"--max_new_tokens={o.eval_tokens}", f"--seed={o.seed}"], folder / f"eval_{ckpt.name}.log")
        if not (folder / "monotonicity.json").is_file():
            if not (Path(o.gold) / "config.json").is_file():
                sys.exit(f"error: --gold {o.gold}: no model there; train it with train_reward_model.py "
                         f"--output_dir {o.gold}")
            run([py, "eval_monotonicity.py", f"--output_dir={folder}", "--model_prefix=policy",
                 f"--eval_path={eval_path}", f"--gold_model={o.gold}", "--gold_type=classifier",
                 "--relevance_model=minilm", "--rar_max_dot=1.0", "--all_steps",
                 f"--tokenizer_name={o.model}"], folder / "monotonicity.log")
        mono = json.loads((folder / "monotonicity.json").read_text())
        results[trainer] = (rewards, times, mono)

    print(f"\nSmolLM2-135M-Instruct, data/train.json, {o.batch} generated samples/step "
          f"(GRPO/RLOO: {o.batch // o.num_generations} prompts x {o.num_generations}), {o.new_tokens} new tokens, "
          f"{o.steps} steps, lr {o.lr}, checkpoint every {o.save_freq}; eval: {eval_path}, {o.eval_tokens} tokens")
    print("| trainer | median step s | s / 16 samples | proxy reward, first 2 -> last 2 steps | "
          "proxy per checkpoint | gold per checkpoint | Spearman (p) |")
    print("|---|---|---|---|---|---|---|")
    for trainer, (rewards, times, mono) in results.items():
        med = statistics.median(times[1:] or times) if times else float("nan")
        first, last = statistics.mean(rewards[:2]), statistics.mean(rewards[-2:])
        proxy = " ".join(f"{v:.3f}" for v in mono["steps_mean_proxy"])
        gold = " ".join(f"{v:.3f}" for v in mono["steps_mean_gold"])
        sp = mono["spearman"]
        print(f"| {trainer.upper()} | {med:.1f} | {med * 16 / o.batch:.1f} | {first:.3f} -> {last:.3f} | {proxy} | "
              f"{gold} | {sp['statistic'] if sp['statistic'] is None else round(sp['statistic'], 2)} "
              f"({sp['pvalue'] if sp['pvalue'] is None else round(sp['pvalue'], 2)}) |")
    print(f"checkpoint steps: {results[next(iter(results))][2]['steps']}; training curves: {root}/<trainer>/train.log")


if __name__ == "__main__":
    main()
