"""The paper's check: as PPO against the white-box proxy goes on, do the proxy reward and a black-box gold reward
model rise together?

    python eval_monotonicity.py --output_dir=. --model_prefix=alpaca_test

For the paper's steps 500, 1000, ..., 5000 (`--steps` for others; `--all_steps` for every
`{output_dir}/{model_prefix}_step_N` folder that is a complete checkpoint or holds evaluation.py's outputs,
checkpoints.list_checkpoints: a killed save is never taken for one), the AlpacaEval
outputs that evaluation.py wrote are joined with the eval set (qtype, reference) and scored by the proxy (the
same RewardConfig flags as training, all on by default) and by the gold model (Starling-RM-34B by default). The
result is the Spearman correlation of the per-checkpoint means, printed as scipy returns it, with Kendall's tau
and a bootstrap 95% interval over instructions. The gold model also judges each checkpoint against the eval
set's reference answers: an offline win rate computed with alpaca_eval's own metric.

Scores are cached beside each outputs file (`scores-proxy-{config hash}.json`, `scores-gold-{model}.json`), keyed
by a hash of exactly what was scored, so adding one checkpoint only scores that one, and no model is loaded
when everything is cached.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr

from reward_model import (ReversedEngineeredRewardForInference, RewardConfig, check_reward_flags, cut_before_scoring,
                          resolve_rar_max_dot)
from rre import paper_data, validation
from rre.checkpoints import PAPER_STEPS, find_outputs_file, is_complete, list_checkpoints
from rre.cutoff import CUT_FIELD, cut_flags, fallback_note, split_by_cut
from rre.data import Example, join_outputs, load_examples, load_outputs
from rre.files import (
    adapter_base_model,
    check_outputs_in,
    content_hash,
    json_object_with,
    png_file,
    read_text,
    save_figure,
    write_json,
)
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.feature_view import best_and_worst, feature_view, numeric_features, plot_feature_view, print_feature_view
from rre.features import check_features_module, load_features_module
from rre.gold import GoldArguments, GoldSpec, check_gold_flags, gold_specs_from_flags, load_gold
from rre.prompts import PROMPT_FORMATS, clean_response, resolve_prompt_format
from rre.proxy_settings import PROXY_FLAGS, ScoringProxy, find_run_proxy, scoring_proxy
from rre.relevance import RelevanceEncoder
from rre.score_cache import cached_scores
from rre.stats import bootstrap_spearman, correlation, number
from rre.validation import given_flags, merge_repeated_flags


@dataclass
class MonotonicityArguments(GoldArguments):
    output_dir: str = field(default=".", metadata={"help": "folder holding the {model_prefix}_step_N checkpoints"})
    model_prefix: str = field(default="alpaca_test", metadata={"help": "experiment name of the checkpoints"})
    steps: list[int] = field(default_factory=lambda: list(PAPER_STEPS), metadata={
        "help": "steps to check (default: the paper's 500 1000 ... 5000); a listed step without its folder is an error"})
    all_steps: bool = field(default=False, metadata={
        "help": "every {model_prefix}_step_N folder found (a complete checkpoint or evaluation.py's outputs) instead "
                "of --steps"})
    eval_path: str = field(default=paper_data.PAPER_EVAL_PATH, metadata={
        "help": "annotated eval set (default: the paper's data/alpaca_eval.json, relative as in its code: "
                "bash scripts/get_paper_data.sh; data/eval.json is the 30-instruction offline set)"})
    gold_model: list[str] = field(
        default_factory=lambda: ["Nexusflow/Starling-RM-34B"],
        metadata={"help": "gold reward model; repeat the flag (or list several) for several golds: the first one "
                  "judges the win rate, every one gets its Spearman, table column and plot line"})
    prompt_format: str = field(
        default="auto",
        metadata={"help": "prompt format whose stop strings cut responses (as evaluation.py: auto = chat when the "
                  "policy tokenizer has a chat template)"},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "policy tokenizer for the chat stop strings and for counting answer tokens (default: the "
                  "checkpoint's own, else its base)"},
    )
    max_new_tokens: int = field(
        default=512, metadata={"help": "answer token cap the outputs were generated with (evaluation.py's "
                               "--max_new_tokens); only for outputs files without the 'truncated' field, where an "
                               "answer counts as cut when its token count reaches it"})
    win_rate: bool = field(default=True, metadata={"help": "offline win rate: gold(model) vs gold(reference)"})
    features_module: str | None = field(
        default=None, metadata={"help": "features module of the proxy (EXTRA_FEATURES, combine): its features join the "
                                "per-feature view and its combine rule is the proxy (default: the one the run trained with)"}
    )
    include_base: bool = field(
        default=False, metadata={"help": "add the base (SFT) model's outputs as step 0 (see --base_outputs)"})
    base_outputs: str | None = field(
        default=None, metadata={"help": "folder holding the base model's alpaca-eval-*.json "
                                "(default: {output_dir}/{model_prefix}_base)"})
    # Flags of the paper's script, accepted so its command runs as written.
    cache_dir: str | None = field(default=None, metadata={"help": "the paper's flag; no effect (set HF_HOME)"})
    device: str | None = field(default=None, metadata={"help": "the paper's flag: the gold model's device (--gold_device)"})


# ---------------------------------------------------------------------------------------------------------
# Finding the checkpoints and what the reward models read.


@dataclass
class Checkpoint:
    step: int
    folder: Path
    outputs_path: Path
    examples: list[Example]  # the annotated example of each output, in the outputs file's order
    responses: list[str]
    records: list[dict[str, Any]]  # the outputs file's records, in the same order (their cut flags: rre.cutoff)


def evaluated(folder: Path) -> bool:
    """A step folder this check can use: a complete checkpoint, or one holding the outputs evaluation.py wrote
    (the adapter itself is never read here, so outputs kept after the adapter was deleted still count)."""
    return is_complete(folder) or any(folder.glob("alpaca-eval-*.json"))


def find_checkpoints(output_dir: str | Path, prefix: str, steps: Sequence[int] | None) -> list[tuple[int, Path]]:
    root = Path(output_dir)
    found = list_checkpoints(root / prefix, list(steps) if steps else None, accept=evaluated)
    if steps:
        missing = [str(root / f"{prefix}_step_{s}") for s in sorted(set(steps) - {n for n, _ in found})]
        if missing:
            raise DataError(f"--steps: checkpoint folder(s) not found (or holding neither an adapter nor outputs): "
                            f"{', '.join(missing)} (--steps N ... for other steps, --all_steps for every one found)")
    if len(found) < 2:
        raise DataError(f"--output_dir {root}: found {len(found)} {prefix}_step_N folder(s) (a checkpoint or its "
                        "outputs); a correlation needs at least 2")
    return found


def load_checkpoints(found: list[tuple[int, Path]], examples: list[Example], stop_strings: Sequence[str],
                     do_strip: bool) -> list[Checkpoint]:
    """Outputs of every checkpoint joined with the eval set. Every checkpoint must answer the same instructions
    (the bootstrap resamples instructions across checkpoints). With `do_strip` (true under
    `--response_postprocess clean`) responses are cut here, so every feature and the gold judge the cut text;
    otherwise the gold reads them as written and the proxy cuts them for LI and RP itself, as the paper's check."""
    position = {id(ex): k for k, ex in enumerate(examples)}  # join_outputs returns these very objects
    checkpoints = []
    for step, folder in found:
        path = find_outputs_file(folder)
        outputs = load_outputs(path)
        joined = join_outputs(outputs, examples, path)
        responses = [clean_response(o["output"], tuple(stop_strings)) if do_strip else o["output"] for o in outputs]
        # One fixed order (the eval set's) for every checkpoint, so column j is the same instruction everywhere.
        order = sorted(range(len(joined)), key=lambda i: position[id(joined[i])])
        checkpoints.append(Checkpoint(step, folder, path, [joined[i] for i in order], [responses[i] for i in order],
                                      [outputs[i] for i in order]))
    first = checkpoints[0]
    for ck in checkpoints[1:]:
        if [e.seed_input for e in ck.examples] != [e.seed_input for e in first.examples]:
            raise DataError(f"{ck.outputs_path}: answers other instructions than {first.outputs_path}; "
                            "every checkpoint must answer the same eval set")
    return checkpoints


