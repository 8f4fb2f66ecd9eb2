"""Print the quickstart's summary from the artefacts of one run folder.

Reads {run_dir}/monotonicity.json (eval_monotonicity.py), {run_dir}/policy_final/superni_eval.json
(evaluation.py --evaluations superni), {run_dir}/gold_standin/standin_info.json and the checkpoints' dev
rewards, so the summary is rebuilt from files alone and a re-run prints the same thing. The wall time of each
phase comes from {run_dir}/phase_times.tsv (written by quickstart.sh: the latest run's times).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"error: {path} is missing; run scripts/quickstart.sh to produce it")
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", default="runs/quickstart")
    parser.add_argument("--prefix", default="policy")
    args = parser.parse_args()
    run = Path(args.run_dir)
    mono = load(run / "monotonicity.json")
    superni = load(run / f"{args.prefix}_final" / "superni_eval.json")
    gold = load(run / "gold_standin" / "standin_info.json")

    print(f"run folder: {run}")
    print(f"gold stand-in: {run / 'gold_standin'} (held-out pair accuracy "
          f"{gold['heldout']['accuracy']}); the paper's gold is Starling-RM-34B")
    print(f"{'step':>6} {'proxy':>8} {'gold':>8} {'win rate %':>11}")
    for row in mono["checkpoints"]:
        win = row.get("win_rate", {}).get("win_rate")
        print(f"{row['step']:>6} {row['mean_proxy']:>8.3f} {row['mean_gold']:>8.3f} "
              f"{'' if win is None else f'{win:.1f}':>11}")
    s, k = mono["spearman"], mono["kendall"]
    print(f"Spearman (proxy vs gold means across checkpoints): statistic={s['statistic']}, pvalue={s['pvalue']}")
    print(f"Kendall tau: statistic={k['statistic']}, pvalue={k['pvalue']}")
    ci = mono.get("bootstrap", {}).get("ci95")
    if ci:
        print(f"bootstrap 95% CI of Spearman over instructions: {ci}")
    print(f"SuperNI ROUGE-L of the final policy: {superni['rougeL']:.2f} "
          f"({superni['n_instances']} instances, {superni['n_tasks']} tasks, {superni['superni_dir']})")
    print(f"plot: {run / 'monotonicity.png'}")
    times = run / "phase_times.tsv"
    if times.is_file():
        rows = [line.split("\t") for line in times.read_text().splitlines() if line.strip()]
        total = sum(int(sec) for _, sec in rows)
        print(f"wall time per phase (this run of quickstart.sh, {total // 60} min {total % 60} s in all before the "
              "summary):")
        for name, sec in rows:
            print(f"  {name.split(' -> ')[0]:<58} {int(sec) // 60:>3} min {int(sec) % 60:>2} s")


if __name__ == "__main__":
    main()
