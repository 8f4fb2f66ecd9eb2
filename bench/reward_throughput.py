"""Reward throughput (responses/s) of the white-box reward on the paper's AlpacaFarm validation set.

Each instruction is paired with another record's answer as its response. Three settings:
- no relevance: LI x RP only (no encoder);
- full RER cold: all four features, empty embedding cache (every text new);
- full RER warm: instructions and references already encoded (as in PPO epochs and repeated dev
  evaluations); responses are not in the cache.

    python bench/reward_throughput.py [--data ../shared/data/alpacafarm_val.json] [--batch_size 256] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import load_examples  # noqa: E402
from reward_model import RelevanceEncoder, RewardConfig, ReversedEngineeredRewardForInference  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"


def timed(rer, examples, responses, batch_size) -> float:
    start = time.perf_counter()
    rewards = rer.score_examples(examples, responses, batch_size=batch_size, progress=False)
    elapsed = time.perf_counter() - start
    assert len(rewards) == len(examples)
    return len(examples) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch_size", type=int, default=256, help="samples per reward call")
    parser.add_argument("--encoder_batch_size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="relevance encoder device: auto | cpu | cuda")
    parser.add_argument("--reward_dtype", default="auto",
                        help="auto (bf16 where native, precision.py) | bfloat16 | float32")
    parser.add_argument("--relevance_model", default=None, help="encoder folder (default: the offline MiniLM)")
    parser.add_argument("--n", type=int, default=0, help="use the first n records (0: all)")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        print(f"error: --data {args.data}: no such file", file=sys.stderr)
        sys.exit(2)
    examples = load_examples(args.data, require_qtype=True)
    if args.n:
        examples = examples[: args.n]
    responses = [examples[(i + 1) % len(examples)].reference for i in range(len(examples))]
    print(f"{len(examples)} samples from {args.data}; torch threads: {__import__('torch').get_num_threads()}")

    no_rel = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False, reward_device=args.device,
                                                               reward_dtype=args.reward_dtype))
    print(f"no relevance (LI x RP):  {timed(no_rel, examples, responses, args.batch_size):10.1f} responses/s")

    encoder = RelevanceEncoder(args.relevance_model, batch_size=args.encoder_batch_size, device=args.device, dtype=args.reward_dtype)
    encoder.encode(["warm-up of the encoder's kernels"])
    encoder.cache.clear()
    full = ReversedEngineeredRewardForInference(RewardConfig(reward_device=args.device, reward_dtype=args.reward_dtype),
                                                encoder=encoder)
    print(f"full RER, cold:          {timed(full, examples, responses, args.batch_size):10.1f} responses/s")

    # Warm: keep queries and references, forget the responses.
    for r in set(responses):
        encoder.cache.pop(r, None)
    encoder.encode([e.query for e in examples] + [e.reference for e in examples])
    for r in set(responses):
        encoder.cache.pop(r, None)
    print(f"full RER, warm:          {timed(full, examples, responses, args.batch_size):10.1f} responses/s")


if __name__ == "__main__":
    main()