def policy_tokenizer_source(args: MonotonicityArguments, checkpoint: Path) -> str | None:
    """Where the policy tokenizer is, found as evaluation.py finds it: --tokenizer_name, the adapter folder's own,
    else the adapter's base model (None when none is named)."""
    source = args.tokenizer_name
    if source is None and (checkpoint / "tokenizer_config.json").is_file():
        source = str(checkpoint)
    if source is None and (checkpoint / "adapter_config.json").is_file():
        source = adapter_base_model(checkpoint, required=False)
    return source


def resolve_stop_strings(args: MonotonicityArguments, first_checkpoint: Path) -> tuple[str, tuple[str, ...]]:
    """The prompt format evaluation.py used: `auto` resolves against the policy tokenizer, found as
    evaluation.py finds it (the adapter folder's own, else the adapter's base model)."""
    tokenizer = None
    if args.prompt_format in ("auto", "chat"):
        source = policy_tokenizer_source(args, first_checkpoint)
        if source is None and args.prompt_format == "chat":
            raise DataError("--prompt_format=chat: no tokenizer found; pass --tokenizer_name")
        if source is not None:
            from transformers import AutoTokenizer

            flag = "tokenizer_name" if args.tokenizer_name else "the policy tokenizer"
            with load_errors(flag, source, "the chat stop strings need it; pass --tokenizer_name or --prompt_format"):
                tokenizer = AutoTokenizer.from_pretrained(source)
    fmt = resolve_prompt_format(args.prompt_format, tokenizer)
    return fmt.name, fmt.stop_strings


