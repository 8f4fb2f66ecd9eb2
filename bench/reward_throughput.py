"""Reward throughput (responses/s) of the white-box reward on the paper's AlpacaFarm validation set.

Each instruction is paired with another record's answer as its response. Three settings:
- no relevance: LI x RP only (no encoder);
- full RER cold: all four features, empty embedding cache (every text new), encoding only the relevance the
  formula needs (QR for open-ended, RAR for constrained instructions: what PPO's reward calls do);
- full RER + all features, cold: QR and RAR for every sample (what prescreen.py and the checks compute);
- full RER warm: instructions and references already encoded (as in PPO epochs and repeated dev
  evaluations); responses are not in the cache.

    python bench/reward_throughput.py [--data data/alpacafarm_val.json] [--batch_size 256]
        [--device auto|cpu|cuda] [--backend torch|onnx|onnx-int8] [--dtype auto|float32|bfloat16] [--compare_float32]

`--backend` picks the relevance encoder's runtime (printed); `--dtype` the torch backend's precision (`auto`:
precision.py's rule, bf16 only where native); `--compare_float32` also scores every sample with the exact float32
PyTorch path and prints the largest |QR| and |RAR| difference from it.
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

import torch  # noqa: E402

from reward_model import ReversedEngineeredRewardForInference, RewardConfig  # noqa: E402
from rre.data import load_examples  # noqa: E402
from rre.relevance import RelevanceEncoder  # noqa: E402
from rre.paper_data import require_data_file  # noqa: E402

DEFAULT_DATA = ROOT / "data" / "alpacafarm_val.json"  # bash scripts/get_paper_data.sh


def timed(white_box_reward, examples, responses, batch_size, features: bool = False) -> float:
    """Responses/s of the reward (features=False: only the relevance the formula needs, as PPO scores) or of
    the reward with every feature (QR and RAR wherever there is a text: what prescreen.py and the checks need)."""
    start = time.perf_counter()
    out = white_box_reward.score_examples(examples, responses, batch_size=batch_size, progress=False, return_features=features)
    elapsed = time.perf_counter() - start
    assert len(out[0] if features else out) == len(examples)
    return len(examples) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch_size", type=int, default=256, help="samples per reward call")
    parser.add_argument("--encoder_batch_size", type=int, default=RewardConfig.reward_model_batch_size,
                        help="texts per encoder forward (default: RewardConfig's, the paper's 8)")
    parser.add_argument("--device", default="auto", help="relevance encoder device: auto | cpu | cuda")
    parser.add_argument("--dtype", "--reward_dtype", dest="dtype", default="auto",
                        help="torch backend precision: auto (bf16 where native, precision.py) | float32 | bfloat16")
    parser.add_argument("--relevance_model", default="minilm",
                        help="encoder folder or hub name (default: minilm, the offline MiniLM)")
    parser.add_argument("--limit", "--n", dest="limit", type=int, default=None, help="first N samples only (quick checks)")
    parser.add_argument("--backend", default="torch", help="relevance encoder runtime: torch | onnx | onnx-int8")
    parser.add_argument("--compare_float32", action="store_true",
                        help="also report max |QR| and |RAR| difference from the exact float32 torch path")
    args = parser.parse_args()
    require_data_file("data", args.data)
    examples = load_examples(args.data, require_qtype=True)[: args.limit or None]
    responses = [examples[(i + 1) % len(examples)].reference for i in range(len(examples))]
    print(f"{len(examples)} samples from {args.data}; torch threads: {__import__('torch').get_num_threads()}")

    no_rel = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False, reward_device=args.device,
                                                               reward_dtype=args.dtype))
    print(f"no relevance (LI x RP):  {timed(no_rel, examples, responses, args.batch_size):10.1f} responses/s")

    encoder = RelevanceEncoder(args.relevance_model, batch_size=args.encoder_batch_size, device=args.device,
                               dtype=args.dtype, backend=args.backend)
    dtype = "onnx" if encoder.onnx is not None else str(encoder.autocast_dtype or torch.float32).removeprefix("torch.")
    print(f"relevance encoder backend: {args.backend} ({dtype}; {encoder.name})")
    encoder.encode(["warm-up of the encoder's kernels"])
    encoder.cache.clear()
    full = ReversedEngineeredRewardForInference(RewardConfig(reward_device=args.device, reward_dtype=args.dtype),
                                                encoder=encoder)
    print(f"full RER, cold:          {timed(full, examples, responses, args.batch_size):10.1f} responses/s")
    encoder.cache.clear()
    print(f"full RER + all features, cold: {timed(full, examples, responses, args.batch_size, True):4.1f} responses/s")

    # Warm: keep queries and references, forget the responses.
    for r in set(responses):
        encoder.cache.pop(r, None)
    encoder.encode([e.query for e in examples] + [e.reference for e in examples])
    for r in set(responses):
        encoder.cache.pop(r, None)
    print(f"full RER, warm:          {timed(full, examples, responses, args.batch_size):10.1f} responses/s")
    if args.compare_float32:
        compare_float32(full, examples, responses, args)


def compare_float32(white_box_reward, examples, responses, args) -> None:
    """Largest |difference| of QR and RAR from the exact path (torch, float32), over every sample."""
    exact = ReversedEngineeredRewardForInference(RewardConfig(reward_device=args.device), encoder=RelevanceEncoder(
        args.relevance_model, batch_size=args.encoder_batch_size, device=args.device, dtype="float32", backend="torch"))
    _, got = white_box_reward.score_examples(examples, responses, args.batch_size, return_features=True, progress=False)
    _, ref = exact.score_examples(examples, responses, args.batch_size, return_features=True, progress=False)
    for name in ("QR", "RAR"):
        diffs = [abs(a[name] - b[name]) for a, b in zip(got, ref) if a[name] == a[name] and b[name] == b[name]]
        print(f"max |{name} - float32 {name}| over {len(diffs)} samples: {max(diffs):.2e}")


if __name__ == "__main__":
    main()
