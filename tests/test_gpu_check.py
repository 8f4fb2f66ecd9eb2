"""bench/gpu_check.sh --dry-run: the GPU check's code paths (random models from configs, run_ppo.py in bf16 under
accelerate launch, saved every step and resumed, two checkpoints evaluated, both throughput benches, the summary
block) at tiny sizes on CPU, so the prepared GPU run cannot rot."""

from __future__ import annotations

import re
import subprocess

from helpers import ENV, ROOT


def test_gpu_check_dry_run_reaches_its_summary(tmp_path):
    env = {**ENV, "WORK": str(tmp_path / "work"), "ASSETS": str(tmp_path / "assets")}
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.split("===== gpu_check summary (DRY RUN: tiny sizes on CPU) =====")[1]
    assert "mixed precision bf16" in summary  # run_ppo.py ran the bf16 path the GPU run takes
    assert "launch: accelerate launch --mixed_precision bf16, without DeepSpeed (dry run)" in summary
    # 2 steps saving each, then a resume to step 3: the paper's save-and-resume path under accelerate launch.
    steps = re.findall(r"^ppo: step (\d)/(\d) .*\(gen [\d.]+, reward [\d.]+, fwd [\d.]+, update [\d.]+\)",
                       summary, re.M)
    assert steps == [("1", "2"), ("2", "2"), ("3", "3")]
    assert re.search(r"^ppo: resumed from .*ppo_step_2", summary, re.M)
    assert "ppo: rar_max_dot: auto -> 3.5" in summary  # the Contriever-shaped encoder: raw dot, the paper's 3.5
    assert all(f"ppo: checkpoint step {s} saved" in summary for s in (1, 2, 3))
    assert "eval: ppo_step_1: 30 answers" in summary and "eval: ppo_step_3: 30 answers" in summary
    assert "peak GPU memory: ppo n/a, eval n/a, gold n/a, reward n/a" in summary
    assert re.search(r"^gold: +batched: +[\d.]+ responses/s", summary, re.M)
    assert re.search(r"^reward: full RER, cold: +[\d.]+ responses/s", summary, re.M)
    assert re.search(r"^wall: models \d+s, ppo \d+s, eval \d+s, gold \d+s, reward \d+s, total \d+s", summary,
                     re.M)


def test_gpu_check_rejects_unknown_arguments():
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--tiny"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: unknown argument '--tiny' (expected --dry-run or nothing)"
