"""The reward-design ladder's arithmetic (design_ladder.py drives it): the designs as run_ppo.py flags,
what each (design, seed) run gives (proxy and gold change from base to last checkpoint, the proxy change in units
of the design's proxy SD on the base answers, their Spearman and Kendall across checkpoints, the training's KL and
lengths), the t-interval and exact sign-flip p-value of each over seeds, designs compared seed by seed, the
reward-hacking flag, the report's table and figure, and the cost of what is left to compute. Pure functions, so
the report is rebuilt from files alone and the intervals can be checked against scipy on planted numbers."""

from __future__ import annotations

import math
import re
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from scipy.stats import kendalltau, spearmanr
from scipy.stats import t as student_t

from rre.errors import DataError
from rre.files import save_figure
from rre.stats import correlation, min_sign_flip_p, sign_flip_test

REWARD_FLAGS = ("length_incentive", "repetition_penalty", "relevance_scaling", "reward_branching")
# The paper's ladder (its Table 2 rows): each design adds one feature to the one before.
DESIGNS: dict[str, dict[str, bool]] = {
    "li": {"length_incentive": True, "repetition_penalty": False, "relevance_scaling": False,
           "reward_branching": False},
    "li_rp": {"length_incentive": True, "repetition_penalty": True, "relevance_scaling": False,
              "reward_branching": False},
    "li_qr_rp": {"length_incentive": True, "repetition_penalty": True, "relevance_scaling": True,
                 "reward_branching": False},
    "full": {"length_incentive": True, "repetition_penalty": True, "relevance_scaling": True, "reward_branching": True},
}
METRICS = ("proxy_change", "proxy_change_sd", "gold_change", "gold_change_finished", "cut_share", "spearman", "kendall",
           "kl", "answer_tokens")
# Compared between designs seed by seed (the same seed: the same base answers and, with per-prompt seeded
# answers, the same random numbers), against the first design.
PAIRED_METRICS = ("gold_change", "gold_change_finished", "cut_share", "proxy_change_sd", "kl", "answer_tokens")


@dataclass(frozen=True)
class Design:
    """One rung: the reward flags of run_ppo.py, and a features module (`--features_module`) when it has one."""

    name: str
    flags: dict[str, bool]
    features_module: str | None = None

    def train_flags(self) -> list[str]:
        out = [f"--{k}={'true' if v else 'false'}" for k, v in self.flags.items()]
        return out + ([f"--features_module={self.features_module}"] if self.features_module else [])

    def record(self) -> dict[str, Any]:
        return {"flags": dict(self.flags), "features_module": self.features_module}


def build_designs(names: Sequence[str], features_modules: Sequence[str] = (), features_base: str = "full"
                  ) -> list[Design]:
    """The ladder's designs in order: the named built-in ones, then one per features module (named after its file,
    on the flags of `features_base`). An unknown or repeated name is one line naming the flag."""
    designs = []
    for name in names:
        if name not in DESIGNS:
            raise DataError(f"--designs: unknown design {name!r} (built-in: {', '.join(DESIGNS)}; your own features: "
                            "--features_module FILE)")
        designs.append(Design(name, DESIGNS[name]))
    if features_modules and features_base not in DESIGNS:
        raise DataError(f"--features_base: unknown design {features_base!r} (one of {', '.join(DESIGNS)})")
    for path in features_modules:
        designs.append(Design(Path(path).stem, DESIGNS[features_base], str(path)))
    seen = [d.name for d in designs]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise DataError(f"--designs/--features_module: design name(s) given twice: {', '.join(twice)}")
    if not designs:
        raise DataError("--designs: give at least one design")
    return designs


def checkpoint_steps(checkpoints: int, save_every: int) -> list[int]:
    """The steps the report reads: 0 (the base policy, no adapter), then every `save_every` steps."""
    return [0] + [save_every * (i + 1) for i in range(checkpoints)]


# ---------------------------------------------------------------------------------------------------------
# Statistics.


