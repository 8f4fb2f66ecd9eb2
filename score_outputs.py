"""Score an outputs file with the white-box proxy reward and summarise every feature by qtype.

This is the feature-design loop: edit a feature (or write one in a small Python file passed with
`--features_module`), re-score existing outputs in seconds, and see which feature moved.

    python score_outputs.py --outputs_path runs/quickstart/policy_step_4/alpaca-eval-policy_step_4.json \
        --annotations_path data/eval.json --features_module examples/my_features.py

`--outputs_path` is an alpaca_eval-style list of {instruction, output}; it is joined with the annotated
instruction file (qtype, reference answer) by instruction. Without `--outputs_path`, the annotated file's own
reference answers are scored, which is a quick look at what the reward thinks of good answers.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from reward_model import ReversedEngineeredRewardForInference, RewardConfig, check_reward_flags
from rre import validation
from rre.data import Example, join_outputs, load_examples, load_outputs
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.features import load_features_module
from rre.files import check_output_file, json_rows_with, refuse_inputs, write_json
from rre.offline_models import smollm2_path
from rre.prompts import PROMPT_FORMATS, resolve_prompt_format
from rre.proxy_settings import PROXY_FLAGS, TRAINING_CONFIG, ScoringProxy, read_proxy, scoring_proxy
from rre.validation import given_flags

FEATURE_COLUMNS = ("LI", "RP", "QR", "RAR")
SAVED_KEYS = ("instruction", "output", "reward")  # every row of --save_path holds these


@dataclass
class ScoreArguments:
    annotations_path: str = field(default="data/eval.json", metadata={"help": "instructions with qtype and reference"})
    outputs_path: str | None = field(default=None, metadata={"help": "alpaca_eval-style outputs to score"})
    prompt_format: str = field(default="alpaca", metadata={"help": f"one of {PROMPT_FORMATS}: sets the role markers to cut at"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer whose chat template gives the markers (chat format)"})
    features_module: str | None = field(
        default=None, metadata={"help": "Python file defining EXTRA_FEATURES = {name: fn(sample)} and optionally combine(f)"}
    )
    save_path: str | None = field(default=None, metadata={"help": "write per-sample rewards and features here (JSON)"})
    batch_size: int = field(default=256, metadata={"help": "samples per reward call"})
    run_dir: str | None = field(
        default=None,
        metadata={"help": "a training run folder or checkpoint holding training_config.json: score with exactly the "
                  "proxy it trained with (reward flags, stop strings, features module); flags given override it"},
    )


def summarize(features: list[dict], extra: list[str]) -> list[tuple[str, int, dict[str, float]]]:
    """Mean of each feature and of the reward per qtype (NaN-free: features not computed are left out)."""
    rows = []
    groups = sorted({f["qtype"] for f in features}, key=str) + ["all"]
    for group in groups:
        members = [f for f in features if group == "all" or f["qtype"] == group]
        means = {}
        for col in (*FEATURE_COLUMNS, *extra, "reward"):
            values = [float(f[col]) for f in members if not (isinstance(f[col], float) and math.isnan(f[col]))]
            means[col] = statistics.fmean(values) if values else math.nan
        rows.append((str(group), len(members), means))
    return rows


def print_summary(rows, extra: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("qtype", "n", *FEATURE_COLUMNS, *extra, "reward"):
        table.add_column(col, justify="left" if col == "qtype" else "right")
    for group, n, means in rows:
        table.add_row(group, str(n), *(f"{means[c]:.3f}" for c in (*FEATURE_COLUMNS, *extra, "reward")))
    Console().print(table)


def check_args(args: ScoreArguments) -> None:
    """The script's own flags and files, before anything is read or scored."""
    validation.finite_flags(args)
    validation.range_flags(args)
    validation.one_of("prompt_format", args.prompt_format, PROMPT_FORMATS)
    validation.input_data("annotations_path", args.annotations_path)
    if args.outputs_path:
        validation.input_data("outputs_path", args.outputs_path)
    if args.save_path:
        validation.output_file("save_path", args.save_path)
        inputs = {"annotations_path": args.annotations_path, "outputs_path": args.outputs_path,
                  "features_module": args.features_module,
                  "run_dir": Path(args.run_dir) / TRAINING_CONFIG if args.run_dir else None}
        refuse_inputs("save_path", args.save_path, inputs)
        check_output_file("save_path", args.save_path, json_rows_with(*SAVED_KEYS), "score_outputs.py's features")
    if args.tokenizer_name:
        validation.model("tokenizer_name", args.tokenizer_name, marker="tokenizer_config.json")
    if args.run_dir:
        validation.input_folder("run_dir", args.run_dir)


