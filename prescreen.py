"""Rank reward designs before any training: which white-box design orders existing systems as the gold does?

A PPO run costs thousands of GPU steps, and tells you one Spearman number. Many systems' outputs already exist
(AlpacaEval publishes hundreds; every run leaves its checkpoints' outputs), so a design that cannot even order
those systems as the gold orders them is unlikely to steer training toward what the gold likes. This script
scores every system with every design and reports, per design and per gold, the system-level Spearman and
Kendall correlation with the gold, a bootstrap 95% interval over instructions, and (when the gold is a model)
the per-sample Spearman over every (system, instruction) pair.

    python prescreen.py --systems runs/quickstart/policy_base runs/quickstart/policy_step_* \\
        --annotations_path data/eval.json --gold_model runs/quickstart/gold_standin --gold_type classifier \\
        --relevance_model minilm --output_dir runs/quickstart/prescreen

Systems (`--systems`): an outputs file (alpaca_eval format), a folder holding `model_outputs.json` (AlpacaEval's
`results/{model}/` layout) or one `alpaca-eval-*.json` (a checkpoint folder of evaluation.py), or a folder of such
folders. Every system must answer every instruction of the annotated file (qtype, reference answer).
Gold: `--gold_model` (repeatable; any gold eval_monotonicity.py supports) and/or `--gold_csv name,score` (a
leaderboard's per-system scores, e.g. AlpacaEval win rates).
Designs (`--designs`): the paper's flag combinations by name (`LI`, `LI+RP`, `LI+RP+QR`, `RER` = all four; any
`+`-joined set of LI, RP, QR, RAR), plus one design per `--features_module` file (its features and `combine`, on
top of all four flags).

Scoring is cached under `--cache_dir`: the features of each outputs file once (the relevance encoder's work),
then the reward of each (file, design) and the gold scores of each (file, gold), each keyed by a hash of exactly
what was scored; adding a design or a system computes only what is new.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr
from tqdm.auto import tqdm

from reward_model import (
    ReversedEngineeredRewardForInference,
    RewardConfig,
    check_reward_flags,
    cut_before_scoring,
    resolve_rar_max_dot,
    tokenize,
)
from rre import validation
from rre.checkpoints import find_outputs_file
from rre.data import REPO, Example, load_examples, load_outputs, match_outputs
from rre.files import (
    check_outputs_in,
    content_hash,
    finite_number,
    json_object_with,
    png_file,
    read_csv_rows,
    read_text,
    save_figure,
    write_json,
)
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.feature_view import best_and_worst, feature_view, numeric_features, plot_feature_view, print_feature_view
from rre.features import FeatureFn, Sample, check_features_module, load_features_module
from rre.gold import GoldArguments, GoldSpec, check_gold_flags, gold_specs_from_flags, load_gold
from rre.prompts import PROMPT_FORMATS, clean_response, resolve_prompt_format
from rre.relevance import RelevanceEncoder
from rre.score_cache import cached_scores, stored_scores
from rre.stats import bootstrap_spearman, correlation, number
from rre.validation import merge_repeated_flags

PAPER_DESIGNS = ("LI", "LI+RP", "LI+RP+QR", "RER")
FLAG_OF = {"LI": "length_incentive", "RP": "repetition_penalty", "QR": "relevance_scaling", "RAR": "reward_branching"}


@dataclass
class PrescreenArguments(GoldArguments):
    systems: list[str] = field(
        default_factory=list, metadata={"help": "outputs files, system folders, or folders of system folders"})
    annotations_path: str = field(default=str(REPO / "data" / "eval.json"),
                                  metadata={"help": "annotated instructions (qtype, reference answer)"})
    designs: list[str] = field(default_factory=lambda: list(PAPER_DESIGNS),
                               metadata={"help": "flag combinations: LI, LI+RP, LI+RP+QR, RER (= LI+RP+QR+RAR), ..."})
    features_module: list[str] | None = field(
        default=None, metadata={"help": "features files, one design each (all four flags plus its features)"})
    gold_model: list[str] | None = field(default=None, metadata={"help": "gold reward model(s); repeat for several"})
    gold_csv: str | None = field(default=None, metadata={"help": "per-system gold scores: rows of name,score"})
    prompt_format: str = field(default="alpaca", metadata={"help": "auto | chat | alpaca: role markers to cut at"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer for --prompt_format chat/auto"})
    output_dir: str = field(default="prescreen", metadata={"help": "where prescreen.json and the plots go"})
    cache_dir: str | None = field(default=None, metadata={"help": "score cache (default: {output_dir}/cache)"})


# ---------------------------------------------------------------------------------------------------------
# Systems and designs.


@dataclass
class System:
    name: str
    path: Path
    responses: list[str]  # cleaned, in the annotated file's order


def system_file(path: Path) -> Path | None:
    """The outputs file of a system folder (AlpacaEval's model_outputs.json, or evaluation.py's), else None."""
    if (path / "model_outputs.json").is_file():
        return path / "model_outputs.json"
    if any(path.glob("alpaca-eval-*.json")):
        return find_outputs_file(path)
    return None


def system_name(file: Path) -> str:
    if file.name == "model_outputs.json" or file.name == f"alpaca-eval-{file.parent.name}.json":
        return file.parent.name
    return file.stem.removeprefix("alpaca-eval-")


def find_systems(paths: Sequence[str]) -> list[tuple[str, Path]]:
    """(name, outputs file) of every system the paths name, in the order given."""
    found: list[tuple[str, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append((system_name(p), p))
        elif p.is_dir():
            own = system_file(p)
            if own is not None:
                found.append((p.name, own))
                continue
            inner = [(sub.name, f) for sub in sorted(p.iterdir()) if sub.is_dir() and (f := system_file(sub))]
            if not inner:
                raise DataError(f"--systems {raw}: no model_outputs.json or alpaca-eval-*.json in it or its folders")
            found += inner
        else:
            raise DataError(f"--systems {raw}: not found")
    names = [n for n, _ in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"--systems: several systems named {dupes[0]!r}; give each its own folder name")
    if len(found) < 2:
        raise DataError(f"--systems: found {len(found)} system(s); ranking needs at least 2")
    return found


def load_system(name: str, path: Path, examples: list[Example], stop_strings: Sequence[str],
                do_strip: bool) -> System:
    """The system's responses in the annotated file's order; every annotated instruction must be answered."""
    outputs = load_outputs(path)
    answer: dict[int, str] = {}  # position in `examples` -> the output (a repeated instruction: one per record)
    for k, rec in zip(match_outputs(outputs, examples, path), outputs):
        answer.setdefault(k, rec["output"])
    missing = [ex for k, ex in enumerate(examples) if k not in answer]
    if missing:
        raise DataError(f"system {name!r} ({path}): no output for {len(missing)} of {len(examples)} annotated "
                        f"instructions (first: {missing[0].seed_input[:60]!r})")
    raw = [answer[k] for k in range(len(examples))]
    return System(name, path, [clean_response(r, tuple(stop_strings)) if do_strip else r for r in raw])


@dataclass
class Design:
    """A reward design: the paper's four flags, and optionally a features module's features and combine rule,
    held by the reward class itself so that a design scores exactly as training would."""

    name: str
    reward: ReversedEngineeredRewardForInference  # built with `for_features`: no encoder
    ident: Any = None  # what its scores depend on (flags, module code): part of its cache key

    @property
    def config(self) -> RewardConfig:
        return self.reward.config

    @property
    def extra_features(self) -> dict[str, FeatureFn]:
        return self.reward.extra_features


def parse_design(name: str, base: RewardConfig) -> Design:
    parts = {"LI", "RP", "QR", "RAR"} if name == "RER" else set(name.split("+"))
    unknown = sorted(parts - set(FLAG_OF))
    if unknown or not name:
        raise DataError(f"--designs: unknown design {name!r} (expected LI, LI+RP, LI+RP+QR, RER or a +-joined set "
                        "of LI, RP, QR, RAR)")
    if "RAR" in parts and "QR" not in parts:
        raise DataError(f"--designs {name}: RAR (branching) needs QR, as in the paper's flags")
    config = replace(base, **{flag: key in parts for key, flag in FLAG_OF.items()})
    return Design(name, ReversedEngineeredRewardForInference.for_features(config), ident=[name, asdict(config)])


def module_design(path: str, base: RewardConfig) -> Design:
    features, combine = load_features_module(path)
    config = replace(base, **{flag: True for flag in FLAG_OF.values()})
    return Design(Path(path).stem, ReversedEngineeredRewardForInference.for_features(config, features, combine),
                  ident=[path, read_text(path, "--features_module"), asdict(config)])


def sample_of(ex: Example, response: str) -> Sample:
    return Sample(ex.query, response, ex.reference, ex.qtype, tuple(tokenize(response)))


def design_rewards(design: Design, features: list[dict[str, float | None]], examples: list[Example],
                   responses: list[str]) -> list[float]:
    """The design's reward of every sample, from the features computed once per file with all flags on (QR and
    RAR are None where not computed), combined by the reward class with the design's flags
    (`combine_features`: the paper's rule or the module's `combine`, which sees every feature, `branch` too)."""
    reward = design.reward
    rewards = []
    for i, (f, ex, response) in enumerate(zip(features, examples, responses)):
        base = {"LI": f["LI"], "RP": f["RP"], "QR": math.nan if f.get("QR") is None else f["QR"],
                "RAR": math.nan if f.get("RAR") is None else f["RAR"], "qtype": ex.qtype}
        sample = sample_of(ex, response) if reward.extra_features else None
        rewards.append(float(reward.combine_features(base, sample, i)["reward"]))
    return rewards


def module_features(designs: Sequence[Design], examples: list[Example], responses: list[str],
                    system: str) -> list[dict]:
    """Values of every features module's own features (for the per-feature view), per sample."""
    out: list[dict[str, float]] = [{} for _ in responses]
    for d in designs:
        if d.extra_features:
            for i, (row, ex, r) in enumerate(zip(out, examples, responses)):
                try:
                    row.update(d.reward.extra_values(sample_of(ex, r), i))
                except DataError as err:
                    raise DataError(f"system {system!r}, design {d.name}: {err}") from None
    return out


