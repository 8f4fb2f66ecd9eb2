"""Experiment (not a test): PPO on SmolLM2-135M-Instruct on CPU, the paper's settings at small scale.

Alpaca prompt format, AlpacaFarm validation prompts (read in place from the shared data folder), reward =
length incentive x repetition penalty, batch 16, mini-batch 2, gradient accumulation 4, 4 PPO epochs,
64 new tokens, LoRA r=8 on q/v, learning rate 1e-4 (the paper's 1e-5 is meant for 10000 steps and barely
moves the policy in 30). Prints the mean proxy reward per step (it should rise), the step-time split
(generation / reward / forward / update), the median step time, and for each phase its arithmetic (FLOPs from
the model's shapes and the tokens it processed, `phase_flops`) and the rate it reached, beside the dense-matmul
rate this CPU reaches at the same dtype (`matmul_rate`): the distance from the floor. For scale: the paper's
stack (TRL 0.7.4) took 60.9-70.5 s per step with these settings on a 2-core AMD EPYC (docs/performance.md).

    python bench/ppo_smollm2.py                    # 30 steps
    python bench/ppo_smollm2.py --steps 3          # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import rre.openmp  # noqa: E402,F401  (before torch: OpenMP's barrier wait, as the training scripts set it)

from arithmetic import forward_flops, layer_and_head_params, matmul_rate  # noqa: E402
from rre.paper_data import require_data_file  # noqa: E402

DEFAULT_PROMPTS = Path(__file__).resolve().parents[1] / "data/alpacafarm_val.json"  # bash scripts/get_paper_data.sh


def phase_flops(body: int, head: int, rows: int, query: float, response: float, epochs: int) -> dict[str, float]:
    """FLOPs per phase of one PPO step (2 per weight per token for a forward; attention left out, a few % here).

    generation: every prompt and response token through the layers once, the LM head on response tokens only;
    forward: the same sequences through the policy and the reference model; update: `epochs` passes of a forward
    and a backward that computes input gradients only (the base is frozen; LoRA's own gradients are negligible),
    about as much as the forward."""
    forward = forward_flops(body, head, rows * (query + response), rows * response)
    return {"generation": forward, "forward": 2 * forward, "update": epochs * 2 * forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="AlpacaFarm-format prompt file")
    parser.add_argument("--model_name", default=None, help="default: offline SmolLM2-135M-Instruct")
    parser.add_argument("--mixed_precision", default="auto", choices=["auto", "bf16", "no"],
                        help="auto: bf16 where native (precision.py); bf16: frozen base weights in bf16 under "
                        "autocast, LoRA/value head/logits in fp32; no: float32")
    parser.add_argument("--num_threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--max_prompt_length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--learning_rate", type=float, default=1e-4,
                        help="the paper's 1e-5 is for 10000 steps; 30 steps need a larger step to show a trend")
    parser.add_argument("--json_out", default=None, help="also write the per-step figures here")
    opts = parser.parse_args()
    require_data_file("prompts", opts.prompts)

    import torch

    from rre.errors import exit_on_data_error
    from run_ppo import parse_args, setup

    flags = [
        f"--dataset_path={opts.prompts}", "--prompt_format=alpaca", f"--overall_steps={opts.steps}",
        "--batch_size=16", "--mini_batch_size=2", "--gradient_accumulation_steps=4", "--ppo_epochs=4",
        "--output_max_length=64", f"--max_prompt_length={opts.max_prompt_length}",
        f"--learning_rate={opts.learning_rate}",
        "--lora_r=8", "--lora_alpha=16", "--lora_dropout=0.05", "--save_freq=0", f"--seed={opts.seed}",
        "--length_incentive=true", "--repetition_penalty=true", "--relevance_scaling=false",
        "--reward_branching=false", f"--mixed_precision={opts.mixed_precision}", "--log_with=none",
        f"--output_dir={tempfile.mkdtemp(prefix='ppo_bench_')}/run",
    ]
    if opts.model_name:
        flags.append(f"--model_name={opts.model_name}")
    if opts.num_threads:
        flags.append(f"--num_threads={opts.num_threads}")
        torch.set_num_threads(opts.num_threads)
    args, ppo_config, reward_config = parse_args(flags)
    with exit_on_data_error():
        run = setup(args, ppo_config, reward_config)
    print(f"torch threads: {torch.get_num_threads()}; mixed precision: {run.accelerator.mixed_precision}; "
          f"device: {run.accelerator.device}", flush=True)

    body, head = layer_and_head_params(run.trainer.unwrapped.causal_lm)
    dtype = torch.bfloat16 if run.accelerator.mixed_precision == "bf16" else torch.float32
    ceiling = matmul_rate(dtype)
    print(f"model: {body / 1e6:.1f}M parameters in the layers, {head / 1e6:.1f}M in the LM head; "
          f"dense {str(dtype).removeprefix('torch.')} matmul on this CPU: {ceiling:.0f} GFLOP/s", flush=True)

    rows = []
    start = time.perf_counter()
    for step in range(1, opts.steps + 1):
        idx = run.stream.next_indices()
        s = run.trainer.step([run.train_examples[i] for i in idx], [run.train_prompts[i] for i in idx])
        rows.append(s)
        print(f"step {step:3d} | reward {s['env/reward_mean']:.4f} +/- {s['env/reward_std']:.4f} | "
              f"kl {s.get('objective/kl', float('nan')):7.4f} | ratio {s.get('ppo/policy/ratio', float('nan')):.4f} | "
              f"len {s['tokens/responses_len_mean']:5.1f} | query {s['tokens/queries_len_mean']:5.1f} | "
              f"step {s['time/step']:5.1f}s = gen {s['time/generation']:5.1f} + reward {s['time/reward']:4.2f} + "
              f"fwd {s['time/forward']:4.1f} + update {s['time/update']:5.1f}", flush=True)
    total = time.perf_counter() - start

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print("\nmean proxy reward per step (the curve):")
    print(" ".join(f"{r['env/reward_mean']:.3f}" for r in rows))
    k = max(1, min(5, len(rows) // 3))
    first = statistics.mean(r["env/reward_mean"] for r in rows[:k])
    last = statistics.mean(r["env/reward_mean"] for r in rows[-k:])
    print(f"mean reward, first {k} steps: {first:.4f}; last {k} steps: {last:.4f} (change {last - first:+.4f})")
    print(f"median step time: {med('time/step'):.1f} s  (median split: generation {med('time/generation'):.1f} s, "
          f"reward {med('time/reward'):.2f} s, forward {med('time/forward'):.1f} s, update {med('time/update'):.1f} s)")
    print("\nphase arithmetic (median step): GFLOP, time, rate reached, share of the dense-matmul rate")
    for phase in ("generation", "forward", "update"):
        flops = statistics.median(phase_flops(body, head, 16, r["tokens/queries_len_mean"],
                                              r["tokens/responses_len_mean"], 4)[phase] for r in rows)
        seconds = med(f"time/{phase}")
        print(f"  {phase:10s} {flops / 1e9:7.1f} GFLOP  {seconds:5.1f} s  {flops / seconds / 1e9:6.1f} GFLOP/s  "
              f"{100 * flops / seconds / 1e9 / ceiling:5.1f}% of {ceiling:.0f}")
    print(f"total wall time: {total:.0f} s for {len(rows)} steps; skipped steps: {int(rows[-1]['ppo/skipped_steps'])}, "
          f"skipped mini-batches: {int(rows[-1]['ppo/skipped_minibatches'])}")
    if opts.json_out:
        Path(opts.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
