"""Gold reward scoring throughput: length-sorted batches vs one response at a time (as the paper's script did).

Scores 805 (instruction, response) pairs built from the AlpacaFarm validation file (its reference answers as
responses) with a tiny random Starling-layout reward model (SmolLM2's tokenizer), through the same
`load_gold_reward_model(...).score` path eval_monotonicity.py uses. Prints responses/s for both and the ratio
(target: batched >= 5x one-at-a-time).

    python bench/gold_throughput.py [--batch_size 16] [--n 805] [--threads 1] [--hidden_size 64 --num_layers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parents[2] / "shared/data/alpacafarm_val.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--n", type=int, default=805, help="responses (AlpacaEval has 805 instructions)")
    # One thread by default: the two cores are shared, and multi-threaded tiny kernels on oversubscribed cores
    # give erratic timings (0 = torch's default).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--hidden_size", type=int, default=64, help="64 = the tests' tiny RM")
    parser.add_argument("--num_layers", type=int, default=2, help="2 = the tests' tiny RM")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer, LlamaConfig

    from data import load_examples
    from eval_monotonicity import gold_instruction
    from offline_models import smollm2_path
    from reward_model import StarlingRewardModel, load_gold_reward_model

    examples = load_examples(DATA)[: args.n]
    instructions = [gold_instruction(e) for e in examples]
    responses = [e.reference for e in examples]

    tokenizer_dir = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size,
                         intermediate_size=2 * args.hidden_size, num_hidden_layers=args.num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, pad_token_id=0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        StarlingRewardModel(config).save_pretrained(tmp)
        gold = load_gold_reward_model(tmp, "starling", batch_size=args.batch_size, device="cpu",
                                      tokenizer_name=tokenizer_dir)
    start = time.perf_counter()
    lengths = [len(ids) for ids in gold.encode(instructions, responses)]
    tokenize_s = time.perf_counter() - start
    print(f"{len(responses)} responses from {DATA.name}; tokens per input: mean {sum(lengths) / len(lengths):.0f}, "
          f"max {max(lengths)}; RM hidden {args.hidden_size} x {args.num_layers} layers; "
          f"torch threads {torch.get_num_threads()}")

    gold.score(instructions[:32], responses[:32], progress=False)  # warm-up (kernels, allocator)
    results = {}
    for label, batch_size in (("batched", args.batch_size), ("one-at-a-time", 1)):
        gold.batch_size = batch_size
        start = time.perf_counter()
        scores = gold.score(instructions, responses, progress=False)
        seconds = time.perf_counter() - start
        results[label] = (scores, seconds)
        print(f"{label:>14} (batch {batch_size:>3}): {len(responses) / seconds:8.1f} responses/s, "
              f"{sum(lengths) / seconds:9.0f} tokens/s ({seconds:.2f} s)")
    (batched, t_b), (single, t_s) = results["batched"], results["one-at-a-time"]
    max_diff = max(abs(a - b) for a, b in zip(batched, single))
    print(f"speed-up batched / one-at-a-time: {t_s / t_b:.1f}x (target >= 5x); max |score difference| {max_diff:.2e}")
    print(f"(both include tokenizing all pairs, {tokenize_s:.2f} s on its own; model time only: "
          f"{(t_s - tokenize_s) / (t_b - tokenize_s):.1f}x)")


if __name__ == "__main__":
    main()
