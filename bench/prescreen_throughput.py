"""prescreen.py wall time: 4 designs x 10 systems x the project's eval set, first run and cached re-run.

The 10 systems are built offline from the eval set's reference answers (system k keeps the first k+1 sentences'
worth of words, repeated or truncated), the gold is a CSV of their known order, so the figure is the proxy side:
features (the relevance encoder), the four designs, statistics and plots. Gold-model scoring time is the gold's
own (bench/gold_throughput.py).

    python bench/prescreen_throughput.py [--eval_path data/eval.json] [--backend torch|onnx|onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval_path", default=str(ROOT / "data" / "eval.json"))
    parser.add_argument("--backend", default="torch", help="relevance encoder runtime: torch | onnx | onnx-int8")
    parser.add_argument("--systems", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rre.data import load_examples

    examples = load_examples(args.eval_path)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in range(args.systems):
            folder = root / "results" / f"system_{k:02d}"
            folder.mkdir(parents=True)
            outputs = []
            for j, ex in enumerate(examples):
                words = ex.reference.split()
                body = words[: max(1, (k + 1) * len(words) // args.systems)]
                outputs.append({"instruction": ex.seed_input, "output": " ".join(body + body[: k % 3 * 4])})
            (folder / "model_outputs.json").write_text(json.dumps(outputs))
        (root / "gold.csv").write_text("".join(f"system_{k:02d},{k}\n" for k in range(args.systems)))
        cmd = [sys.executable, str(ROOT / "prescreen.py"), "--systems", str(root / "results"), "--annotations_path",
               args.eval_path, "--gold_csv", str(root / "gold.csv"), "--relevance_model=minilm",
               "--rar_max_dot=1.0", "--output_dir",
               str(root / "out"), "--relevance_backend", args.backend, "--designs", "LI", "LI+RP", "LI+RP+QR", "RER"]
        print(f"{args.systems} systems x {len(examples)} instructions x 4 designs; backend {args.backend}")
        for label in ("first run", "cached re-run"):
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(proc.stderr[-2000:])
            print(f"{label}: {elapsed:.1f} s wall (process start and imports included)")
        print(proc.stdout.split("features vs gold")[0].rstrip())


if __name__ == "__main__":
    main()