# ---------------------------------------------------------------------------------------------------------
# Gold.


def read_gold_csv(path: str, systems: Sequence[str]) -> dict[str, float]:
    """Rows of `name,score` (a header row is allowed; a byte-order mark too); every system needs exactly one score,
    a finite number: a system listed twice, or a NaN score, would silently decide the ranking."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--gold_csv {path}: file not found")
    scores: dict[str, float] = {}
    first_row: dict[str, int] = {}
    for n, row in read_csv_rows(p, "--gold_csv"):
        if len(row) < 2:
            raise DataError(f"--gold_csv {path}: row {n}: expected name,score")
        name = row[0].strip()
        if not scores and not first_row and not _is_number(row[1]):
            continue  # a header
        score = finite_number(row[1].strip(), f"--gold_csv {path}: row {n}: score of {name!r}")
        if name in first_row:
            raise DataError(f"--gold_csv {path}: row {n}: system {name!r} is listed twice (first on row "
                            f"{first_row[name]}); keep one score")
        scores[name], first_row[name] = score, n
    for name in systems:
        if name not in scores:
            raise DataError(f"--gold_csv {path}: no score for system {name!r}")
    return {name: scores[name] for name in systems}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Gold:
    name: str
    system_scores: np.ndarray  # (systems,)
    per_sample: np.ndarray | None  # (systems, instructions) when the gold is a model


# ---------------------------------------------------------------------------------------------------------
# Statistics.


def design_stats(proxy_scores: np.ndarray, gold: Gold, args: PrescreenArguments) -> dict[str, Any]:
    means = proxy_scores.mean(1)
    s, k = spearmanr(means, gold.system_scores), kendalltau(means, gold.system_scores)
    gold_scores = gold.per_sample if gold.per_sample is not None else gold.system_scores
    out = {"spearman": correlation(s), "kendall": correlation(k),
           "bootstrap": bootstrap_spearman(proxy_scores, gold_scores, args.bootstrap_samples, args.bootstrap_seed),
           "per_sample_spearman": None}
    if gold.per_sample is not None:
        out["per_sample_spearman"] = number(spearmanr(proxy_scores.ravel(), gold.per_sample.ravel()).statistic)
    return out


def print_ranking(ranked: list[dict[str, Any]], golds: Sequence[Gold]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"reward designs ranked by system-level Spearman with gold {golds[0].name}")
    table.add_column("rank", justify="right")
    table.add_column("design")
    for g in golds:
        for col in ("Spearman", "Kendall", "95% CI") + (("per-sample",) if g.per_sample is not None else ()):
            table.add_column(f"{col} {g.name}" if len(golds) > 1 else col, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for rank, row in enumerate(ranked, 1):
        cells = [str(rank), row["design"]]
        for g in golds:
            st = row["golds"][g.name]
            lo, hi = st["bootstrap"]["ci95"]
            cells += [fmt(st["spearman"]["statistic"]), fmt(st["kendall"]["statistic"]), f"[{fmt(lo)}, {fmt(hi)}]"]
            if g.per_sample is not None:
                cells.append(fmt(st["per_sample_spearman"]))
        table.add_row(*cells)
    Console().print(table)


def plot_ranking(ranked: list[dict[str, Any]], golds: Sequence[Gold], path: Path) -> None:
    """Spearman with each gold per design (bars), with the bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(ranked) + 2), 4))
    width = 0.8 / len(golds)
    for i, g in enumerate(golds):
        xs = [k + (i - (len(golds) - 1) / 2) * width for k in range(len(ranked))]
        vals = [r["golds"][g.name]["spearman"]["statistic"] or 0.0 for r in ranked]
        cis = [r["golds"][g.name]["bootstrap"]["ci95"] for r in ranked]
        err = [[max(0.0, v - (lo if lo is not None else v)) for v, (lo, _) in zip(vals, cis)],
               [max(0.0, (hi if hi is not None else v) - v) for v, (_, hi) in zip(vals, cis)]]
        ax.bar(xs, vals, width, yerr=err, capsize=3, label=f"gold {g.name}")
    ax.set_xticks(range(len(ranked)), [r["design"] for r in ranked], rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("system-level Spearman with the gold")
    ax.set_title("reward designs before training (bootstrap 95% CI over instructions)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name)


def check_args(args: PrescreenArguments, config: RewardConfig) -> None:
    """Flags, files and models named on the command line, before anything is read, scored or created."""
    validation.finite_flags(args)
    validation.range_flags(args)
    if not args.gold_model and not args.gold_csv:
        raise DataError("no gold: pass --gold_model (a reward model) and/or --gold_csv (per-system scores)")
    if not args.systems:
        raise DataError("--systems: give at least 2 systems (outputs files or folders)")
    validation.input_data("annotations_path", args.annotations_path)
    check_gold_flags(args)
    if args.gold_csv:
        validation.input_file("gold_csv", args.gold_csv)
        read_gold_csv(args.gold_csv, [])  # its rows now (a NaN, a system twice); the systems' names once found
    validation.one_of("prompt_format", args.prompt_format, ("auto", *PROMPT_FORMATS))
    if args.tokenizer_name:
        validation.model("tokenizer_name", args.tokenizer_name, marker="tokenizer_config.json")
    for path in args.features_module or []:
        check_features_module("features_module", path)
    validation.output_folder("output_dir", args.output_dir)
    if args.cache_dir:
        validation.output_folder("cache_dir", args.cache_dir)
    check_reward_flags(config)
    check_outputs(args)


OUTPUT_FILES = {"prescreen.json": (json_object_with("ranking", "designs"), "a prescreen result"),
                "prescreen.png": (png_file, "a figure"), "prescreen_features.png": (png_file, "a figure")}


def check_outputs(args: PrescreenArguments) -> None:
    """What prescreen writes into --output_dir is none of its inputs, and replaces only its own files."""
    inputs = {"annotations_path": args.annotations_path, "gold_csv": args.gold_csv,
              **{f"systems {s}": s for s in args.systems}, **{f"features_module {m}": m for m in args.features_module or []}}
    check_outputs_in("output_dir", args.output_dir, OUTPUT_FILES, inputs)


@dataclass
class Screen:
    """What every step of the screen reads: the annotated examples, the systems, and each one's cache folder."""

    examples: list[Example]
    systems: list[System]
    folder: dict[str, Path]  # system name -> its cache folder
    stop_strings: tuple[str, ...] = ()  # where the reward cuts a response (--prompt_format)

    def inputs(self, s: System) -> list[list[Any]]:
        """What a system's scores are computed from (part of every cache key)."""
        return [[e.query, r, e.reference, e.qtype] for e, r in zip(self.examples, s.responses)]


def run(args: PrescreenArguments, config: RewardConfig, encoder: RelevanceEncoder | None = None) -> dict[str, Any]:
    """The whole screen; `encoder` reuses an already loaded relevance encoder (notebooks, tests)."""
    check_args(args, config)
    config = resolve_rar_max_dot(config, encoder)  # auto: from the encoder, once for every design
    specs = gold_specs_from_flags(args, args.gold_model) if args.gold_model else []
    designs = all_designs(args, config)
    screen, gold_csv = load_screen(args, config)
    features = system_features(screen, config, encoder)
    proxy_scores = design_scores(screen, designs, features)
    golds = model_golds(screen, specs, args)
    if gold_csv is not None:
        golds.append(Gold(Path(args.gold_csv).stem, np.array([gold_csv[s.name] for s in screen.systems], dtype=float),
                          None))
    return report(args, config, screen, designs, features, proxy_scores, golds)


def all_designs(args: PrescreenArguments, config: RewardConfig) -> list[Design]:
    """The --designs by name, then one design per --features_module; names must differ."""
    designs = [parse_design(d, config) for d in args.designs]
    designs += [module_design(p, config) for p in args.features_module or []]
    names = [d.name for d in designs]
    if len(set(names)) != len(names):
        raise DataError(f"--designs/--features_module: a design name occurs twice ({', '.join(names)})")
    return designs


def load_screen(args: PrescreenArguments, config: RewardConfig) -> tuple[Screen, dict[str, float] | None]:
    """The annotated examples, every system's cleaned responses and cache folder (created), and the CSV gold."""
    examples = load_examples(args.annotations_path, require_qtype=True)
    found = find_systems(args.systems)
    gold_csv = read_gold_csv(args.gold_csv, [n for n, _ in found]) if args.gold_csv else None
    tokenizer = None
    if args.prompt_format in ("auto", "chat") and args.tokenizer_name:
        from transformers import AutoTokenizer

        with load_errors("tokenizer_name", args.tokenizer_name):
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name)
    stop_strings = resolve_prompt_format(args.prompt_format, tokenizer).stop_strings
    # Under `clean` every feature and the gold read the cut text, so it is cut once here; under `paper` the gold and
    # QR/RAR read the raw text and the reward cuts it for LI and RP itself.
    systems = [load_system(n, p, examples, stop_strings, cut_before_scoring(config)) for n, p in found]
    cache = Path(args.cache_dir) if args.cache_dir else Path(args.output_dir) / "cache"
    folder = {s.name: cache / f"{slug(s.name)}-{content_hash(str(s.path.resolve()))[:8]}" for s in systems}
    for f in folder.values():
        f.mkdir(parents=True, exist_ok=True)
    return Screen(examples, systems, folder, tuple(stop_strings)), gold_csv


def system_features(screen: Screen, config: RewardConfig,
                    encoder: RelevanceEncoder | None) -> dict[str, list[dict[str, float | None]]]:
    """Step 1: the features of every system's file with all four flags on (the encoder's work), once per file."""
    all_on = replace(config, **{flag: True for flag in FLAG_OF.values()})
    feature_tag = content_hash([asdict(all_on), encoder.name if encoder else None])[:12]
    scorer: list[ReversedEngineeredRewardForInference] = []  # built on first use: a cached re-run loads no encoder

    def features_of(s: System) -> list[dict[str, float | None]]:
        if not scorer:
            if config.response_postprocess == "clean":
                # Responses are cut already (load_screen), so the scorer does not cut them again.
                scorer.append(ReversedEngineeredRewardForInference(replace(all_on, do_strip=False), encoder=encoder))
            else:
                scorer.append(ReversedEngineeredRewardForInference(all_on, screen.stop_strings, encoder=encoder))
        _, feats = scorer[0].score_examples(screen.examples, s.responses, return_features=True, progress=False)
        return [numeric_features(f) for f in feats]

    return {s.name: cached_scores(screen.folder[s.name] / f"features-{feature_tag}.json", screen.inputs(s),
                                  lambda s=s: features_of(s))
            for s in tqdm(screen.systems, desc="features (per system)", unit="system")}


def design_scores(screen: Screen, designs: Sequence[Design],
                  features: dict[str, list[dict[str, float | None]]]) -> dict[str, np.ndarray]:
    """Step 2: every design's reward of every sample, (systems, instructions) per design, cached per (file, design)."""
    proxy_scores: dict[str, np.ndarray] = {}
    with tqdm(total=len(designs) * len(screen.systems), desc="designs (per system x design)", unit="score") as bar:
        for d in designs:
            rows = []
            for s in screen.systems:
                rows.append(cached_scores(
                    screen.folder[s.name] / f"design-{slug(d.name)}-{content_hash(d.ident)[:8]}.json",
                    [screen.inputs(s), d.ident],
                    lambda d=d, s=s: score_design(d, features[s.name], screen.examples, s.responses, s.name)))
                bar.update()
            proxy_scores[d.name] = np.array(rows, dtype=float)
    return proxy_scores


def model_golds(screen: Screen, specs: Sequence[GoldSpec], args: PrescreenArguments) -> list[Gold]:
    """Step 3: each gold model's score of every sample (cached; eval_monotonicity.py's scores are reused), one
    model in memory at a time."""
    golds: list[Gold] = []
    for spec in specs:
        loaded: list[Any] = []
        instructions = [getattr(e, spec.instruction_form) for e in screen.examples]

        def gold_scores(s: System, spec: GoldSpec = spec) -> list[float]:
            if not loaded:
                loaded.append(load_gold(spec, args.gold_batch_size, args.gold_device, args.trust_remote_code))
            return loaded[0].score(instructions, s.responses, progress=False)

        gold_matrix = np.array(
            [cached_scores(screen.folder[s.name] / f"gold-{spec.slug}.json", [instructions, s.responses],
                           lambda s=s: monotonicity_cache(s, spec, [instructions, s.responses]) or gold_scores(s))
             for s in tqdm(screen.systems, desc=f"gold {spec.short} (per system)", unit="system")],
            dtype=float)
        golds.append(Gold(spec.short, gold_matrix.mean(1), gold_matrix))
        loaded.clear()
    return golds


def gold_agreement(golds: Sequence[Gold]) -> dict[str, float | None]:
    """System-level Spearman of every pair of golds (printed: a ceiling for any design)."""
    agreement = {}
    for i, a in enumerate(golds):
        for b in golds[i + 1:]:
            rho = number(spearmanr(a.system_scores, b.system_scores).statistic)
            agreement[f"{a.name} vs {b.name}"] = rho
            print(f"gold agreement {a.name} vs {b.name}: system-level Spearman {rho if rho is None else round(rho, 3)} "
                  "(a ceiling for any design)")
    return agreement


def systems_feature_view(screen: Screen, designs: Sequence[Design], features: dict[str, list[dict]],
                         golds: Sequence[Gold]) -> dict[str, Any]:
    """The per-feature view across systems, per gold (a CSV gold's score stands for each of its system's samples),
    printed."""
    systems, examples = screen.systems, screen.examples
    extras = {s.name: module_features(designs, examples, s.responses, s.name) for s in systems}
    rows = [[{**f, **x} for f, x in zip(features[s.name], extras[s.name])] for s in systems]
    qtypes = [e.qtype or "unknown" for e in examples]
    views = {g.name: feature_view([s.name for s in systems], rows,
                                  g.per_sample if g.per_sample is not None else np.repeat(
                                      g.system_scores[:, None], len(examples), axis=1), qtypes) for g in golds}
    for name, view in views.items():
        print_feature_view(view, name, label_name="system")
    return views


def report(args: PrescreenArguments, config: RewardConfig, screen: Screen, designs: Sequence[Design],
           features: dict[str, list[dict]], proxy_scores: dict[str, np.ndarray], golds: list[Gold]) -> dict[str, Any]:
    """Statistics, the ranking, the gold agreement and the per-feature view: printed, written and plotted."""
    systems = screen.systems
    results = [{"design": d.name,
                "system_means": dict(zip([s.name for s in systems], proxy_scores[d.name].mean(1).tolist())),
                "golds": {g.name: design_stats(proxy_scores[d.name], g, args) for g in golds}} for d in designs]
    primary = golds[0].name
    ranked = sorted(results, key=lambda r: -(r["golds"][primary]["spearman"]["statistic"]
                                              if r["golds"][primary]["spearman"]["statistic"] is not None else -2))
    print_ranking(ranked, golds)
    agreement = gold_agreement(golds)
    views = systems_feature_view(screen, designs, features, golds)
    print(f"best design for gold {primary}: {ranked[0]['design']}; worst: {ranked[-1]['design']}")

    result = {"systems": {s.name: str(s.path) for s in systems}, "annotations_path": args.annotations_path,
              "n_instructions": len(screen.examples), "designs": [d.name for d in designs],
              "golds": {g.name: g.system_scores.tolist() for g in golds}, "gold_agreement": agreement,
              "ranking": ranked, "feature_view": views,
              "feature_tracking_best": {g: best_and_worst(v)[0] for g, v in views.items()},
              "reward_config": asdict(config), "prompt_format": args.prompt_format}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "prescreen.json", result)
    plot_ranking(ranked, golds, out / "prescreen.png")
    plot_feature_view(views, "features across systems, beside the gold", out / "prescreen_features.png",
                      xlabel="system")
    print(f"wrote {out / 'prescreen.json'}, {out / 'prescreen.png'} and {out / 'prescreen_features.png'}")
    return result


def monotonicity_cache(s: System, spec: GoldSpec, key_obj: Any) -> list[float] | None:
    """Gold scores eval_monotonicity.py left beside a checkpoint's outputs file, when they are of the same texts."""
    return stored_scores(s.path.parent / f"scores-gold-{spec.slug}.json", key_obj)


def score_design(design: Design, features: list[dict[str, float | None]], examples: list[Example],
                 responses: list[str], system: str) -> list[float]:
    """One (file, design) score list; a named function so that tests can count what is computed. An error of the
    design's own code names the system and design too."""
    try:
        return design_rewards(design, features, examples, responses)
    except DataError as err:
        raise DataError(f"system {system!r}, design {design.name}: {err}") from None


def parse_args(argv: Sequence[str] | None = None) -> tuple[PrescreenArguments, RewardConfig]:
    argv = merge_repeated_flags(sys.argv[1:] if argv is None else argv,
                                ("--gold_model", "--gold_type", "--gold_tokenizer", "--features_module", "--systems",
                                 "--designs"))
    return validation.parse_flags((PrescreenArguments, RewardConfig), argv, __doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, config = parse_args(argv)
    with exit_on_data_error():
        return run(args, config)


if __name__ == "__main__":
    main()
