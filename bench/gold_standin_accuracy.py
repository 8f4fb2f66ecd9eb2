"""Gold stand-ins measured where a policy's answers put them: corrupted pairs, cut pairs, and base-policy answers.

The stand-in's own held-out split is small and built by its own recipe, so it cannot show what the stand-in
learned about cut answers. This scores each stand-in folder on instructions it never saw (by default the first
200 of the shared AlpacaFarm validation set, read in place) and prints, with 95% intervals:

- standard: the corruption pairs (reference vs off-topic, truncated, shuffled, repetition, evasive), per kind;
- both cut: reference and corruption cut at the same whole-word count (rre.standin.four_forms);
- only chosen cut / only rejected cut: one side cut, the other whole;
- cut correct vs finished wrong: the reference cut at a drawn word count against another instruction's whole
  reference (a finished, off-topic answer): a gold that reads the cut-off prefers the wrong answer;
- R² of "cut": the base policy (SmolLM2-135M-Instruct) answers the ladder's eval prompts (200 evenly spaced over
  the same file) 4 times each at 48 and at 128 new tokens; R² of the gold score on whether each answer was cut
  (stopped at the cap, rre.cutoff), with the mean gold of cut and of finished answers. Near 0: the gold judges
  content, not the cut-off.

    python bench/gold_standin_accuracy.py runs/quickstart/gold_standin /tmp/other_standin
    python bench/gold_standin_accuracy.py DIR --instructions 500 --data /path/alpacafarm_val.json --caps 48

The base policy's answers are generated once per setting into --answers_dir and reused by every stand-in.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed  # noqa: E402

import evaluation  # noqa: E402  (its decode path and policy loading: the base answers as evaluation.py writes them)

from rre import standin  # noqa: E402
from rre.cutoff import CUT_FIELD, split_by_cut  # noqa: E402
from rre.data import Example, load_examples  # noqa: E402
from rre.files import write_json  # noqa: E402
from rre.gold import ClassifierGoldReward  # noqa: E402
from rre.offline_models import smollm2_path  # noqa: E402
from rre.prompts import resolve_prompt_format  # noqa: E402
from rre.paper_data import require_data_file  # noqa: E402
from rre.precision import announce, resolve_dtype  # noqa: E402

SHARED_VAL = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"  # read in place, never copied


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible near 1, where the normal one overshoots)."""
    if n == 0:
        return math.nan, math.nan
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def cut_correct_pairs(examples: list[Example], seed: int) -> list[standin.Pair]:
    """The reference cut at a drawn whole-word count (3 .. its length - 1) against another instruction's whole
    reference: cut but right vs finished but off-topic."""
    rng = random.Random(f"{seed}-cut-correct")
    pairs = []
    for i, ex in enumerate(examples):
        at = standin.draw_cut(rng, len(ex.reference.split()))
        wrong = standin.corrupt("off_topic", i, examples, rng)
        if at is None or wrong is None:
            continue
        pairs.append(standin.Pair(ex.user_turn, standin.cut_words(ex.reference, at), wrong, "off_topic", "chosen_cut"))
    return pairs


def r_squared(scores: list[float], cut: list[bool]) -> float | None:
    """R² of a least-squares fit of the score on the cut indicator (the squared point-biserial correlation)."""
    n = len(scores)
    if n < 2 or all(cut) or not any(cut):
        return None
    mean_s, mean_c = sum(scores) / n, sum(cut) / n
    cov = sum((s - mean_s) * (c - mean_c) for s, c in zip(scores, cut))
    var_s = sum((s - mean_s) ** 2 for s in scores)
    var_c = sum((c - mean_c) ** 2 for c in cut)
    return cov * cov / (var_s * var_c) if var_s > 0 else None


def ladder_prompts(examples: list[Example], size: int) -> list[Example]:
    """`size` instructions evenly spaced over the file, as design_ladder.py picks its eval set."""
    if len(examples) <= size:
        return examples
    stride = len(examples) / size
    return [examples[int(i * stride)] for i in range(size)]


def base_answers(args: argparse.Namespace, prompts: list[Example], cap: int) -> list[dict]:
    """The base policy's answers ({instruction, output, truncated}), `args.samples` per prompt, cached per setting."""
    policy = args.policy or smollm2_path()
    key = {"policy": policy, "data": str(Path(args.data).resolve()), "prompts": len(prompts), "samples": args.samples,
           "cap": cap, "seed": args.seed, "postprocess": args.response_postprocess}
    path = Path(args.answers_dir) / f"answers-{cap}tok-{len(prompts)}x{args.samples}-seed{args.seed}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == key:
            return cached["answers"]
    model, tokenizer = evaluation.load_policy(policy)
    fmt = resolve_prompt_format("auto", tokenizer)
    todo = [ex for ex in prompts for _ in range(args.samples)]
    cut = [False] * len(todo)

    def keep(positions: list[int], _texts: list[str], flags: list[bool]) -> None:
        for j, flag in zip(positions, flags):
            cut[j] = flag

    set_seed(args.seed)
    texts = evaluation.generate_responses(model, tokenizer, fmt, [fmt.build(ex.instruction, ex.input) for ex in todo],
                                          args.batch_size, cap, do_sample=True, temperature=0.7, top_k=50,
                                          on_batch=keep, desc=f"base answers, {cap} tokens",
                                          postprocess=args.response_postprocess)
    answers = [{"instruction": ex.user_turn, "output": t, CUT_FIELD: c} for ex, t, c in zip(todo, texts, cut)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"settings": key, "answers": answers})
    return answers


