"""The README's main job end to end, in its smoke setting: every phase, every artefact, then reuse."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from PIL import Image
from helpers import ROOT


def run_quickstart(run_dir: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PROFILE": "smoke", "RUN_DIR": str(run_dir)}
    start = time.perf_counter()
    proc = subprocess.run(["bash", "scripts/quickstart.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    return proc, time.perf_counter() - start


def test_quickstart_smoke_produces_every_artefact_and_reuses_them(tmp_path):
    run_dir = tmp_path / "quickstart"
    proc, _ = run_quickstart(run_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Checkpoints: one per save, each a loadable LoRA adapter with its AlpacaEval outputs.
    steps = sorted(int(p.name.rsplit("_", 1)[1]) for p in run_dir.glob("policy_step_*"))
    assert steps == [1, 2]
    eval_set = json.loads((ROOT / "data" / "eval.json").read_text())
    for step in steps:
        folder = run_dir / f"policy_step_{step}"
        assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
        outputs = json.loads((folder / f"alpaca-eval-policy_step_{step}.json").read_text())
        assert len(outputs) == len(eval_set)
        assert {"instruction", "output", "generator", "dataset"} <= set(outputs[0])
    assert (run_dir / "policy_final" / "adapter_config.json").is_file()
    assert (run_dir / "gold_standin" / "standin_info.json").is_file()
    corruptions = json.loads((run_dir / "gold_standin_corruptions" / "standin_info.json").read_text())
    assert corruptions["settings"]["recipe"] == "corruptions"
    bon = json.loads((run_dir / "best_of_n" / "best_of_n.json").read_text())
    assert list(bon["designs"]) == ["li", "full"] and bon["golds"] == ["gold_standin", "gold_standin_corruptions"]
    assert "full - li" in bon["differences"] and bon["n"] == 2

    mono = json.loads((run_dir / "monotonicity.json").read_text())
    assert mono["steps"] == steps and len(mono["steps_mean_proxy"]) == len(mono["steps_mean_gold"]) == 2
    # Every checkpoint's answers carry their cut flags (evaluation.py), so the split is recorded, not inferred.
    assert all(row["cut"] and 0 <= row["cut"]["share_cut"] <= 1 for row in mono["checkpoints"])
    assert "statistic" in mono["spearman"] and all("win_rate" in c for c in mono["checkpoints"])
    with Image.open(run_dir / "monotonicity.png") as img:
        assert img.size[0] > 100 and img.size[1] > 100
    superni = json.loads((run_dir / "policy_final" / "superni_eval.json").read_text())
    assert 0.0 <= superni["rougeL"] <= 100.0 and superni["n_tasks"] >= 1

    summary = (run_dir / "summary.txt").read_text()
    for needle in ("Spearman", "pvalue", "SuperNI ROUGE-L", "monotonicity.png", "win rate", "cut %", "gold fin",
                   "smallest two-sided p", "noise band", "best-of-n", "full - li at n=2", "gold_standin_corruptions"):
        assert needle in summary
    assert summary.strip() in proc.stdout
    # Each phase's wall time, from phase_times.tsv (the run's own times, so they are not compared below).
    results, times = summary.split("wall time per phase")
    for phase in ("1/8 offline default models", "2/8 gold stand-ins", "3/8 PPO", "6/8 SuperNI", "7/8 best-of-n"):
        assert phase in times
    assert len((run_dir / "phase_times.tsv").read_text().splitlines()) == 7

    # A second run reuses every finished phase: no training, no generation, no scoring.
    mtimes = {p: p.stat().st_mtime for p in run_dir.rglob("*") if p.is_file() and p.name != "summary.txt"
              and p.name not in ("monotonicity.json", "monotonicity.png", "monotonicity_features.png",
                                 "best_of_n.json", "best_of_n.png", "phase_times.tsv")}
    again, _ = run_quickstart(run_dir)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reusing the finished run" in again.stdout
    changed = [str(p) for p, m in mtimes.items() if p.stat().st_mtime != m]
    assert changed == [], changed
    assert (run_dir / "summary.txt").read_text().split("wall time per phase")[0] == results
