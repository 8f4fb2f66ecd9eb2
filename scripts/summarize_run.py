"""Print the quickstart's summary from the artefacts of one run folder.

Reads {run_dir}/monotonicity.json (eval_monotonicity.py), {run_dir}/policy_final/superni_eval.json
(evaluation.py --evaluations superni), {run_dir}/gold_standin/standin_info.json and the checkpoints' dev
rewards, so the summary is rebuilt from files alone and a re-run prints the same thing.
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


if __name__ == "__main__":
    main()