# ---------------------------------------------------------------------------------------------------------
# Cached scoring.


class LazyScorers:
    """The proxy and the gold model, each loaded on first use: a fully cached re-run loads neither."""

    def __init__(self, args: MonotonicityArguments, config: RewardConfig, stop_strings: Sequence[str],
                 encoder: RelevanceEncoder | None = None, extra_features: dict | None = None,
                 combine: Callable | None = None):
        self.args, self.config, self.stop_strings, self.encoder = args, config, tuple(stop_strings), encoder
        self.extra_features, self.combine = extra_features, combine
        self._proxy: ReversedEngineeredRewardForInference | None = None
        self._golds: dict[GoldSpec, Any] = {}

    @property
    def proxy(self) -> ReversedEngineeredRewardForInference:
        if self._proxy is None:
            self._proxy = ReversedEngineeredRewardForInference(self.config, stop_strings=self.stop_strings,
                                                               extra_features=self.extra_features,
                                                               combine=self.combine, encoder=self.encoder)
        return self._proxy

    def gold(self, spec: GoldSpec):
        """The gold model of `spec`; one loaded at a time, so several 34B golds do not share memory."""
        if spec not in self._golds:
            self._golds.clear()
            a = self.args
            self._golds[spec] = load_gold(spec, a.gold_batch_size, a.gold_device, a.trust_remote_code)
        return self._golds[spec]


def resolve_proxy(args: MonotonicityArguments, config: RewardConfig, explicit: set[str],
                  found: list[tuple[int, Path]], encoder: RelevanceEncoder | None = None) -> ScoringProxy:
    """The proxy the checkpoints were trained with (their training_config.json), explicit flags overriding it;
    `rar_max_dot auto` (no trained value, no flag) made a number from the encoder."""
    settings, source = find_run_proxy(Path(args.output_dir) / args.model_prefix, [p for _, p in found])
    if settings is None:
        print("proxy: no training_config.json with proxy settings found beside the checkpoints; "
              "built from the flags")
    else:
        print(f"proxy: as trained, from {source}")
    proxy = scoring_proxy(settings, source, config, explicit, args.features_module,
                          lambda: resolve_stop_strings(args, found[0][1]))
    for line in proxy.notes:
        print(line)
    for line in proxy.overrides:
        print(f"proxy override: {line}")
    if encoder is None:
        check_reward_flags(proxy.config)  # the encoder the check will load: offline and not cached stops here
    proxy.config = resolve_rar_max_dot(proxy.config, encoder)
    return proxy


