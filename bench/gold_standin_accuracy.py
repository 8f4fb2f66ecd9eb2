"""Pairwise accuracy of trained gold stand-ins on many more pairs than their own held-out split.

The stand-in's held-out split of the default data has 42 pairs, so one pair is 2.4 points of accuracy and a
numerically different but equivalent training run can move it by that much. To compare training recipes (or a
speed change that should not change the model), this scores each stand-in on pairs built the same way from
instructions it never saw (by default the first 200 of the shared AlpacaFarm validation set: about 600 pairs)
and prints accuracy with a 95% interval, per corruption kind too.

    python bench/gold_standin_accuracy.py runs/quickstart/gold_standin /tmp/other_standin
    python bench/gold_standin_accuracy.py DIR --instructions 500 --data data/alpacafarm_val.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from rre import standin  # noqa: E402
from rre.data import load_examples  # noqa: E402
from rre.precision import announce, resolve_dtype  # noqa: E402
from rre.paper_data import require_data_file  # noqa: E402


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible near 1, where the normal one overshoots)."""
    if n == 0:
        return math.nan, math.nan
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="stand-in folders written by train_reward_model.py")
    parser.add_argument("--data", default=str(ROOT / "data" / "alpacafarm_val.json"),
                        help="instructions with reference answers, not used in training")
    parser.add_argument("--instructions", type=int, default=200, help="the first N instructions of --data")
    parser.add_argument("--pairs_per_example", type=int, default=3)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1, help="corruptions (another seed than training's 0)")
    parser.add_argument("--precision", default="auto", help="auto (precision.py's rule) | bfloat16 | float32")
    parser.add_argument("--num_threads", type=int, default=2)
    args = parser.parse_args()

    require_data_file("data", args.data)
    torch.set_num_threads(args.num_threads)
    examples = load_examples(args.data)[: args.instructions]
    pairs = standin.build_pairs(examples, args.pairs_per_example, args.seed)
    dtype = resolve_dtype(args.precision, "cpu")
    announce("gold_standin_accuracy.py:", dtype, args.precision, "cpu")
    print(f"{len(pairs)} pairs from the first {len(examples)} instructions of {args.data}")
    for folder in args.models:
        t0 = time.time()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
        result = standin.evaluate_pairs(model, tokenizer, standin.render(pairs, tokenizer), args.max_length,
                                    bf16=dtype == torch.bfloat16)
        n, acc = result["pairs"], result["accuracy"]
        low, high = wilson(round(acc * n), n)
        kinds = ", ".join(f"{k} {v['accuracy']:.3f} ({v['pairs']})" for k, v in sorted(result["by_kind"].items()))
        print(f"{folder}: accuracy {acc:.3f} [95% {low:.3f}, {high:.3f}] on {n} pairs, mean margin "
              f"{result['mean_margin']:.2f}; {kinds}  ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
