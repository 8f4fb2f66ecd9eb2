"""Benchmark: seconds per 16 generated samples for PPO (run_ppo.py), GRPO and RLOO (run_grpo.py), equal settings.

SmolLM2-135M-Instruct on CPU, one process, each trainer's own CLI: 16 generated samples per step (PPO: 16
prompts; GRPO/RLOO: 4 prompts x 4 generations), 64 new tokens, mini-batch 2 (PPO accumulates 4 of them per
optimizer step and does its 4 epochs; GRPO/RLOO one update over all 16), LoRA r=8 on q/v, the full white-box
reward (LI, RP, QR, RAR) on data/train.json prompts, no checkpoints. Each step is timed by the trainer's own step
line (wall time of generation + reward + update); the first step (warm-up) is left out of the median.

    python bench/trainer_step_time.py               # 4 steps each
    python bench/trainer_step_time.py --steps 6 --trainers grpo,rloo
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = {"ppo": re.compile(r"^step (\d+)/\d+ \| .*\| ([\d.]+)s \(gen ([\d.]+), reward ([\d.]+), fwd ([\d.]+), update ([\d.]+)\)"),
        "trl": re.compile(r"^step (\d+)/\d+ \| .*\| ([\d.]+)s$")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--trainers", default="ppo,grpo,rloo")
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"],
                        help="bf16: base weights in bf16 for every trainer (native on this CPU), LoRA in fp32")
    parser.add_argument("--num_threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--ppo_sampler", default="loop", choices=["loop", "generate"],
                        help="PPO's --rollout_sampler; generate samples as TRL's GRPO/RLOO trainers do (like for like)")
    o = parser.parse_args()
    common = ["--dataset_path=data/train.json", f"--overall_steps={o.steps}", "--save_freq=0", "--log_with=none",
              f"--output_max_length={o.new_tokens}", "--max_prompt_length=256", "--batch_size=16", "--mini_batch_size=2",
              "--learning_rate=1e-5", "--lora_r=8", "--lora_alpha=16", "--lora_dropout=0.05",
              "--relevance_model=minilm", "--rar_max_dot=1.0",
              "--seed=42"] + ([f"--num_threads={o.num_threads}"] if o.num_threads else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    rows = []
    for trainer in o.trainers.split(","):
        out = Path(tempfile.mkdtemp(prefix=f"bench_{trainer}_")) / "run"
        if trainer == "ppo":
            cmd = [sys.executable, "run_ppo.py", *common, f"--output_dir={out}", "--gradient_accumulation_steps=4",
                   f"--mixed_precision={'bf16' if o.precision == 'bf16' else 'no'}",
                   "--dev_prompt_path=", "--eval_table_rows=0", f"--rollout_sampler={o.ppo_sampler}"]
        else:
            cmd = [sys.executable, "run_grpo.py", f"--trainer={trainer}", *common, f"--output_dir={out}",
                   "--num_generations=4", f"--precision={'bfloat16' if o.precision == 'bf16' else 'float32'}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"error: {trainer} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        pattern = LINE["ppo" if trainer == "ppo" else "trl"]
        times = [float(m.group(2)) for m in map(pattern.match, proc.stdout.splitlines()) if m]
        if len(times) != o.steps:
            sys.exit(f"error: {trainer}: found {len(times)} step lines, expected {o.steps}")
        med = statistics.median(times[1:] or times)
        rows.append((trainer, med, times))
        print(f"{trainer}: steps {' '.join(f'{t:.1f}' for t in times)} s", flush=True)
    print(f"\nseconds per 16 generated samples (median over steps 2..{o.steps}, {o.new_tokens} new tokens, one process)")
    for trainer, med, _ in rows:
        print(f"  {trainer.upper():5s} {med:6.1f} s")


if __name__ == "__main__":
    main()