def checkpoint_cut_flags(args: MonotonicityArguments, checkpoints: list[Checkpoint]) -> list[list[bool] | None]:
    """Per checkpoint, whether each answer was cut at the token cap: the outputs file's own field, else (an older
    file) its token count under the policy tokenizer reached --max_new_tokens, said in one line."""
    tokenizers: dict[str, Any] = {}

    def counter(ck: Checkpoint) -> Callable[[list[str]], list[int]] | None:
        source = policy_tokenizer_source(args, ck.folder)
        if source is None:
            return None
        if source not in tokenizers:
            from transformers import AutoTokenizer

            with load_errors("tokenizer_name", source, "counting answer tokens needs it; pass --tokenizer_name"):
                tokenizers[source] = AutoTokenizer.from_pretrained(source)
        tok = tokenizers[source]
        return lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    out, fell_back, total, files = [], 0, 0, 0
    for ck in checkpoints:
        missing = sum(not isinstance(r.get(CUT_FIELD), bool) for r in ck.records)
        flags, n_fallback = cut_flags(ck.records, args.max_new_tokens, counter(ck) if missing else None)
        fell_back, total, files = fell_back + n_fallback, total + len(ck.records), files + bool(n_fallback)
        out.append(flags)
    if fell_back:
        known = all(flags is not None for flags in out)
        print(fallback_note(fell_back, total, f"{files} outputs file(s)", args.max_new_tokens if known else None))
    return out


def score_checkpoint(ck: Checkpoint, scorers: LazyScorers, proxy_tag: str) -> list[dict[str, float | None]]:
    """Per-sample proxy features (the reward among them), cached beside the outputs file."""
    proxy_inputs = [[e.query, r, e.reference, e.qtype] for e, r in zip(ck.examples, ck.responses)]

    def proxy_features() -> list[dict[str, float | None]]:
        _, features = scorers.proxy.score_examples(ck.examples, ck.responses, return_features=True,
                                                   desc=f"proxy step {ck.step}")
        return [numeric_features(f) for f in features]

    return cached_scores(ck.folder / f"scores-proxy-{proxy_tag}.json", proxy_inputs, proxy_features)


def score_gold(ck: Checkpoint, scorers: LazyScorers, spec: GoldSpec) -> list[float]:
    instructions = [getattr(e, spec.instruction_form) for e in ck.examples]
    return cached_scores(
        ck.folder / f"scores-gold-{spec.slug}.json", [instructions, ck.responses],
        lambda: scorers.gold(spec).score(instructions, ck.responses, desc=f"gold {spec.short} step {ck.step}"),
    )


# ---------------------------------------------------------------------------------------------------------
# Statistics.


def offline_win_rate(model_scores: Sequence[float], reference_scores: Sequence[float]) -> dict[str, float]:
    """Win rate against the reference answers, judged by the gold model, with alpaca_eval's own metric.

    alpaca_eval's preference convention: 1 = the reference (its "base") is better, 2 = the model is better,
    1.5 = tie; `get_winrate` reports the mean of (preference - 1) x 100, so a tie counts half."""
    with warnings.catch_warnings():  # alpaca_eval imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import get_winrate

    preferences = [2.0 if m > r else 1.0 if m < r else 1.5 for m, r in zip(model_scores, reference_scores)]
    metrics = get_winrate([{"preference": p} for p in preferences])
    return {k: float(v) for k, v in metrics.items()}


def print_table(rows: list[dict[str, Any]], qtypes: list[str], with_win_rate: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="proxy vs gold reward per checkpoint (mean; gold of cut answers, stopped at the token cap, "
                        "and of finished ones; per qtype: OPEN = OPENENDED, CONS = CONSTRAINED)")
    for col in ["step", "n", "proxy", "gold", "cut %", "gold cut", "gold fin"] + [
            f"{k} {q[:4]}" for q in qtypes for k in ("proxy", "gold")] + (["win rate %"] if with_win_rate else []):
        table.add_column(col, justify="right")

    def f(x: float | None, fmt: str = ".4f") -> str:
        return "n/a" if x is None else format(x, fmt)

    for r in rows:
        split = r.get("cut") or {}
        share = split.get("share_cut")
        cells = [str(r["step"]), str(r["n"]), f"{r['mean_proxy']:.4f}", f"{r['mean_gold']:.4f}",
                 f(None if share is None else 100 * share, ".1f"), f(split.get("mean_cut")),
                 f(split.get("mean_finished"))]
        for q in qtypes:
            cells += [f"{r['per_qtype'][q]['proxy']:.4f}", f"{r['per_qtype'][q]['gold']:.4f}"]
        if with_win_rate:
            cells.append(f"{r['win_rate']['win_rate']:.1f}")
        table.add_row(*cells)
    Console().print(table)


