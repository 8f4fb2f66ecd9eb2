"""Experiment (not a test): what bounds a decode step's matmuls on this CPU, reading the weights or arithmetic.

For each weight shape of a decode step (SmolLM2-135M's by default: fused q/k/v, o, fused gate/up, down, the LM head)
it times the product with 1 and with 16 rows, with the weight cold (a ring of copies larger than the caches),
packed for oneDNN as `rre.decode.packed_linears` packs it, in bf16 and float32; and prints the weight bytes read
per second and the arithmetic rate, beside this CPU's read bandwidth (`sum` over a 256 MB tensor). A product
bound by reading its weight runs as fast with 16 rows as with 1, near the read bandwidth; one that slows with
rows is bound by its arithmetic (docs/performance.md, "Rollouts and answers").

    python bench/decode_matmuls.py
    python bench/decode_matmuls.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch


def read_bandwidth() -> float:
    """GB/s of a `sum` over 256 MB (float32)."""
    big = torch.randn(64 * 1024 * 1024)
    big.sum()
    start = time.perf_counter()
    for _ in range(5):
        big.sum()
    return 5 * big.numel() * 4 / (time.perf_counter() - start) / 1e9


def product(n: int, k: int, rows: int, dtype: torch.dtype, ring_bytes: int = 64 << 20, reps: int = 5) -> float:
    """Seconds per packed [rows, k] x [k, n] product, the weight cold (a ring of copies of at least ring_bytes)."""
    copies = max(2, ring_bytes // (n * k * torch.finfo(dtype).bits // 8))
    weights = [torch.ops.mkldnn._reorder_linear_weight(torch.randn(n, k).to(dtype), rows) for _ in range(copies)]
    x = torch.randn(rows, k).to(dtype)
    run = lambda w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")  # noqa: E731
    for w in weights:
        run(w)
    start = time.perf_counter()
    for _ in range(reps):
        for w in weights:
            run(w)
    return (time.perf_counter() - start) / (reps * copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--kv_dim", type=int, default=192, help="key/value heads x head dim")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h = args.hidden
    shapes = {"q/k/v": (h + 2 * args.kv_dim, h), "o": (h, h), "gate/up": (2 * args.intermediate, h),
              "down": (h, args.intermediate), "LM head": (args.vocab, h)}
    print(f"threads {torch.get_num_threads()}; read bandwidth (sum over 256 MB): {read_bandwidth():.1f} GB/s")
    print(f"{'dtype':9s} {'weight':8s} {'n x k':>12s} | {'1 row':>26s} | {'16 rows':>39s}")
    for dtype in (torch.bfloat16, torch.float32):
        for name, (n, k) in shapes.items():
            size = n * k * torch.finfo(dtype).bits // 8
            one, sixteen = product(n, k, 1, dtype), product(n, k, 16, dtype)
            rate = 2 * 16 * n * k / sixteen / 1e9
            print(f"{str(dtype)[6:]:9s} {name:8s} {n:>6d}x{k:<5d} | {one * 1e6:7.1f} us {size / one / 1e9:5.1f} GB/s"
                  f"     | {sixteen * 1e6:7.1f} us {size / sixteen / 1e9:5.1f} GB/s {rate:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
