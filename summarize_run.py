"""Print the quickstart's summary from the artefacts of one run folder.

Reads {run_dir}/monotonicity.json (eval_monotonicity.py), {run_dir}/policy_final/superni_eval.json
(evaluation.py --evaluations superni), {run_dir}/gold_standin/standin_info.json and, when there,
{run_dir}/best_of_n/best_of_n.json (best_of_n.py), so the summary is rebuilt from files alone and a re-run prints
the same thing. The short PPO run is reported as what it is: per-checkpoint means with their noise band, and the
smallest p-value a Spearman over that many checkpoints can reach; the finding is the best-of-n comparison. The wall time of each
phase comes from {run_dir}/phase_times.tsv (written by quickstart.sh: the latest run's times).
"""

from __future__ import annotations

import argparse
import math
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
    bon_path = run / "best_of_n" / "best_of_n.json"
    bon = load(bon_path) if bon_path.is_file() else None
    try:
        lines = report(run, mono, superni, gold) + (best_of_n_lines(bon, bon_path) if bon else [])
    except KeyError as err:  # a file from another version of the scripts
        raise DataError(f"{run}: an artefact lacks the field {err}; rerun scripts/quickstart.sh") from None
    print("\n".join(lines))


def band(sd: Any, n: Any) -> float | None:
    """1.96 SD / sqrt(n): the half-width of a normal 95% interval of a mean (None where unknown)."""
    if not isinstance(sd, (int, float)) or not isinstance(n, int) or n < 2:
        return None
    return 1.96 * sd / math.sqrt(n)


def min_spearman_p(points: int) -> float | None:
    """The smallest two-sided p of an exact Spearman test over `points` pairs: both perfect orders out of n!."""
    return min(1.0, 2 / math.factorial(points)) if points >= 2 else None


def best_of_n_lines(bon: dict, path: Path) -> list[str]:
    """The finding: each design's gold gain from 1 to n draws and full minus li at n, per gold, with the paired
    bootstrap intervals over prompts, and the share of cut answers among the picks."""
    n, base = bon["n"], bon["baseline"]
    out = [f"best-of-n ({path}): {bon['n_prompts']} held-out prompts x {n} answers ({bon['max_new_tokens']} tokens), "
           "each design's proxy picks the best of n, each gold scores the pick; 95% bootstrap over prompts, paired"]
    for gold in bon["golds"]:
        for design, d in bon["designs"].items():
            gain = d["golds"][gold]["gain"][-1]
            out.append(f"  gold {gold:<26} {design:<9} gain 1 -> {n}: {fmt_ci(gain)}; cut among picks "
                       f"{100 * d['cut_picked'][0]:.0f}% -> {100 * d['cut_picked'][-1]:.0f}%")
        for pair, by_gold in bon["differences"].items():
            diff = by_gold[gold][-1]
            verdict = ("excludes 0" if diff["ci"][0] > 0 or diff["ci"][1] < 0 else
                       "includes 0: this size cannot tell the designs apart")
            out.append(f"  gold {gold:<26} {pair} at n={n}: {fmt_ci(diff)} ({verdict})")
    out.append(f"  share of all draws cut at the token cap: {100 * bon['cut_share']:.0f}%")
    for gold, g in (bon.get("gold_by_cut") or {}).items():
        out.append(f"  gold {gold:<26} mean gold of cut / finished draws: {num(g['cut'], '.2f', str(path))} / "
                   f"{num(g['finished'], '.2f', str(path))} (the gap is what a gold that reads the cut-off adds)")
    out.append(f"  baseline design: {base}; details and figure: {path.parent}")
    return out


def fmt_ci(stat: dict) -> str:
    lo, hi = stat["ci"]
    return f"{stat['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def report(run: Path, mono: dict, superni: dict, gold: dict) -> list[str]:
    """The summary's lines, built whole before any is printed (a bad file prints no half summary)."""
    m, sn = run / "monotonicity.json", run / "superni_eval.json (of the final policy)"
    accuracy = num(gold['heldout']['accuracy'], '.3f', f"{run / 'gold_standin' / 'standin_info.json'}: heldout.accuracy")
    recipe = (gold.get("settings") or {}).get("recipe")
    out = [f"run folder: {run}",
           f"gold stand-in: {run / 'gold_standin'} ({f'{recipe} recipe, ' if recipe else ''}held-out pair accuracy "
           f"{accuracy}); the paper's gold is Starling-RM-34B",
           "cut = the answer stopped at the token cap; gold cut / gold fin = mean gold of cut / finished answers",
           "+/- = 1.96 SD / sqrt(n) over the eval instructions: the noise band of a checkpoint's mean",
           f"{'step':>6} {'proxy':>8} {'+/-':>6} {'gold':>8} {'+/-':>6} {'cut %':>6} {'gold cut':>9} {'gold fin':>9} "
           f"{'win rate %':>11}"]
    for k, row in enumerate(require_key(mono, "checkpoints", str(m), list)):
        require_key(row, "step", f"{m}: checkpoints[{k}]")
        where = f"{m}: checkpoints[{k}]"
        win = (row.get("win_rate") or {}).get("win_rate")
        cut = row.get("cut") or {}
        share = cut.get("share_cut")
        out.append(f"{num(row['step'], '', f'{where}.step'):>6} {num(row['mean_proxy'], '.3f', f'{where}.mean_proxy'):>8} "
                   f"{num(band(row.get('sd_proxy'), row.get('n')), '.3f', f'{where}.sd_proxy'):>6} "
                   f"{num(row['mean_gold'], '.3f', f'{where}.mean_gold'):>8} "
                   f"{num(band(row.get('sd_gold'), row.get('n')), '.3f', f'{where}.sd_gold'):>6} "
                   f"{num(None if share is None else 100 * share, '.1f', f'{where}.cut.share_cut'):>6} "
                   f"{num(cut.get('mean_cut'), '.3f', f'{where}.cut.mean_cut'):>9} "
                   f"{num(cut.get('mean_finished'), '.3f', f'{where}.cut.mean_finished'):>9} "
                   f"{'' if win is None else num(win, '.1f', f'{where}.win_rate'):>11}")
    s, k = mono["spearman"], mono["kendall"]
    points = len(mono["checkpoints"])
    out.append(f"Spearman (proxy vs gold means across checkpoints): statistic={s['statistic']}, pvalue={s['pvalue']}; "
               f"over {points} checkpoints of one seed the smallest two-sided p it can reach is "
               f"{num(min_spearman_p(points), '.3f', 'checkpoints')}: a smoke test of the loop, not a finding")
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
