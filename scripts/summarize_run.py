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
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python scripts/summarize_run.py`

from rre import validation  # noqa: E402
from rre.data import DataError, exit_on_data_error  # noqa: E402


def load(path: Path) -> dict:
    """One artefact of the run: a JSON object, else one line saying which file and what to run."""
    if not path.is_file():
        raise DataError(f"{path} is missing; run scripts/quickstart.sh to produce it")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); rerun the step that writes it") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def num(x: Any, spec: str) -> str:
    """A number formatted, or '-' where the file holds null (an undefined statistic)."""
    return "-" if x is None else format(x, spec)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", default="runs/quickstart")
    parser.add_argument("--prefix", default="policy")
    args = parser.parse_args(argv)
    with exit_on_data_error():
        summarize(args)


def summarize(args: argparse.Namespace) -> None:
    run = validation.input_folder("run_dir", args.run_dir)
    mono = load(run / "monotonicity.json")
    superni = load(run / f"{args.prefix}_final" / "superni_eval.json")
    gold = load(run / "gold_standin" / "standin_info.json")
    try:
        lines = report(run, mono, superni, gold)
    except KeyError as err:  # a file from another version of the scripts
        raise DataError(f"{run}: an artefact lacks the field {err}; rerun scripts/quickstart.sh") from None
    print("\n".join(lines))


def report(run: Path, mono: dict, superni: dict, gold: dict) -> list[str]:
    """The summary's lines, built whole before any is printed (a bad file prints no half summary)."""
    out = [f"run folder: {run}",
           f"gold stand-in: {run / 'gold_standin'} (held-out pair accuracy {gold['heldout']['accuracy']}); the "
           "paper's gold is Starling-RM-34B",
           f"{'step':>6} {'proxy':>8} {'gold':>8} {'win rate %':>11}"]
    for row in mono["checkpoints"]:
        win = (row.get("win_rate") or {}).get("win_rate")
        out.append(f"{row['step']:>6} {num(row['mean_proxy'], '.3f'):>8} {num(row['mean_gold'], '.3f'):>8} "
                   f"{'' if win is None else f'{win:.1f}':>11}")
    s, k = mono["spearman"], mono["kendall"]
    out.append(f"Spearman (proxy vs gold means across checkpoints): statistic={s['statistic']}, pvalue={s['pvalue']}")
    out.append(f"Kendall tau: statistic={k['statistic']}, pvalue={k['pvalue']}")
    ci = (mono.get("bootstrap") or {}).get("ci95")
    if ci:
        out.append(f"bootstrap 95% CI of Spearman over instructions: {ci}")
    out.append(f"SuperNI ROUGE-L of the final policy: {num(superni['rougeL'], '.2f')} "
               f"({superni['n_instances']} instances, {superni['n_tasks']} tasks, {superni['superni_dir']})")
    out.append(f"plot: {run / 'monotonicity.png'}")
    times = run / "phase_times.tsv"
    if times.is_file():
        rows = []
        for n, line in enumerate(times.read_text().splitlines(), 1):
            name, _, sec = line.rpartition("\t")
            if not line.strip():
                continue
            if not name or not sec.strip().isdigit():
                raise DataError(f"{times}: line {n}: expected 'phase<TAB>seconds', got {line[:60]!r}")
            rows.append((name, int(sec)))
        total = sum(sec for _, sec in rows)
        out.append(f"wall time per phase (this run of quickstart.sh, {total // 60} min {total % 60} s in all before "
                   "the summary):")
        for name, sec in rows:
            out.append(f"  {name.split(' -> ')[0]:<58} {sec // 60:>3} min {sec % 60:>2} s")
    return out


if __name__ == "__main__":
    main()