def saved_rows(examples: list[Example], responses: list[str], features: list[dict]) -> list[dict]:
    """Per-sample rows for --save_path. QR and RAR are NaN where the reward did not compute them: written as null
    without a warning; any other non-number (a custom feature's NaN) is counted by files.write_json."""
    rows = []
    for e, r, f in zip(examples, responses, features):
        f = {k: None if k in ("QR", "RAR") and isinstance(v, float) and math.isnan(v) else v for k, v in f.items()}
        rows.append({"instruction": e.seed_input, "output": r, **f})  # SAVED_KEYS among them
    return rows


def resolve_proxy(args: ScoreArguments, config: RewardConfig, explicit: set[str]) -> ScoringProxy:
    """With --run_dir: the proxy the run trained with (explicit flags overriding it); else the flags' proxy."""
    settings, path = None, None
    if args.run_dir:
        path = Path(args.run_dir) / TRAINING_CONFIG
        settings = read_proxy(path) if path.is_file() else None
        if settings is None:
            raise DataError(f"--run_dir {args.run_dir}: no {TRAINING_CONFIG} with proxy settings")
    proxy = scoring_proxy(settings, path, config, explicit, args.features_module, lambda: flag_format(args))
    if path is not None:  # said once the record is known to be usable: a failed run prints one line
        print(f"proxy: as trained, from {path}", file=sys.stderr)
    for line in proxy.notes:
        print(line, file=sys.stderr)
    for line in proxy.overrides:
        print(f"proxy override: {line}", file=sys.stderr)
    return proxy


def flag_format(args: ScoreArguments) -> tuple[str, tuple[str, ...]]:
    """The prompt format the flags name (chat: the tokenizer's template, default SmolLM2's) and its stop strings."""
    tokenizer = None
    if args.prompt_format == "chat":
        from transformers import AutoTokenizer

        source = args.tokenizer_name or smollm2_path()
        with load_errors("tokenizer_name" if args.tokenizer_name else "the default tokenizer", source):
            tokenizer = AutoTokenizer.from_pretrained(source)
    fmt = resolve_prompt_format(args.prompt_format, tokenizer)
    return fmt.name, fmt.stop_strings


def read_samples(args: ScoreArguments, needs_qtype: bool) -> tuple[list[Example], list[str]]:
    """The annotated examples and the responses to score (the outputs file's, else the reference answers)."""
    examples = load_examples(args.annotations_path, require_qtype=needs_qtype)
    if not args.outputs_path:
        return examples, [e.reference for e in examples]
    outputs = load_outputs(args.outputs_path)
    return join_outputs(outputs, examples, args.outputs_path), [o["output"] for o in outputs]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, reward_config = validation.parse_flags((ScoreArguments, RewardConfig), argv, __doc__.splitlines()[0])
    with exit_on_data_error():
        check_args(args)
        proxy = resolve_proxy(args, reward_config, given_flags(argv, PROXY_FLAGS))
        reward_config = proxy.config
        check_reward_flags(reward_config)
        extra_features, combine = (load_features_module(proxy.features_module) if proxy.features_module
                                   else ({}, None))
        examples, responses = read_samples(args, reward_config.needs_qtype)
        stop_strings = proxy.stop_strings
        white_box_reward = ReversedEngineeredRewardForInference(reward_config, stop_strings, extra_features, combine)
        rewards, features = white_box_reward.score_examples(examples, responses, args.batch_size, return_features=True)
    extra = list(extra_features)
    source = args.outputs_path or f"{args.annotations_path} (reference answers)"
    print_summary(summarize(features, extra), extra, f"proxy reward of {source}")
    if args.save_path:
        Path(args.save_path).parent.mkdir(parents=True, exist_ok=True)  # checked creatable before scoring
        write_json(args.save_path, saved_rows(examples, responses, features))
        print(f"per-sample features written to {args.save_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
