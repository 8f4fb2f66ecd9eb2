"""Random-weight stand-ins for bench/gpu_check.sh: no downloads, only configs and the small tokenizer files.

A GPU machine that runs the check has torch, transformers, peft, accelerate and sentence-transformers but no
model files and no internet. Speed depends on a model's shape, not on its weights, so the check builds models
of the real shapes with random weights:

- policy: a Llama-shaped ~1.1B causal LM (TinyLlama-1.1B's shape: hidden 2048, 22 layers, 32 heads, 4 KV heads)
  with SmolLM2's tokenizer and chat template;
- encoder: all-MiniLM-L6-v2's exact architecture (a 6-layer BERT, mean pooling, normalize) in its
  sentence-transformers layout, random weights, its real tokenizer files;
- contriever: facebook/contriever's architecture (bert-base-uncased: 12 layers, hidden 768, 110M parameters) as
  a plain transformers folder, so the reward uses it as the paper's code used Contriever (mean pooling, raw dot
  product, --rar_max_dot auto -> 3.5); random weights, the same uncased WordPiece tokenizer files as MiniLM's.

The gold reward model is built by bench/gold_throughput.py itself (a Starling-layout Llama; its size by flags).

    python bench/gpu_models.py --assets .gpu_assets --out /tmp/gpu_models [--tiny]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

POLICY_SHAPES = {
    # TinyLlama-1.1B: 1.1B parameters with SmolLM2's 49,152-token vocabulary.
    "full": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4),
    # --tiny: the same code paths in seconds on a CPU (the dry run).
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
}


def build_policy(tokenizer_dir: Path, out: Path, shape: str) -> int:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **POLICY_SHAPES[shape])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init is fast on the GPU
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)  # bf16 safetensors: run_ppo.py loads them in its own precision
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def build_encoder(minilm_dir: Path, out: Path) -> int:
    """all-MiniLM-L6-v2's folder with random weights: the small files copied, the weights made from its config."""
    from transformers import BertConfig, BertModel

    shutil.copytree(minilm_dir, out, dirs_exist_ok=True)
    config = BertConfig.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


CONTRIEVER_SHAPES = {
    "full": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
}


def build_contriever(minilm_dir: Path, out: Path, shape: str) -> int:
    """A plain BERT encoder of Contriever's shape (no sentence-transformers modules: Contriever semantics)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **CONTRIEVER_SHAPES[shape])
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=".gpu_assets", help="folder made by bench/gpu_prepare.sh")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="tiny policy (the dry run)")
    args = parser.parse_args()
    assets, out = Path(args.assets), Path(args.out)
    for need in ("smollm2_tokenizer/tokenizer.json", "minilm/modules.json"):
        if not (assets / need).is_file():
            print(f"error: --assets {assets}: {need} missing; run bench/gpu_prepare.sh first", file=sys.stderr)
            sys.exit(2)
    n_policy = build_policy(assets / "smollm2_tokenizer", out / "policy", "tiny" if args.tiny else "full")
    n_encoder = build_encoder(assets / "minilm", out / "encoder")
    n_contriever = build_contriever(assets / "minilm", out / "contriever", "tiny" if args.tiny else "full")
    print(f"policy: {n_policy / 1e9:.3f}B parameters (random, Llama-shaped) -> {out / 'policy'}")
    print(f"encoder: {n_encoder / 1e6:.1f}M parameters (random, all-MiniLM-L6-v2 architecture) -> {out / 'encoder'}")
    print(f"contriever: {n_contriever / 1e6:.1f}M parameters (random, facebook/contriever's architecture) -> "
          f"{out / 'contriever'}")


if __name__ == "__main__":
    main()