def seed_interval(values: Sequence[float | None], level: float = 0.95,
                  bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean over seeds and its two-sided t-interval: mean +/- t_{(1+level)/2, n-1} x sd / sqrt(n). Undefined
    values (a correlation of a constant curve) are left out and counted; fewer than 2 values: no interval.
    `bounds` (a correlation's [-1, 1]) clips the interval's ends, never its half-width."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(kept)
    out: dict[str, Any] = {"n": n, "n_undefined": len(values) - n, "mean": None, "ci": [None, None],
                           "half_width": None, "level": level}
    if n == 0:
        return out
    mean = statistics.fmean(kept)
    out["mean"] = mean
    if n >= 2:
        half = float(student_t.ppf((1 + level) / 2, n - 1)) * statistics.stdev(kept) / math.sqrt(n)
        lo, hi = mean - half, mean + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        out.update(ci=[lo, hi], half_width=half)
    return out


def seed_test(values: Sequence[float | None], level: float = 0.95,
              bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """`seed_interval` and, beside it, the exact sign-flip permutation p-value of a zero mean (rre/stats.py)."""
    out = seed_interval(values, level, bounds)
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    flip = sign_flip_test(kept)
    out.update(p_sign_flip=flip["pvalue"], min_p=flip["min_p"])
    return out


def hacking(proxy_change: dict[str, Any], gold_change: dict[str, Any]) -> bool:
    """Reward hacking, as the report flags it: the proxy went up and the gold went down, both intervals
    excluding zero (no interval, no flag)."""
    p_lo, g_hi = proxy_change["ci"][0], gold_change["ci"][1]
    return p_lo is not None and g_hi is not None and p_lo > 0 and g_hi < 0


def run_numbers(proxy: Sequence[float], gold: Sequence[float], proxy_sd: float | None = None,
                kl: float | None = None, answer_tokens: float | None = None,
                cut: Sequence[dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """One run's numbers against one gold: change from the first point (the base policy) to the last, the proxy
    change in units of `proxy_sd` (the SD of the design's proxy over the base policy's answers: designs whose
    proxies have other scales compare), the Spearman and Kendall of the two curves across checkpoints (null where
    a curve is constant), and the run's `kl` and `answer_tokens` as given (null when unknown). `cut` (one
    rre.cutoff.split_by_cut per point, this gold's) gives the last point's share of cut answers and the gold change
    among finished answers only, so a gold change that is the cut-off shows."""
    if len(proxy) != len(gold) or len(proxy) < 2:
        raise ValueError(f"need two equal curves of >= 2 points, got {len(proxy)} and {len(gold)}")
    with warnings.catch_warnings():  # a constant curve: scipy warns and returns NaN, written as null
        warnings.simplefilter("ignore")
        sp, kt = spearmanr(proxy, gold), kendalltau(proxy, gold)
    change = float(proxy[-1] - proxy[0])
    first, last = (cut[0], cut[-1]) if cut else (None, None)
    finished = (last["mean_finished"] - first["mean_finished"] if first and last
                and None not in (first["mean_finished"], last["mean_finished"]) else None)
    return {"proxy_change": change, "proxy_change_sd": change / proxy_sd if proxy_sd else None,
            "gold_change": float(gold[-1] - gold[0]), "gold_change_finished": finished,
            "cut_share": last["share_cut"] if last else None, "spearman": correlation(sp)["statistic"],
            "kendall": correlation(kt)["statistic"], "kl": kl, "answer_tokens": answer_tokens}


def design_summary(runs: dict[int, dict[str, Any]], gold: str, level: float = 0.95) -> dict[str, Any]:
    """Over the seeds of one design, against one gold: each metric's mean, t-interval and sign-flip p-value, and
    the hacking flag. `runs` maps seed -> {"proxy": [...], "golds": {name: [...]}} and, when known,
    "proxy_sd", "training" (parse_training_log), "answer_tokens" (one mean per step) and "cut" (per step: gold
    name -> rre.cutoff.split_by_cut, from monotonicity.json)."""
    per_seed = {}
    for seed, r in sorted(runs.items()):
        training = r.get("training") or {}
        tokens = r.get("answer_tokens") or [None]
        cut = [c.get(gold) if c else None for c in r.get("cut") or []]
        per_seed[seed] = run_numbers(r["proxy"], r["golds"][gold], r.get("proxy_sd"), training.get("final_kl"),
                                     tokens[-1], cut if len(cut) == len(r["proxy"]) else None)
    summary = {m: seed_test([v[m] for v in per_seed.values()], level,
                            (-1.0, 1.0) if m in ("spearman", "kendall") else None) for m in METRICS}
    return {"per_seed": per_seed, **summary, "hacking": hacking(summary["proxy_change"], summary["gold_change"])}


def paired_comparison(first: dict[str, Any], other: dict[str, Any], level: float = 0.95) -> dict[str, Any]:
    """`other` minus `first` (two design_summary results against one gold), seed by seed over the seeds both
    have: per metric, the differences, their mean with its t-interval and the exact sign-flip p-value."""
    seeds = sorted(set(first["per_seed"]) & set(other["per_seed"]))
    out: dict[str, Any] = {"seeds": seeds}
    for m in PAIRED_METRICS:
        diffs = [None if first["per_seed"][s][m] is None or other["per_seed"][s][m] is None
                 else other["per_seed"][s][m] - first["per_seed"][s][m] for s in seeds]
        out[m] = {"differences": diffs, **seed_test(diffs, level)}
    return out


def answer_numbers(records: Sequence[dict[str, Any]], count_tokens: Any) -> dict[str, Any]:
    """One checkpoint's answers (an evaluation.py outputs file's records) summed up for the report: how many, and
    their mean length in policy tokens (`count_tokens(text) -> int`). Every per-answer field the outputs carry
    is read here, so a number about the answers is added in this one place."""
    lengths = [count_tokens(r["output"]) for r in records]
    return {"n": len(records), "mean_tokens": statistics.fmean(lengths) if lengths else None}


def proxy_sd(rewards: Sequence[float]) -> float | None:
    """The SD of a design's proxy over the base policy's answers (one reward per eval instruction): the unit of
    its standardized change. None with fewer than 2 answers or no spread."""
    if len(rewards) < 2:
        return None
    sd = statistics.stdev(float(r) for r in rewards)
    return sd if sd > 0 else None


# run_ppo.py's and run_grpo.py's per-step lines: "step N/T | reward R +/- S | kl K | ... | len L (cut C) | ... Ts"
# (run_ppo.py gives the share of rollouts cut at the token cap beside the length; run_grpo.py does not).
TRAIN_LINE = re.compile(r"step (?P<step>\d+)/\d+ \| reward (?P<reward>\S+) \+/- (?P<reward_sd>\S+) \| kl (?P<kl>\S+) \|"
                        r".*?\| len (?P<len>\S+)(?: \(cut (?P<cut>\S+)\))? \|(?:.*\|)? (?P<seconds>[\d.]+)s(?: \(|\s*$)")


def _float(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def parse_training_log(text: str) -> dict[str, Any]:
    """Per training step (the last line printed for each step, so a resumed run's log counts each step once):
    rollout reward mean and SD, KL, rollout length in tokens and seconds; with the trend of the rollout reward
    (OLS slope per step and its standard error) and the KL of the last step."""
    rows: dict[int, dict[str, float | None]] = {}
    for line in text.replace("\r", "\n").splitlines():
        m = TRAIN_LINE.search(line)
        if m:
            rows[int(m["step"])] = {**{k: _float(m[k]) for k in ("reward", "reward_sd", "kl", "len")},
                                    "cut": _float(m["cut"]) if m["cut"] else None, "seconds": float(m["seconds"])}
    steps = sorted(rows)
    out: dict[str, Any] = {"steps": steps, **{k: [rows[s][k] for s in steps]
                                              for k in ("reward", "reward_sd", "kl", "len", "cut", "seconds")}}
    out["reward_trend"] = trend(steps, out["reward"])
    out["final_kl"] = out["kl"][-1] if steps else None
    return out


def trend(xs: Sequence[float], ys: Sequence[float | None]) -> dict[str, float | None]:
    """OLS slope of ys on xs and its standard error (null with fewer than 3 points)."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None]
    if len(pts) < 3:
        return {"slope": None, "se": None, "n": len(pts)}
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return {"slope": None, "se": None, "n": len(pts)}
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in pts)
    return {"slope": slope, "se": math.sqrt(resid / (len(pts) - 2) / sxx), "n": len(pts)}


def training_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What a run trained with, from its training_config.json (run_ppo.py's or run_grpo.py's): steps, batch,
    learning rate, KL settings, post-processing and the precisions (policy and relevance encoder)."""
    script, reward, resolved = config.get("script", {}), config.get("reward", {}), config.get("resolved", {})
    if "ppo" in config:
        ppo = config["ppo"]
        trainer = {"trainer": "ppo", "batch_size": ppo.get("batch_size"), "mini_batch_size": ppo.get("mini_batch_size"),
                   "ppo_epochs": ppo.get("ppo_epochs"), "learning_rate": ppo.get("learning_rate"),
                   "kl": {k: ppo.get(k) for k in ("init_kl_coef", "adap_kl_ctrl", "kl_target", "kl_horizon")},
                   "policy_precision": resolved.get("mixed_precision")}
    else:
        trl = resolved.get("trl_config", {})
        trainer = {"trainer": config.get("trainer"), "batch_size": script.get("batch_size"),
                   "mini_batch_size": script.get("mini_batch_size"), "num_generations": trl.get("num_generations"),
                   "num_iterations": trl.get("num_iterations"), "learning_rate": trl.get("learning_rate"),
                   "kl": {"beta": trl.get("beta")}, "policy_precision": resolved.get("precision")}
    tokens = config.get("ppo", {}).get("output_max_length", script.get("output_max_length"))
    return {**trainer, "steps": script.get("overall_steps", config.get("ppo", {}).get("overall_steps")),
            "rollout_tokens": tokens,
            "response_postprocess": reward.get("response_postprocess", resolved.get("response_postprocess")),
            "encoder": reward.get("relevance_model"), "encoder_dtype": reward.get("reward_dtype")}


# ---------------------------------------------------------------------------------------------------------
# Report.


def _cell(s: dict[str, Any], digits: int = 3, p: bool = False) -> str:
    if s["mean"] is None:
        return "n/a"
    lo, hi = s["ci"]
    text = f"{s['mean']:+.{digits}f}" + (f" [{lo:+.{digits}f}, {hi:+.{digits}f}]" if lo is not None else " [n<2]")
    return text + (f" p={s['p_sign_flip']:.3f}" if p and s.get("p_sign_flip") is not None and s["n"] >= 2 else "")


def _plain(s: dict[str, Any], digits: int = 1) -> str:
    if s["mean"] is None:
        return "n/a"
    lo, hi = s["ci"]
    return f"{s['mean']:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else "")


def table_rows(summaries: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    """One row per (design, gold): seeds, proxy change (raw and in base-answer SDs), gold change (all answers and
    finished answers only), the last checkpoint's share of cut answers, Spearman,
    Kendall (mean [95% interval] over seeds, the changes with their sign-flip p), the final training KL, the last
    checkpoint's answer length and the hacking flag. `summaries` maps design -> gold -> design_summary."""
    rows = []
    for design, by_gold in summaries.items():
        for gold, s in by_gold.items():
            rows.append([design, gold, str(len(s["per_seed"])), _cell(s["proxy_change"]),
                         _cell(s["proxy_change_sd"], 2, p=True), _cell(s["gold_change"], p=True),
                         _cell(s["gold_change_finished"], p=True), _plain(s["cut_share"], 2),
                         _cell(s["spearman"], 2), _cell(s["kendall"], 2), _plain(s["kl"], 2),
                         _plain(s["answer_tokens"]), "YES" if s["hacking"] else "no"])
    return rows


TABLE_HEADER = ["design", "gold", "seeds", "proxy change", "proxy change (base SDs)", "gold change",
                "gold change (finished answers)", "cut share (last)", "Spearman", "Kendall", "KL", "answer tokens",
                "hacking"]
PAIRED_HEADER = ["designs", "gold", "seeds", "gold change", "gold change (finished answers)", "cut share (last)",
                 "proxy change (base SDs)", "KL", "answer tokens"]


def markdown_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summaries)]
    return "\n".join(lines) + "\n"


def comparisons(summaries: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every design after the first minus the first, seed by seed, per gold: "{other} - {first}" -> gold ->
    paired_comparison."""
    names = list(summaries)
    return {f"{other} - {names[0]}": {g: paired_comparison(summaries[names[0]][g], summaries[other][g])
                                      for g in summaries[other]} for other in names[1:]}


def paired_table(compared: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| " + " | ".join(PAIRED_HEADER) + " |", "|" + "---|" * len(PAIRED_HEADER)]
    for pair, by_gold in compared.items():
        for gold, c in by_gold.items():
            cells = [_cell(c[m], 3 if m.startswith("gold_change") else 2, p=True) for m in PAIRED_METRICS]
            lines.append("| " + " | ".join([pair, gold, str(len(c["seeds"])), *cells]) + " |")
    return "\n".join(lines) + "\n"


def interval_widths(summaries: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per (design, gold): the half-width reached by each interval (what more seeds would shrink)."""
    lines = []
    for design, by_gold in summaries.items():
        for gold, s in by_gold.items():
            parts = [f"{m.replace('_', ' ')} n/a (n={s[m]['n']})" if s[m]["half_width"] is None
                     else f"{m.replace('_', ' ')} +/-{s[m]['half_width']:.3f}"
                     + (" (the interval is all of [-1, 1])" if s[m]["ci"] == [-1.0, 1.0] else "") for m in METRICS
                     if s[m]["n"] or s[m]["n_undefined"] < len(s["per_seed"])]
            lines.append(f"{design} vs {gold} ({len(s['per_seed'])} seeds): " + ", ".join(parts))
    return lines


def power_line(n_seeds: int) -> str:
    """What the seed count allows an exact sign-flip test to say."""
    return (f"{n_seeds} seed(s): the exact sign-flip test of a paired difference cannot go below "
            f"p = {min_sign_flip_p(n_seeds):.4g} (all {n_seeds} differences of one sign)")


def plot_ladder(curves: dict[str, dict[int, dict[str, Any]]], golds: Sequence[str], path: str | Path,
                title: str) -> None:
    """One column per design, one row for the proxy and one per gold: each seed a thin line, the mean over seeds
    a thick one. `curves` maps design -> seed -> {"steps", "proxy", "golds": {name: [...]}}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    rows = ["proxy", *golds]
    fig, axes = plt.subplots(len(rows), len(names), figsize=(3.2 * len(names) + 0.8, 2.6 * len(rows)),
                             squeeze=False, sharex=True, sharey="row")
    for c, design in enumerate(names):
        runs = curves[design]
        for r, what in enumerate(rows):
            ax = axes[r][c]
            color = "tab:blue" if what == "proxy" else "tab:red"
            series = [(run["steps"], run["proxy"] if what == "proxy" else run["golds"][what]) for run in runs.values()]
            for steps, ys in series:
                ax.plot(steps, ys, color=color, linewidth=0.8, alpha=0.5)
            if series and all(s == series[0][0] for s, _ in series):
                mean = [statistics.fmean(col) for col in zip(*(ys for _, ys in series))]
                ax.plot(series[0][0], mean, color=color, linewidth=2.5, label=f"mean of {len(series)} seeds")
            if r == 0:
                ax.set_title(design)
            if c == 0:
                ax.set_ylabel("proxy" if what == "proxy" else f"gold: {what}")
            if r == len(rows) - 1:
                ax.set_xlabel("training step")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------
# Cost.

# Per-unit seconds measured by the laptop ladder itself (docs/ladder.md: 2-core AMD EPYC, native bf16,
# SmolLM2-135M-Instruct, quiet machine): a PPO step at batch 8 with 48 new tokens 14-15 s (scaled by batch x
# tokens for other settings); a checkpoint's 200 answers of up to 48 tokens at batch 16 about 67 s, its load and
# merge included (a policy trained for length answers in full; the base policy stops earlier); one run scored
# (9 x 200 answers, gold stand-in and proxy) about 175 s. The start of a command (imports) is a rough figure.
REFERENCE_STEP_S, REFERENCE_STEP_WORK = 14.5, 8 * 48
LOAD_S = 3.0  # one checkpoint loaded and merged by evaluation.py
ANSWER_TOKEN_S = (67.0 - LOAD_S) / (200 * 48)
SCORE_S = (175.0 - 12.0) / (9 * 200)  # per answer and gold
COMMAND_S = 12.0  # start of one command: imports
SAVE_S = 1.0  # one checkpoint save


@dataclass
class Timing:
    """Seconds per unit of work, each unit one thing the ladder runs; `source` says where they come from."""

    step_s: float  # one PPO step
    train_start_s: float  # one training run beside its steps: start, model load, saves
    answer_s: float  # one checkpoint's answers to the eval set, its share of the answering process's start included
    score_s: float  # one run scored (eval_monotonicity.py), start included
    source: str = "the laptop ladder's figures for a 2-core CPU"


def default_timing(batch: int, new_tokens: int, n_eval: int, eval_tokens: int, checkpoints: int, n_golds: int,
                   time_per_step: float | None = None) -> Timing:
    """The estimate before anything is measured: `--time_per_step` when given, else the 2-core CPU figures."""
    step = time_per_step if time_per_step is not None else REFERENCE_STEP_S * batch * new_tokens / REFERENCE_STEP_WORK
    source = ("--time_per_step for a PPO step, " if time_per_step is not None else "") + \
        "the laptop ladder's figures for a 2-core CPU"
    # One evaluation.py process answers all of a run's checkpoints: its start is shared among them.
    answer = COMMAND_S / checkpoints + LOAD_S + n_eval * eval_tokens * ANSWER_TOKEN_S
    return Timing(step, COMMAND_S + checkpoints * SAVE_S, answer,
                  COMMAND_S + (checkpoints + 1) * n_eval * n_golds * SCORE_S, source)


@dataclass
class Work:
    """What a ladder computes (all of it, or what is left): counts, and seconds by a `Timing`."""

    runs: int = 0
    ppo_steps: int = 0
    rollouts: int = 0
    checkpoints: int = 0  # checkpoints (base policies included) whose answers are to be generated
    answers: int = 0
    score_runs: int = 0  # eval_monotonicity.py calls
    scores: int = 0  # answers x golds scored (the proxy scores each answer too)

    def add_training(self, steps: int, batch: int) -> None:
        self.runs += 1
        self.ppo_steps += steps
        self.rollouts += steps * batch

    def add_answers(self, n: int) -> None:
        self.checkpoints += 1
        self.answers += n

    def add_scoring(self, n_answers: int, n_golds: int) -> None:
        self.score_runs += 1
        self.scores += n_answers * n_golds

    def seconds(self, timing: Timing) -> dict[str, float]:
        return {"training": self.ppo_steps * timing.step_s + self.runs * timing.train_start_s,
                "answers": self.checkpoints * timing.answer_s, "scoring": self.score_runs * timing.score_s}

    def record(self, timing: Timing) -> dict[str, Any]:
        split = self.seconds(timing)
        return {**{k: v for k, v in vars(self).items()}, "seconds": split, "total_seconds": sum(split.values()),
                "timing": vars(timing)}


def hours(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else (f"{m} min" if m else f"{seconds:.0f} s")


def describe_work(work: Work, timing: Timing, what: str) -> list[str]:
    split = work.seconds(timing)
    parts = ", ".join(f"{k} {hours(v)}" for k, v in split.items())
    return [f"{what}: {work.runs} training run(s), {work.ppo_steps} PPO steps ({work.rollouts} rollouts); "
            f"{work.checkpoints} checkpoint(s) to answer ({work.answers} answers); {work.score_runs} run(s) to score "
            f"({work.scores} gold scores, each answer also scored by its proxy)",
            f"expected wall time: {hours(sum(split.values()))} ({parts}; {timing.step_s:.1f} s per PPO step, "
            f"{timing.answer_s:.0f} s per checkpoint answered, {timing.score_s:.0f} s per run scored; from "
            f"{timing.source})"]
