"""Print the quickstart's summary from the artefacts of one run folder.

Reads {run_dir}/monotonicity.json (eval_monotonicity.py), {run_dir}/policy_final/superni_eval.json
(evaluation.py --evaluations superni), {run_dir}/gold_standin/standin_info.json and the checkpoints' dev
rewards, so the summary is rebuilt from files alone and a re-run prints the same thing. The wall time of each
phase comes from {run_dir}/phase_times.tsv (written by quickstart.sh: the latest run's times).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence


from rre import validation
from rre.files import read_json, read_text, require_key
from rre.errors import DataError, exit_on_data_error


def load(path: Path) -> dict:
    """One artefact of the run: a JSON object, else one line saying which file and what to run."""
    if not path.is_file():
        raise DataError(f"{path} is missing; run scripts/quickstart.sh to produce it")
    return read_json(path)


def num(x: Any, spec: str, where: str) -> str:
    """A number formatted, or '-' where the file holds null (an undefined statistic); anything else where a
    number belongs (a string, a list) is one line naming the file and the field."""
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise DataError(f"{where}: expected a number or null, got {type(x).__name__} {str(x)[:30]!r}")
    return format(x, spec)


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
    m, sn = run / "monotonicity.json", run / "superni_eval.json (of the final policy)"
    accuracy = num(gold['heldout']['accuracy'], '.3f', f"{run / 'gold_standin' / 'standin_info.json'}: heldout.accuracy")
    recipe = (gold.get("settings") or {}).get("recipe")
    out = [f"run folder: {run}",
           f"gold stand-in: {run / 'gold_standin'} ({f'{recipe} recipe, ' if recipe else ''}held-out pair accuracy "
           f"{accuracy}); the paper's gold is Starling-RM-34B",
           "cut = the answer stopped at the token cap; gold cut / gold fin = mean gold of cut / finished answers",
           f"{'step':>6} {'proxy':>8} {'gold':>8} {'cut %':>6} {'gold cut':>9} {'gold fin':>9} {'win rate %':>11}"]
    for k, row in enumerate(require_key(mono, "checkpoints", str(m), list)):
        require_key(row, "step", f"{m}: checkpoints[{k}]")
        where = f"{m}: checkpoints[{k}]"
        win = (row.get("win_rate") or {}).get("win_rate")
        cut = row.get("cut") or {}
        share = cut.get("share_cut")
        out.append(f"{num(row['step'], '', f'{where}.step'):>6} {num(row['mean_proxy'], '.3f', f'{where}.mean_proxy'):>8} "
                   f"{num(row['mean_gold'], '.3f', f'{where}.mean_gold'):>8} "
                   f"{num(None if share is None else 100 * share, '.1f', f'{where}.cut.share_cut'):>6} "
                   f"{num(cut.get('mean_cut'), '.3f', f'{where}.cut.mean_cut'):>9} "
                   f"{num(cut.get('mean_finished'), '.3f', f'{where}.cut.mean_finished'):>9} "
                   f"{'' if win is None else num(win, '.1f', f'{where}.win_rate'):>11}")
    s, k = mono["spearman"], mono["kendall"]
    out.append(f"Spearman (proxy vs gold means across checkpoints): statistic={s['statistic']}, pvalue={s['pvalue']}")
    out.append(f"Kendall tau: statistic={k['statistic']}, pvalue={k['pvalue']}")
    ci = (mono.get("bootstrap") or {}).get("ci95")
    if ci:
        out.append(f"bootstrap 95% CI of Spearman over instructions: {ci}")
    out.append(f"SuperNI ROUGE-L of the final policy: {num(superni['rougeL'], '.2f', f'{sn}: rougeL')} "
               f"({superni['n_instances']} instances, {superni['n_tasks']} tasks, {superni['superni_dir']})")
    out.append(f"plot: {run / 'monotonicity.png'}")
    times = run / "phase_times.tsv"
    if times.is_file():
        rows = []
        for n, line in enumerate(read_text(times).splitlines(), 1):
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
