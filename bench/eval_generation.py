"""Experiment (not a test): evaluation.py's answering, the decode path (`--sampler loop`, default) against HF
generate (`--sampler generate`, the paper's), on the same checkpoint and prompts, with the arithmetic.

Prints for each sampler the wall time, the answer tokens, the useful arithmetic (every prompt and answer token
through the layers, the LM head on answer tokens: `arithmetic.forward_flops`), the rate that reaches and its
share of this CPU's dense-matmul rate at the same dtype. The quickstart's eval phase by default: SmolLM2-135M-
Instruct, data/eval.json (30 instructions), batch 16, 128 new tokens, temperature 0.7, top_k 50.

    python bench/eval_generation.py                                        # the base policy
    python bench/eval_generation.py --peft_model_name runs/quickstart/policy_step_24 --max_new_tokens 512
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import rre.openmp  # noqa: E402,F401  (before torch: OpenMP's barrier wait, as the training scripts set it)

from arithmetic import forward_flops, layer_and_head_params, matmul_rate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base_model_name", default=None, help="default: offline SmolLM2-135M-Instruct")
    parser.add_argument("--peft_model_name", default=None)
    parser.add_argument("--eval_path", default=str(ROOT / "data/eval.json"))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--samplers", default="generate,loop", help="comma-separated: loop, generate")
    parser.add_argument("--precision", default="auto", choices=["auto", "bfloat16", "float32"])
    parser.add_argument("--seed", type=int, default=42)
    opts = parser.parse_args()

    import torch
    from transformers import set_seed

    import evaluation
    from rre.data import load_examples
    from rre.errors import exit_on_data_error
    from rre.offline_models import smollm2_path
    from rre.prompts import resolve_prompt_format

    with exit_on_data_error():
        examples = load_examples(opts.eval_path, require_reference=False)
    model, tok = evaluation.load_policy(opts.base_model_name or smollm2_path(), opts.peft_model_name,
                                        precision=opts.precision)
    fmt = resolve_prompt_format("auto", tok)
    prompts = [fmt.build(ex.instruction, ex.input) for ex in examples]
    dtype = next(model.parameters()).dtype
    body, head = layer_and_head_params(model)
    ceiling = matmul_rate(dtype)
    prompt_tokens = sum(len(ids) for ids in tok(prompts, add_special_tokens=fmt.name == "alpaca").input_ids)
    print(f"{len(prompts)} prompts ({prompt_tokens} tokens), batch {opts.batch_size}, {opts.max_new_tokens} new tokens, "
          f"{str(dtype).removeprefix('torch.')}; dense matmul on this CPU: {ceiling:.0f} GFLOP/s; torch threads "
          f"{torch.get_num_threads()}", flush=True)
    times = {}
    for sampler in opts.samplers.split(","):
        set_seed(opts.seed)
        start = time.perf_counter()
        answers = evaluation.generate_responses(model, tok, fmt, prompts, opts.batch_size, opts.max_new_tokens,
                                                do_sample=True, temperature=0.7, top_p=1.0, top_k=50,
                                                desc=sampler, sampler=sampler)
        times[sampler] = seconds = time.perf_counter() - start
        answer_tokens = sum(len(ids) for ids in tok(answers, add_special_tokens=False).input_ids)
        flops = forward_flops(body, head, prompt_tokens + answer_tokens, answer_tokens)
        print(f"{sampler:8s}: {seconds:6.1f} s, {answer_tokens} answer tokens ({answer_tokens / seconds:.0f}/s), "
              f"{flops / 1e9:.0f} GFLOP useful, {flops / seconds / 1e9:.1f} GFLOP/s = "
              f"{100 * flops / seconds / 1e9 / ceiling:.1f}% of the matmul rate", flush=True)
    if {"loop", "generate"} <= set(times):
        print(f"loop vs generate: {times['generate'] / times['loop']:.1f}x faster")


if __name__ == "__main__":
    main()