def plot(steps: list[int], proxy: list[float], gold: list[float], title: str, path: Path, gold_name: str = "gold",
         extra_golds: dict[str, list[float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(steps, proxy, "o-", color="tab:blue", label="proxy (white-box)")
    ax1.set_xlabel("PPO step")
    ax1.set_ylabel("mean proxy reward", color="tab:blue")
    ax2 = ax1.twinx()  # the two rewards live on different scales
    ax2.plot(steps, gold, "s--", color="tab:red", label=f"gold {gold_name}" if extra_golds else "gold")
    for (name, means), color in zip((extra_golds or {}).items(), ["tab:orange", "tab:purple", "tab:brown", "tab:gray"] * 4):
        ax3 = ax1.twinx()  # each gold on its own scale; only the first gets a labelled axis
        ax3.plot(steps, means, "^:", color=color, label=f"gold {name}")
        ax3.set_yticks([])
    ax2.set_ylabel("mean gold reward", color="tab:red")
    ax1.set_title(title)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.85))
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------


def check_args(args: MonotonicityArguments, config: RewardConfig) -> None:
    """Flags, files and models named on the command line, before anything is read, scored or loaded."""
    validation.finite_flags(args)
    validation.range_flags(args)
    validation.input_folder("output_dir", args.output_dir)
    validation.output_folder("output_dir", args.output_dir, must_exist=True)  # monotonicity.json goes there
    paper_data.eval_file("eval_path", args.eval_path)
    validation.input_data("eval_path", args.eval_path)
    if not args.gold_model:
        raise DataError("--gold_model: give at least one gold reward model")
    check_gold_flags(args)
    validation.one_of("prompt_format", args.prompt_format, ("auto", *PROMPT_FORMATS))
    if args.tokenizer_name:
        validation.model("tokenizer_name", args.tokenizer_name, marker="tokenizer_config.json")
    if args.features_module:
        check_features_module("features_module", args.features_module)
    if args.base_outputs:
        validation.input_folder("base_outputs", args.base_outputs)
        validation.note_without(["base_outputs"], "--include_base", args.include_base)
    if args.all_steps and args.steps != list(PAPER_STEPS):
        raise DataError("--steps with --all_steps: give one (--all_steps takes every step found)")
    check_reward_flags(config, check_encoder=False)  # the encoder once the run's proxy is known (resolve_proxy)
    check_outputs(args)


OUTPUT_FILES = {"monotonicity.json": (json_object_with("checkpoints", "spearman"), "a monotonicity result"),
                "monotonicity.png": (png_file, "a figure"), "monotonicity_features.png": (png_file, "a figure")}


def check_outputs(args: MonotonicityArguments) -> None:
    """What the check writes beside the checkpoints is none of its inputs, and replaces only its own files."""
    inputs = {"eval_path": args.eval_path, "features_module": args.features_module,
              "base_outputs": args.base_outputs, **{f"gold_model {g}": g for g in args.gold_model}}
    check_outputs_in("output_dir", args.output_dir, OUTPUT_FILES, inputs)


def run(args: MonotonicityArguments, config: RewardConfig, encoder: RelevanceEncoder | None = None,
        explicit: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The whole check; `encoder` reuses an already loaded relevance encoder (notebooks, tests). The proxy is the
    one the run trained with (its training_config.json); the `explicit` flags of `config`/`args` override it."""
    check_args(args, config)
    if args.device:
        args.gold_device = args.device
    golds = gold_specs_from_flags(args, args.gold_model)
    proxy, checkpoints = load_run(args, config, set(explicit), encoder)
    scorers = proxy_scorers(args, proxy, encoder)
    tag = proxy_tag(proxy, encoder)
    feature_rows = [score_checkpoint(ck, scorers, tag) for ck in checkpoints]
    proxy_scores = np.array([[f["reward"] for f in row] for row in feature_rows], dtype=float)  # (steps, instructions)
    gold_matrices, reference_scores = gold_scores(args, golds, checkpoints, scorers)
    cut = checkpoint_cut_flags(args, checkpoints)
    rows, qtypes = step_rows(checkpoints, proxy_scores, golds, gold_matrices, reference_scores, cut)
    stats = print_statistics(rows, qtypes, proxy_scores, gold_matrices[0], args, reference_scores is not None)
    several = golds_summary(golds, gold_matrices, proxy_scores, args) if len(golds) > 1 else None
    # Which feature drove the gold, per gold.
    example_qtypes = [e.qtype or "unknown" for e in checkpoints[0].examples]
    views = {spec.short: feature_view([r["step"] for r in rows], feature_rows, gold_matrix, example_qtypes)
             for spec, gold_matrix in zip(golds, gold_matrices)}
    for name, view in views.items():
        print_feature_view(view, name)
    return write_outputs(args, proxy, golds, gold_matrices, rows, stats, several, views)


def load_run(args: MonotonicityArguments, config: RewardConfig,
             explicit: set[str], encoder: RelevanceEncoder | None = None) -> tuple[ScoringProxy, list[Checkpoint]]:
    """The checkpoints (the base model's outputs first with --include_base) and the proxy they trained with."""
    found = find_checkpoints(args.output_dir, args.model_prefix, None if args.all_steps else args.steps)
    proxy = resolve_proxy(args, config, explicit, found, encoder)
    examples = load_examples(args.eval_path, require_qtype=proxy.config.needs_qtype)
    if args.include_base:
        found = [base_checkpoint(args, found)] + found
    return proxy, load_checkpoints(found, examples, proxy.stop_strings, cut_before_scoring(proxy.config))


def proxy_scorers(args: MonotonicityArguments, proxy: ScoringProxy, encoder: RelevanceEncoder | None) -> LazyScorers:
    """The proxy (its features module imported now: a broken one stops here) and the golds, loaded on first use."""
    extra_features, combine = (load_features_module(proxy.features_module) if proxy.features_module
                               else ({}, None))
    return LazyScorers(args, proxy.config, proxy.stop_strings, encoder, extra_features, combine)


def proxy_tag(proxy: ScoringProxy, encoder: RelevanceEncoder | None) -> str:
    """Everything that changes a proxy score names its cache: the reward flags, the stop strings, the encoder, the
    features module's code; "features" marks the cache format (every per-sample feature, not only the reward)."""
    module_code = read_text(proxy.features_module, "--features_module") if proxy.features_module else None
    return content_hash([asdict(proxy.config), list(proxy.stop_strings), encoder.name if encoder else None,
                         module_code, "features"])[:12]


def gold_scores(args: MonotonicityArguments, golds: Sequence[GoldSpec], checkpoints: list[Checkpoint],
                scorers: LazyScorers) -> tuple[list[np.ndarray], list[float] | None]:
    """(steps, instructions) scores per gold, and the primary gold's scores of the reference answers (win rate).
    Gold by gold, so only one gold model is in memory at a time; the first one (the primary gold: win rate and
    the paper's printed statistic) also judges the reference answers while it is loaded."""
    gold_matrices, reference_scores = [], None
    for g, spec in enumerate(golds):
        gold_matrices.append(np.array([score_gold(ck, scorers, spec) for ck in checkpoints], dtype=float))
        if g == 0 and args.win_rate:
            refs = checkpoints[0].examples
            instructions = [getattr(e, spec.instruction_form) for e in refs]
            references = [e.reference for e in refs]
            reference_scores = cached_scores(
                Path(args.output_dir) / f"scores-gold-{spec.slug}-references.json", [instructions, references],
                lambda: scorers.gold(spec).score(instructions, references, desc="gold references"),
            )
    return gold_matrices, reference_scores


def spread(values: np.ndarray) -> float | None:
    """The SD over instructions (ddof 1) of one checkpoint's scores: with n, the noise band of its mean."""
    return float(values.std(ddof=1)) if len(values) > 1 else None


def step_rows(checkpoints: list[Checkpoint], proxy_scores: np.ndarray, golds: Sequence[GoldSpec],
              gold_matrices: list[np.ndarray], reference_scores: list[float] | None,
              cut: Sequence[list[bool] | None] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per checkpoint: mean proxy and gold, overall and per qtype, the offline win rate, and each gold
    split by cut vs finished answers (rre.cutoff.split_by_cut; None where the flags are unknown)."""
    primary_gold = gold_matrices[0]
    qtypes = sorted({e.qtype or "unknown" for e in checkpoints[0].examples})
    rows = []
    for k, ck in enumerate(checkpoints):
        row: dict[str, Any] = {"step": ck.step, "folder": str(ck.folder), "outputs": str(ck.outputs_path),
                               "n": len(ck.responses), "mean_proxy": float(proxy_scores[k].mean()),
                               "mean_gold": float(primary_gold[k].mean()),
                               "sd_proxy": spread(proxy_scores[k]), "sd_gold": spread(primary_gold[k]), "per_qtype": {}}
        if len(golds) > 1:
            row["mean_golds"] = {spec.short: float(matrix[k].mean()) for spec, matrix in zip(golds, gold_matrices)}
        flags = cut[k] if cut is not None else None
        row["cut"] = split_by_cut(primary_gold[k].tolist(), flags) if flags is not None else None
        if len(golds) > 1:
            row["cut_golds"] = {spec.short: split_by_cut(gold_matrix[k].tolist(), flags) if flags is not None else None
                                for spec, gold_matrix in zip(golds, gold_matrices)}
        for q in qtypes:
            cols = [j for j, e in enumerate(ck.examples) if (e.qtype or "unknown") == q]
            row["per_qtype"][q] = {"n": len(cols), "proxy": float(proxy_scores[k, cols].mean()),
                                   "gold": float(primary_gold[k, cols].mean())}
        if reference_scores is not None:
            row["win_rate"] = offline_win_rate(primary_gold[k].tolist(), reference_scores)
        rows.append(row)
    return rows, qtypes


def print_statistics(rows: list[dict[str, Any]], qtypes: list[str], proxy_scores: np.ndarray, primary_gold: np.ndarray,
                     args: MonotonicityArguments, with_win_rate: bool) -> dict[str, Any]:
    """The table, the paper's Spearman (as scipy prints it), Kendall, the bootstrap interval and the win rates."""
    steps_mean_proxy = [r["mean_proxy"] for r in rows]
    steps_mean_gold = [r["mean_gold"] for r in rows]
    print_table(rows, qtypes, with_win_rate)
    spearman = spearmanr(steps_mean_proxy, steps_mean_gold)
    print(spearman)  # exactly as scipy returns it, as the paper's script prints it
    kendall = kendalltau(steps_mean_proxy, steps_mean_gold)
    print(kendall)
    boot = bootstrap_spearman(proxy_scores, primary_gold, args.bootstrap_samples, args.bootstrap_seed)
    lo, hi = boot["ci95"]
    print(f"bootstrap 95% CI of Spearman over instructions ({boot['n_valid']}/{boot['n_resamples']} resamples): "
          + (f"[{lo:.3f}, {hi:.3f}]" if lo is not None else "undefined"))
    if with_win_rate:
        for r in rows:
            w = r["win_rate"]
            print(f"step {r['step']}: offline win rate vs reference {w['win_rate']:.1f}% "
                  f"(+/- {w['standard_error']:.1f}; {w['n_wins']:.0f} wins, {w['n_draws']:.0f} draws, "
                  f"{w['n_wins_base']:.0f} losses)")
    return {"spearman": spearman, "kendall": kendall, "bootstrap": boot}


def write_outputs(args: MonotonicityArguments, proxy: ScoringProxy, golds: Sequence[GoldSpec],
                  gold_matrices: list[np.ndarray], rows: list[dict[str, Any]], stats: dict[str, Any],
                  several: list[dict[str, Any]] | None, views: dict[str, Any]) -> dict[str, Any]:
    """monotonicity.json, the curve and the per-feature plot."""
    steps = [r["step"] for r in rows]
    steps_mean_proxy = [r["mean_proxy"] for r in rows]
    steps_mean_gold = [r["mean_gold"] for r in rows]
    spearman, kendall = stats["spearman"], stats["kendall"]
    result = {
        "model_prefix": args.model_prefix, "steps": steps, "steps_mean_proxy": steps_mean_proxy,
        "steps_mean_gold": steps_mean_gold, "checkpoints": rows,
        "spearman": correlation(spearman), "kendall": correlation(kendall),
        "bootstrap": stats["bootstrap"], "gold_model": golds[0].model, "gold_type": golds[0].type,
        "gold_prompt": golds[0].prompt if golds[0].type == "starling" else None,
        "prompt_format": proxy.prompt_format, "reward_config": asdict(proxy.config), "proxy": proxy.record(),
        "eval_path": args.eval_path,
        "include_base": args.include_base, "features_module": proxy.features_module,
        "feature_view": views, "feature_tracking_best": {g: best_and_worst(v)[0] for g, v in views.items()},
        "feature_diverging_most": {g: best_and_worst(v)[1] for g, v in views.items()},
    }
    if several is not None:
        result["golds"] = several
    out = Path(args.output_dir)
    write_json(out / "monotonicity.json", result)
    title = f"{args.model_prefix}: Spearman {spearman.statistic:.2f}, Kendall {kendall.statistic:.2f}"
    extra_golds = {spec.short: gold_matrix.mean(1).tolist() for spec, gold_matrix in zip(golds[1:], gold_matrices[1:])}
    plot(steps, steps_mean_proxy, steps_mean_gold, title, out / "monotonicity.png", golds[0].short, extra_golds)
    plot_feature_view(views, f"{args.model_prefix}: each feature beside the gold", out / "monotonicity_features.png")
    print(f"wrote {out / 'monotonicity.json'}, {out / 'monotonicity.png'} and {out / 'monotonicity_features.png'}")
    return result


def base_checkpoint(args: MonotonicityArguments, found: list[tuple[int, Path]]) -> tuple[int, Path]:
    """`--include_base`: the base (SFT) model's outputs as step 0, so the curve starts where training started."""
    folder = Path(args.base_outputs) if args.base_outputs else Path(args.output_dir) / f"{args.model_prefix}_base"
    if not folder.is_dir():
        raise DataError(f"--include_base: {folder} not found; answer the eval set with the base model first "
                        f"(evaluation.py --base_model_name=... --output_dir={folder}) or pass --base_outputs")
    if any(step == 0 for step, _ in found):
        raise DataError(f"--include_base: {args.model_prefix}_step_0 exists already; it would be step 0 twice")
    return 0, folder


def golds_summary(golds: Sequence[GoldSpec], matrices: Sequence[np.ndarray], proxy_scores: np.ndarray,
                  args: MonotonicityArguments) -> list[dict[str, Any]]:
    """Each gold's own Spearman/Kendall with the proxy, and how far the golds agree with each other: the proxy can
    hardly track "the" gold better than two golds track each other."""
    proxy_means = proxy_scores.mean(1)
    out = []
    print("several golds (the first judges the win rate):")
    for spec, gold_matrix in zip(golds, matrices):
        s, k = spearmanr(proxy_means, gold_matrix.mean(1)), kendalltau(proxy_means, gold_matrix.mean(1))
        boot = bootstrap_spearman(proxy_scores, gold_matrix, args.bootstrap_samples, args.bootstrap_seed)
        out.append({"gold_model": spec.model, "gold_type": spec.type, "steps_mean_gold": gold_matrix.mean(1).tolist(),
                    "spearman": correlation(s), "kendall": correlation(k), "bootstrap": boot,
                    "agreement": {}})
        print(f"  proxy vs {spec.short}: Spearman {s.statistic:.3f} (p={s.pvalue:.3f}), Kendall {k.statistic:.3f}")
    for i, (a, A) in enumerate(zip(golds, matrices)):
        for b, B in list(zip(golds, matrices))[i + 1:]:
            across = spearmanr(A.mean(1), B.mean(1)).statistic
            within = float(np.nanmean([spearmanr(A[r], B[r]).statistic for r in range(A.shape[0])]))
            out[i]["agreement"][b.model] = {"spearman_of_means": number(across), "mean_per_sample_spearman": number(within)}
            print(f"  gold agreement {a.short} vs {b.short}: Spearman of means {across:.3f}, "
                  f"mean per-sample Spearman {within:.3f} (a ceiling for any proxy)")
    return out


def parse_args(argv: Sequence[str] | None = None) -> tuple[MonotonicityArguments, RewardConfig]:
    argv = merge_repeated_flags(sys.argv[1:] if argv is None else argv, ("--gold_model", "--gold_type", "--gold_tokenizer"))
    return validation.parse_flags((MonotonicityArguments, RewardConfig), argv, __doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    args, config = parse_args(argv)
    if given_flags(argv, ["cache_dir"]):
        print("note: --cache_dir has no effect here: models load from the Hugging Face cache (HF_HOME) or a folder",
              file=sys.stderr)
    with exit_on_data_error():
        return run(args, config, explicit=given_flags(argv, PROXY_FLAGS))


if __name__ == "__main__":
    main()
