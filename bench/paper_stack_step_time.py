"""The paper's stack, timed: PPO steps of TRL 0.7.4 (`PPOTrainer.generate` + `PPOTrainer.step`) with the paper's
flags on SmolLM2-135M-Instruct, for the side-by-side with `bench/ppo_smollm2.py` (same prompts, same flags).

Batch 16, mini-batch 2, gradient_accumulation_steps 4, 4 PPO epochs, LoRA r 8 / alpha 16 / dropout 0.05 on the
attention's q and v (peft's default for Llama), sampling top_k 0, top_p 1.0, 64 new tokens, learning rate 1e-4,
float32 (accelerate 0.23 cannot run DeepSpeed or bf16 autocast on a CPU). The score is LI x RP as in
`ppo_smollm2.py` (cheap next to the step; computed here with plain Python so this file imports nothing of the
project, whose requirements it cannot share). Prints the median step and its split.

Needs the paper's stack in its own venv (see bench/trl074_optimizer_steps.py for the install line):
    /work/scratch-trl074/bin/python bench/paper_stack_step_time.py --model $(python -c \
        'from rre.offline_models import smollm2_path; print(smollm2_path())' | tail -1) --steps 4
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import PreTrainedTokenizerFast
from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def li_x_rp(text: str, target_words: int = 200) -> float:
    """A length incentive times a repetition penalty: unique words over words, times length up to a target."""
    words = text.split()
    if not words:
        return 0.0
    return min(len(words) / target_words, 1.0) * len(set(words)) / len(words)


def for_transformers_435(folder: str) -> Path:
    """A folder transformers 4.35 reads as the same model: transformers 5 writes `rope_parameters` where 4.35
    reads `rope_theta` (else it would take 10000, not SmolLM2's 100000) and a null `quantization_config` 4.35
    cannot serialize. The weights are linked, not copied."""
    config = json.load(open(f"{folder}/config.json"))
    config["rope_theta"] = config.pop("rope_parameters", {}).get("rope_theta", config.get("rope_theta", 10000.0))
    config.pop("quantization_config", None)
    config["torch_dtype"] = config.pop("dtype", "float32")
    out = Path(tempfile.mkdtemp())
    (out / "config.json").write_text(json.dumps(config))
    (out / "model.safetensors").symlink_to(Path(folder, "model.safetensors").resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="SmolLM2-135M-Instruct folder (safetensors)")
    parser.add_argument("--prompts", default="/work/shared/data/alpacafarm_val.json")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    opts = parser.parse_args()

    torch.manual_seed(opts.seed)
    # The folder was written by transformers 5, whose tokenizer class 4.35 does not know: the same tokenizer.json
    # and special tokens through the fast class 4.35 has.
    model_dir = for_transformers_435(opts.model)
    # Newer tokenizers also write BPE merges as pairs; the tokenizers release 4.35 pins reads "a b" strings.
    special = json.load(open(f"{opts.model}/tokenizer_config.json"))
    spec = json.load(open(f"{opts.model}/tokenizer.json"))
    spec["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    tokenizer_file = Path(tempfile.mkdtemp()) / "tokenizer.json"
    tokenizer_file.write_text(json.dumps(spec))
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file),
                                  **{k: special[k] for k in ("bos_token", "eos_token", "pad_token") if special.get(k)})
    tok.pad_token = tok.pad_token or tok.eos_token
    records = json.load(open(opts.prompts))
    prompts = [tok(ALPACA.format(instruction=r["input"]), return_tensors="pt").input_ids[0] for r in records]
    prompts = [p for p in prompts if len(p) <= 256]
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM")
    model = AutoModelForCausalLMWithValueHead.from_pretrained(str(model_dir), peft_config=lora)
    config = PPOConfig(batch_size=16, mini_batch_size=2, gradient_accumulation_steps=4, ppo_epochs=4,
                       learning_rate=1e-4, log_with=None, seed=opts.seed)
    trainer = PPOTrainer(config, model, ref_model=None, tokenizer=tok)
    generation = {"top_k": 0.0, "top_p": 1.0, "do_sample": True, "pad_token_id": tok.pad_token_id,
                  "eos_token_id": tok.eos_token_id, "max_new_tokens": 64}
    print(f"torch threads {torch.get_num_threads()}; {len(prompts)} prompts; float32", flush=True)
    rows = []
    for step in range(opts.steps):
        batch = prompts[step * 16:(step + 1) * 16]
        t0 = time.perf_counter()
        responses = trainer.generate(batch, return_prompt=False, batch_size=16, **generation)
        t1 = time.perf_counter()
        scores = [torch.tensor(li_x_rp(t)) for t in tok.batch_decode(responses, skip_special_tokens=True)]
        t2 = time.perf_counter()
        stats = trainer.step(batch, responses, scores)
        t3 = time.perf_counter()
        rows.append({"step": t3 - t0, "generation": t1 - t0, "reward": t2 - t1, "train": t3 - t2,
                     "forward": stats["time/ppo/forward_pass"], "update": stats["time/ppo/optimize_step"]})
        r = rows[-1]
        print(f"step {step + 1} | reward {statistics.mean(float(s) for s in scores):.3f} | len "
              f"{statistics.mean(len(x) for x in responses):.1f} | {r['step']:.1f}s = gen {r['generation']:.1f} + "
              f"step() {r['train']:.1f} (forward {r['forward']:.1f}, update {r['update']:.1f})", flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"median step time: {med['step']:.1f} s (generation {med['generation']:.1f} s, forward {med['forward']:.1f} s, "
          f"update {med['update']:.1f} s, the rest of step() {med['train'] - med['forward'] - med['update']:.1f} s)")


if __name__ == "__main__":
    main()
