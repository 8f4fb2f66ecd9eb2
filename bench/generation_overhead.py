"""Where a PPO rollout's time goes on CPU: `generate()` vs the model's own forward passes.

Loads SmolLM2-135M-Instruct with the PPO LoRA adapter (r=8 on q/v, as run_ppo.py), samples 8 x 64 tokens from
8 AlpacaFarm prompts exactly as ppo.py does, and prints per-token times of:
- `generate()` (transformers' sampling loop, as ppo.py calls it),
- the same forward passes with no generation loop around them (prefill, then one token at a time with the KV
  cache), which is the floor that a leaner loop could reach,
and a torch profile of one generate() call (the top operators by self CPU time), so the choice of what to
optimise rests on a measurement. Compare numbers from one run only (the machine may be shared).

    python bench/generation_overhead.py [--new_tokens 64] [--batch 8] [--mixed_precision auto|bf16|no]
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
DATA = Path(__file__).resolve().parents[2] / "shared/data/alpacafarm_val.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mixed_precision", default="auto", choices=["auto", "bf16", "no"])
    parser.add_argument("--data", default=str(DATA if DATA.is_file() else ROOT / "data/train.json"))
    parser.add_argument("--profile", action="store_true", help="also print a torch profile of one generate()")
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from data import load_examples
    from offline_models import smollm2_path
    from precision import mixed_precision_for
    from prompts import get_prompt_format

    mp = mixed_precision_for("auto" if args.mixed_precision == "auto" else
                             {"bf16": "bfloat16", "no": "float32"}[args.mixed_precision], "cpu")
    path = smollm2_path()
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if mp == "bf16" else torch.float32,
                                                attn_implementation="eager")
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "v_proj"]), autocast_adapter_dtype=True).eval()
    fmt = get_prompt_format("chat", tok)
    examples = load_examples(args.data)[: args.batch]
    prompts = [tok(fmt.build(e.instruction, e.input), add_special_tokens=False).input_ids for e in examples]
    width = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    gen_cfg = GenerationConfig(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, repetition_penalty=1.0,
                               max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, use_cache=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mp == "bf16")
    print(f"{args.batch} prompts (max {width} tokens), {args.new_tokens} new tokens each, precision {mp}, "
          f"torch threads {torch.get_num_threads()}")

    def run_generate() -> float:
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
        return time.perf_counter() - start

    def run_forwards() -> float:
        """The same forward passes (prefill + one token per step with the cache), no sampling loop around them."""
        from transformers import DynamicCache

        start = time.perf_counter()
        with torch.no_grad(), autocast:
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            cache = DynamicCache(config=base.config)
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                        logits_to_keep=1)
            m, p = mask, pos[:, -1:]
            for _ in range(args.new_tokens - 1):
                nxt = out.logits[:, -1].float().argmax(-1, keepdim=True)
                m = torch.cat([m, torch.ones_like(nxt)], dim=1)
                p = p + 1
                out = model(input_ids=nxt, attention_mask=m, position_ids=p, past_key_values=cache, use_cache=True)
        return time.perf_counter() - start

    run_generate()  # warm-up
    gen = min(run_generate() for _ in range(2))
    fwd = min(run_forwards() for _ in range(2))
    n = args.new_tokens
    print(f"generate():           {gen:6.2f} s  ({1e3 * gen / n:5.1f} ms per token step)")
    print(f"forward passes only:  {fwd:6.2f} s  ({1e3 * fwd / n:5.1f} ms per token step)")
    print(f"generation loop overhead: {100 * (gen - fwd) / gen:.0f}% of generate()")
    with torch.no_grad(), autocast:
        model.disable_adapter_layers()
        lora_off = min(run_forwards() for _ in range(2))
        model.enable_adapter_layers()
    print(f"forward passes, LoRA layers disabled: {lora_off:6.2f} s ({1e3 * lora_off / n:5.1f} ms per token step): "
          f"the adapter's share {100 * (fwd - lora_off) / fwd:.0f}%")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_generate()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
