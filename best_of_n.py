"""Best-of-n comparison of reward designs: does a design's proxy pick answers the gold prefers?

n answers per prompt are drawn once from a policy; each design's proxy (the design ladder's li, li_rp, li_qr_rp,
full) picks its best of k for every k up to n, and each gold scores the pick. All designs and all k share the same
draws, so the differences between designs are paired by prompt. Reported per design and gold: the expected gold of
the pick at each k (exact, over all k-subsets of the n draws), its gain from k=1 with a bootstrap interval over
prompts, each design minus the baseline design (paired, with its interval), the Spearman of the proxy and gold
curves along k, and the share of the picks that were cut at the token cap.

    python best_of_n.py --base_model_name $(python -c 'from rre.offline_models import smollm2_path; print(smollm2_path())') \\
        --eval_path ../shared/data/alpacafarm_val.json --n_prompts 200 --n 16 --max_new_tokens 128 \\
        --relevance_model minilm --gold_model runs/quickstart/gold_standin --gold_type classifier \\
        --output_dir runs/best_of_n

Resumable: the draws are saved in chunks and the scores in caches keyed by what they score, under --output_dir;
a re-run reuses them (add a gold or a design and only that is scored). `--phase draw` only draws (the slow,
gold-independent part: start it before the golds exist).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from reward_model import (ReversedEngineeredRewardForInference, RewardConfig, check_reward_flags, cut_before_scoring,
                          resolve_rar_max_dot)
from rre import best_of_n as bon
from rre import paper_data, validation
from rre.data import Example, load_examples
from rre.errors import DataError, exit_on_data_error
from rre.feature_view import numeric_features
from rre.files import (OutputKind, check_outputs_in, created_folder, json_object_with, mark_dir, png_file,
                       refuse_inputs, replaceable, write_json, written_by)
from rre.gold import GoldArguments, check_gold_flags, gold_specs_from_flags, load_gold
from rre.ladder import DESIGNS, REWARD_FLAGS
from rre.errors import load_errors
from rre.precision import announce, resolve_dtype
from rre.prompts import PROMPT_FORMATS, RESPONSE_POSTPROCESS, resolve_prompt_format
from rre.relevance import RelevanceEncoder
from rre.files import content_hash
from rre.validation import given_flags, merge_repeated_flags

BEST_OF_N = OutputKind("best_of_n.py", "a best_of_n.py folder")
PHASES = ("all", "draw")


@dataclass
class BestOfNArguments(GoldArguments):
    base_model_name: str = field(default="", metadata={"help": "the policy (SFT) model: hub name or folder"})
    output_dir: str = field(default="", metadata={"help": "where draws, scores, best_of_n.json and the figure go"})
    eval_path: str = field(default=paper_data.PAPER_EVAL_PATH, metadata={
        "help": "annotated instructions (qtype, reference output), read in place: the paper's validation file "
                "alpacafarm_val.json, or data/eval.json offline"})
    n_prompts: int = field(default=200, metadata={"help": "prompts drawn from --eval_path (all when it holds fewer)"})
    prompt_seed: int = field(default=0, metadata={
        "help": "which prompts: the first --n_prompts of random.Random(prompt_seed).shuffle of the record indices "
                "(so a smaller --n_prompts reuses a larger run's first draws)"})
    seed: int = field(default=42, metadata={"help": "draw seed; each prompt's draws are seeded by a hash of it and "
                                            "the prompt's record index"})
    n: int = field(default=16, metadata={"help": "answers drawn per prompt (the largest n reported)"})
    max_new_tokens: int = field(default=128, metadata={"help": "answer length cap, in tokens"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (evaluation.py's, the paper's)"})
    top_k: int = field(default=50, metadata={"help": "top-k (evaluation.py's 50, the paper's); 0 = off"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    prompt_format: str = field(default="auto", metadata={
        "help": "auto (chat when the tokenizer has a chat template, else alpaca) | " + " | ".join(PROMPT_FORMATS)})
    precision: str = field(default="auto", metadata={"help": "policy precision: auto | bfloat16 | float32"})
    designs: list[str] = field(default_factory=lambda: list(DESIGNS), metadata={
        "help": f"reward designs compared (the ladder's: {', '.join(DESIGNS)})"})
    baseline: str = field(default="li", metadata={"help": "the design every other is compared with (paired)"})
    gold_model: list[str] = field(default_factory=list, metadata={
        "help": "gold reward model(s), repeatable (--gold_type classifier for a stand-in folder); needed unless "
                "--phase draw"})
    chunk_size: int = field(default=4, metadata={
        "help": "prompts per decode batch and per saved chunk of draws (x --n rows in a batch)"})
    phase: str = field(default="all", metadata={"help": "all | draw (draw the answers only)"})


def check_args(a: BestOfNArguments, config: RewardConfig) -> None:
    """Every flag before anything loads or is created: one line and exit 2 on the first bad one."""
    if not a.base_model_name:
        raise DataError("--base_model_name: give the policy (a folder or hub name)")
    if not a.output_dir:
        raise DataError("--output_dir: give the folder the draws and the report go to")
    validation.model("base_model_name", a.base_model_name)
    validation.input_data("eval_path", a.eval_path)
    validation.one_of("phase", a.phase, PHASES)
    validation.one_of("response_postprocess", config.response_postprocess, RESPONSE_POSTPROCESS)
    for flag in ("n_prompts", "n", "max_new_tokens", "chunk_size"):
        validation.positive(flag, getattr(a, flag))
    validation.positive("temperature", a.temperature)
    validation.non_negative("top_k", a.top_k)
    if not 0 < a.top_p <= 1:
        raise DataError(f"--top_p {a.top_p}: must be in (0, 1]")
    validation.seed("seed", a.seed)
    validation.seed("prompt_seed", a.prompt_seed)
    validation.seed("bootstrap_seed", a.bootstrap_seed)
    resolve_dtype(a.precision, "cpu", flag="--precision")
    for d in a.designs:
        validation.one_of("designs", d, DESIGNS)
    if len(set(a.designs)) != len(a.designs):
        raise DataError("--designs: a design is given twice")
    if a.baseline not in a.designs:
        raise DataError(f"--baseline {a.baseline}: not among --designs ({', '.join(a.designs)})")
    if a.phase == "all":
        if not a.gold_model:
            raise DataError("--gold_model: give at least one gold (or --phase draw to draw the answers only)")
        check_gold_flags(a)
        gold_specs_from_flags(a, a.gold_model)
        check_reward_flags(config)
    out = validation.output_folder("output_dir", a.output_dir)
    replaceable("output_dir", out, BEST_OF_N)
    inputs = {"base_model_name": a.base_model_name, "eval_path": a.eval_path,
              **{f"gold_model[{i}]": g for i, g in enumerate(a.gold_model)}}
    refuse_inputs("output_dir", out, inputs, folder=True)
    check_outputs_in("output_dir", out, {
        bon.RESULT: (json_object_with("ks", "designs", "differences"), "a best_of_n.py result"),
        bon.FIGURE: (png_file, "a figure")}, inputs)


def load_policy(a: BestOfNArguments):
    """The policy on the CPU (or the first GPU) in the precision rule's dtype, its tokenizer left-padded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = "cuda:0" if torch.cuda.is_available() else "cpu"
    dtype = resolve_dtype(a.precision, "cuda" if where != "cpu" else "cpu")
    announce("best_of_n.py:", dtype, a.precision, where)
    with load_errors("base_model_name", a.base_model_name):
        model = AutoModelForCausalLM.from_pretrained(a.base_model_name, dtype=dtype).to(where)
        tokenizer = AutoTokenizer.from_pretrained(a.base_model_name)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer, dtype


def eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def prompt_format_of(a: BestOfNArguments):
    from transformers import AutoTokenizer

    with load_errors("base_model_name", a.base_model_name):
        tokenizer = AutoTokenizer.from_pretrained(a.base_model_name)
    return resolve_prompt_format(a.prompt_format, tokenizer)


def answer_chunks(a: BestOfNArguments, n_prompts: int) -> list[list[int]]:
    """The answers of each chunk of prompts (answer i*n + j is draw j of prompt i): scores are cached per chunk."""
    return [[i * a.n + j for i in rows for j in range(a.n)] for rows in bon.prompt_chunks(n_prompts, a.chunk_size)]


def proxy_scores(a: BestOfNArguments, config: RewardConfig, fmt, examples: list[Example], answers: list[str],
                 folder: Path) -> dict[str, np.ndarray]:
    """Each design's proxy score of every answer: the features once (every flag on, one encoder pass, cached per
    chunk), then each design's rule on them (as prescreen.py scores designs)."""
    every = replace(config, **{k: True for k in REWARD_FLAGS})
    encoder_state: dict[str, Any] = {}

    def features(items: list[int]) -> list[dict[str, float | None]]:
        encoder = RelevanceEncoder(every.relevance_model, every.relevance_model_type, every.reward_model_batch_size,
                                   every.reward_device, dtype=every.reward_dtype, backend=every.relevance_backend)
        encoder_state["encoder"] = encoder
        reward = ReversedEngineeredRewardForInference(every, stop_strings=fmt.stop_strings, encoder=encoder)
        _, feats = reward.score_examples([examples[i] for i in items], [answers[i] for i in items],
                                         return_features=True, desc="proxy features")
        return [numeric_features(f) for f in feats]

    tag = content_hash([asdict(every), list(fmt.stop_strings), "features"])[:12]
    feats = bon.chunked_scores(
        folder / bon.SCORES_DIR / f"proxy-features-{tag}", answer_chunks(a, len(answers) // a.n),
        lambda items: [[examples[i].query, answers[i], examples[i].reference, examples[i].qtype] for i in items],
        features)
    out = {}
    for d in a.designs:
        cfg = resolve_rar_max_dot(replace(config, **DESIGNS[d]), encoder_state.get("encoder"))
        rule = ReversedEngineeredRewardForInference.for_features(cfg)
        out[d] = np.array([float(rule.combine_features({**f, "qtype": e.qtype}, None, i)["reward"])
                           for i, (f, e) in enumerate(zip(feats, examples))])
    return out


def gold_scores(a: BestOfNArguments, examples: list[Example], answers: list[str], folder: Path
                ) -> dict[str, np.ndarray]:
    """Each gold's score of every answer (cached per gold and chunk, keyed by exactly what it reads); a gold is
    loaded only when some chunk is not cached yet."""
    out = {}
    for spec in gold_specs_from_flags(a, a.gold_model):
        instructions = [getattr(e, spec.instruction_form) for e in examples]

        def score(items: list[int], spec=spec, instructions=instructions) -> list[float]:
            gold = load_gold(spec, a.gold_batch_size, a.gold_device, a.trust_remote_code)
            return gold.score([instructions[i] for i in items], [answers[i] for i in items],
                              desc=f"gold {spec.short}")

        scores = bon.chunked_scores(folder / bon.SCORES_DIR / f"gold-{spec.slug}",
                                    answer_chunks(a, len(answers) // a.n),
                                    lambda items: [[instructions[i], answers[i]] for i in items], score)
        out[spec.short] = np.array(scores, dtype=float)
    return out


def run(a: BestOfNArguments, config: RewardConfig) -> dict[str, Any] | None:
    check_args(a, config)
    records = load_examples(a.eval_path, require_qtype=True)
    indices = bon.select_prompts(len(records), a.n_prompts, a.prompt_seed)
    chosen = [records[i] for i in indices]
    fmt = prompt_format_of(a)
    prompts = [fmt.build(e.instruction, e.input) for e in chosen]
    seeds = [bon.prompt_seed(a.seed, i) for i in indices]
    folder = Path(a.output_dir)
    dtype = str(resolve_dtype(a.precision, "cuda" if torch.cuda.is_available() else "cpu")).removeprefix("torch.")
    settings = bon.DrawSettings(str(a.base_model_name), a.n, a.max_new_tokens, a.temperature, a.top_k, a.top_p,
                                fmt.name, config.response_postprocess, dtype)
    times: dict[str, float] = {}
    with created_folder(folder):
        if written_by(folder) is None:  # new or empty (check_args refused anything else)
            mark_dir(folder, BEST_OF_N.command)

        def load():
            model, tokenizer, _ = load_policy(a)
            return model, tokenizer, fmt, eos_ids(model, tokenizer)

        answers, spent, drawn = bon.draw_all(folder, indices, prompts, seeds, settings, a.chunk_size, load)
        n_chunks = -(-len(indices) // a.chunk_size)
        times["draw_this_run_s"] = spent
        times["draw_total_s"] = bon.saved_draw_seconds(folder, n_chunks)
        print(f"draws: {len(indices)} prompts x {a.n}; {drawn} chunk(s) drawn in {spent:.0f} s this run "
              f"({times['draw_total_s']:.0f} s over all runs)", flush=True)
        if a.phase == "draw":
            return None
        flat_examples = [e for e in chosen for _ in range(a.n)]
        flat_answers = [x["output"] for per in answers for x in per]
        cut = np.array([[x["cut"] for x in per] for per in answers], dtype=bool)
        (folder / bon.SCORES_DIR).mkdir(exist_ok=True)
        start = time.monotonic()
        proxies = {d: s.reshape(len(indices), a.n)
                   for d, s in proxy_scores(a, config, fmt, flat_examples, flat_answers, folder).items()}
        times["proxy_s"] = time.monotonic() - start
        start = time.monotonic()
        golds = {g: s.reshape(len(indices), a.n) for g, s in gold_scores(a, flat_examples, flat_answers, folder).items()}
        times["gold_s"] = time.monotonic() - start
        start = time.monotonic()
        result = bon.build_result(chosen, proxies, golds, cut, list(range(1, a.n + 1)), a.bootstrap_samples,
                                  a.bootstrap_seed, a.baseline)
        times["report_s"] = time.monotonic() - start
        result.update({
            "n_prompts": len(indices), "n": a.n, "max_new_tokens": a.max_new_tokens,
            "eval_path": str(a.eval_path), "prompt_indices": indices, "prompt_seed": a.prompt_seed, "seed": a.seed,
            "draw_settings": vars(settings), "reward": asdict(config), "gold_models": a.gold_model,
            "mean_tokens": float(np.mean([x["tokens"] for per in answers for x in per])),
            "wall_time_s": times, "gold_reads": "the answer as kept" if not cut_before_scoring(config) else "cut text"})
        write_json(folder / bon.RESULT, result)
        bon.plot(result, folder / bon.FIGURE)
    print(bon.markdown_table(result))
    by_cut = "; ".join(f"{g}: cut {v['cut']:+.2f}, finished {v['finished']:+.2f}" for g, v in result["gold_by_cut"].items()
                       if v["cut"] is not None and v["finished"] is not None)
    print(f"mean gold of all draws by whether they were cut: {by_cut or 'n/a'}")
    print(f"cut at the cap: {result['cut_share']:.0%} of all {len(indices) * a.n} answers; wall time: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"wrote {folder / bon.RESULT} and {folder / bon.FIGURE}")
    return result


def parse_args(argv: Sequence[str] | None = None) -> tuple[BestOfNArguments, RewardConfig]:
    argv = merge_repeated_flags(sys.argv[1:] if argv is None else argv,
                                ("--gold_model", "--gold_type", "--gold_tokenizer", "--designs"))
    return validation.parse_flags((BestOfNArguments, RewardConfig), argv, __doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, config = parse_args(argv)
    ignored = sorted(given_flags(argv, REWARD_FLAGS))
    if ignored:
        print(f"note: {', '.join('--' + f for f in ignored)} ha{'s' if len(ignored) == 1 else 've'} no effect here: "
              "each design of --designs sets its own reward flags", file=sys.stderr)
    with exit_on_data_error():
        validation.finite_flags(args, config)
        return run(args, config)


if __name__ == "__main__":
    main()
