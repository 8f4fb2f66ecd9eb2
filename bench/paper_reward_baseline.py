"""Baseline of the relevance backends' throughput table: the white-box reward computed the way the paper's code did it.

The paper's reward code ran Contriever through transformers: for every batch of 4 samples it tokenized the
queries, the responses and (for RAR) the references separately, padded each group to its longest text, ran the
encoder once per group, mean-pooled, and took raw dot products; nothing was cached or sorted by length, and the
arithmetic was float32. This script rebuilds that path with the offline MiniLM weights (mean pooling over
MiniLM's transformer, as the Contriever code path does) and the same samples as `bench/reward_throughput.py`,
so the two print comparable responses/s on one machine:

    RRE_FORCE_NO_NATIVE_BF16=1 python bench/paper_reward_baseline.py      # the paper's path, float32
    RRE_FORCE_NO_NATIVE_BF16=1 python bench/reward_throughput.py --backend onnx-int8

It is a reconstruction from the paper's description of its code, written for this project (no code copied).
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

from reward_model import length_incentive, repetition_penalty, tokenize  # noqa: E402
from rre.data import load_examples  # noqa: E402
from rre.prompts import STOP_STRINGS, clean_response  # noqa: E402
from rre.paper_data import require_data_file  # noqa: E402

DEFAULT_DATA = ROOT / "data" / "alpacafarm_val.json"  # bash scripts/get_paper_data.sh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch_size", type=int, default=4, help="samples per encoder call (the paper's 4)")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--relevance_model", default="minilm",
                        help="encoder folder or hub name (default: minilm, the offline MiniLM)")
    args = parser.parse_args()
    require_data_file("data", args.data)
    from transformers import AutoModel, AutoTokenizer

    from rre.offline_models import minilm_path

    examples = load_examples(args.data, require_qtype=True)[: args.limit]
    # The same pairing as bench/reward_throughput.py: each instruction gets the next record's answer.
    responses = [examples[(i + 1) % len(examples)].reference for i in range(len(examples))]
    name = minilm_path() if args.relevance_model == "minilm" else args.relevance_model
    tokenizer = AutoTokenizer.from_pretrained(name, truncation_side="left")
    model = AutoModel.from_pretrained(name, dtype=torch.float32).eval()
    max_length = min(tokenizer.model_max_length, 512)
    print(f"paper's reward path: {name}, float32, batch {args.batch_size}, {len(examples)} samples, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)

    def embed(texts: list[str]) -> torch.Tensor:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    start = time.perf_counter()
    rewards = []
    with torch.inference_mode():
        for s in range(0, len(examples), args.batch_size):
            exs, resp = examples[s:s + args.batch_size], [clean_response(r, STOP_STRINGS) for r in responses[s:s + args.batch_size]]
            qr = (embed([e.query for e in exs]) * embed(resp)).sum(-1)
            constrained = [i for i, e in enumerate(exs) if e.qtype == "CONSTRAINED"]
            rar = torch.zeros(len(exs))
            if constrained:
                rar[constrained] = (embed([exs[i].reference for i in constrained])
                                    * embed([resp[i] for i in constrained])).sum(-1)
            for i, r in enumerate(resp):
                toks = tokenize(r)
                rewards.append(length_incentive(toks) * repetition_penalty(toks) * float(qr[i] if i not in constrained
                                                                                         else rar[i]))
    elapsed = time.perf_counter() - start
    print(f"paper's reward path (float32, batch {args.batch_size}, no cache): {len(rewards) / elapsed:.1f} responses/s "
          f"({len(rewards)} in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