def accuracy_line(name: str, result: dict) -> str:
    n, acc = result["pairs"], result["accuracy"]
    if not n:
        return f"  {name}: no pairs"
    low, high = wilson(round(acc * n), n)
    return f"  {name}: {acc:.3f} [95% {low:.3f}, {high:.3f}] on {n} pairs (mean margin {result['mean_margin']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="stand-in folders written by train_reward_model.py")
    default_data = ROOT / "data" / "alpacafarm_val.json"
    parser.add_argument("--data", default=str(default_data if default_data.is_file() else SHARED_VAL),
                        help="instructions with reference answers, not used in training (default: data/'s copy, "
                             "else the shared one read in place)")
    parser.add_argument("--instructions", type=int, default=200, help="the first N instructions of --data for pairs")
    parser.add_argument("--pairs_per_example", type=int, default=3)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1, help="corruptions, cut lengths and sampling (training: 0)")
    parser.add_argument("--policy", default="", help="base policy (default: the offline SmolLM2-135M-Instruct)")
    parser.add_argument("--policy_prompts", type=int, default=200,
                        help="eval prompts the base policy answers, evenly spaced over --data (0: skip the R² part)")
    parser.add_argument("--samples", type=int, default=4, help="answers per prompt")
    parser.add_argument("--caps", type=int, nargs="+", default=[48, 128], help="max new tokens, one run each")
    parser.add_argument("--response_postprocess", default="clean", help="as the ladder's evaluation (clean)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--answers_dir", default=str(ROOT / "runs" / "bench_standin_answers"))
    parser.add_argument("--parts", nargs="+", choices=("pairs", "base"), default=["pairs", "base"],
                        help="pairs: the pair accuracies; base: the base policy's answers and the R² of cut")
    parser.add_argument("--json", default="", help="also write every figure to this JSON file")
    parser.add_argument("--precision", default="auto", help="auto (precision.py's rule) | bfloat16 | float32")
    parser.add_argument("--num_threads", type=int, default=2)
    args = parser.parse_args()

    require_data_file("data", args.data)
    torch.set_num_threads(args.num_threads)
    all_examples = load_examples(args.data)
    examples = all_examples[: args.instructions]
    standard = standin.build_pairs(examples, args.pairs_per_example, args.seed)
    neutral = [p for p in standin.build_recipe_pairs("truncation_neutral", examples, args.pairs_per_example, args.seed)
               if p.form != "whole"]
    cut_correct = cut_correct_pairs(examples, args.seed)
    dtype = resolve_dtype(args.precision, "cpu")
    announce("gold_standin_accuracy.py:", dtype, args.precision, "cpu")
    print(f"pairs from the first {len(examples)} instructions of {args.data}: {len(standard)} standard, "
          f"{len(neutral)} with a cut side, {len(cut_correct)} cut-correct vs finished-wrong")
    prompts = ladder_prompts(all_examples, args.policy_prompts) if args.policy_prompts and "base" in args.parts else []
    answers = {cap: base_answers(args, prompts, cap) for cap in args.caps} if prompts else {}

    report = {}
    for folder in args.models:
        t0 = time.time()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
        bf16 = dtype == torch.bfloat16

        def pairs_accuracy(pairs: list[standin.Pair]) -> dict:
            return standin.evaluate_pairs(model, tokenizer, standin.render(pairs, tokenizer), args.max_length, bf16)

        print(f"{folder}:")
        entry: dict = {"base_answers": {}}
        if "pairs" in args.parts:
            std, cuts, cc = pairs_accuracy(standard), pairs_accuracy(neutral), pairs_accuracy(cut_correct)
            print(accuracy_line("standard corruptions", std))
            print("    per kind: " + ", ".join(f"{k} {v['accuracy']:.3f} ({v['pairs']})"
                                              for k, v in sorted(std["by_kind"].items())))
            for form in ("both_cut", "chosen_cut", "rejected_cut"):
                print(accuracy_line(form.replace("_", " "), cuts["by_form"].get(form, {"pairs": 0})))
            print(accuracy_line("cut correct vs finished wrong", cc))
            entry.update({"standard": std, "cut_forms": cuts["by_form"], "cut_correct_vs_finished_wrong": cc})
        # As the ladder and eval_monotonicity.py score answers: the classifier gold, left truncation.
        gold = ClassifierGoldReward(folder, batch_size=args.batch_size, device="cpu", dtype=args.precision) \
            if answers else None
        for cap, rows in answers.items():
            scores = gold.score([r["instruction"] for r in rows], [r["output"] for r in rows],
                                desc=f"gold, {cap}-token answers")
            flags = [r[CUT_FIELD] for r in rows]
            split, r2 = split_by_cut(scores, flags), r_squared(scores, flags)
            entry["base_answers"][cap] = {**split, "r2_cut": r2, "prompts": len(prompts), "samples": args.samples}
            print(f"  base answers at {cap} tokens ({len(prompts)} prompts x {args.samples}): {split['n_cut']}/"
                  f"{split['n']} cut, gold cut {split['mean_cut'] if split['mean_cut'] is None else round(split['mean_cut'], 2)}"
                  f" / finished {split['mean_finished'] if split['mean_finished'] is None else round(split['mean_finished'], 2)}, "
                  f"R² of cut {'n/a' if r2 is None else f'{r2:.3f}'}")
        print(f"  ({time.time() - t0:.0f} s)")
        report[folder] = entry
    if args.json:
        write_json(Path(args.json), {"data": args.data, "instructions": len(examples), "seed": args.seed,
                                     "models": report})


if __name__ == "__main__":
    main()
