"""docs/gpu.md's commands that run on a CPU, read from the page itself so the page cannot drift from them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from helpers import ENV, ROOT
from safetensors import safe_open

GUIDE = (ROOT / "docs" / "gpu.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", GUIDE, re.S)


def test_the_bf16_safetensors_copy(tiny_llama_dir, tmp_path):
    """The guide's one-off conversion of the recovered sft10k (float32) into bf16 safetensors, run on a tiny Llama
    saved in float32: the copy holds the same weights rounded once to bf16, and the tokenizer."""
    (block,) = [b for b in bash_blocks() if "save_pretrained(dst, safe_serialization=True)" in b]
    src, dst = tmp_path / "sft10k-float32", tmp_path / "sft10k"
    command = block.replace("/models/alpaca_farm/sft10k", shlex.quote(str(src))).replace("/models/sft10k",
                                                                                          shlex.quote(str(dst)))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    model.save_pretrained(src)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(src)
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (dst / "tokenizer_config.json").is_file()
    with safe_open(str(dst / "model.safetensors"), "pt") as f:
        embed = f.get_tensor("model.embed_tokens.weight")
    assert embed.dtype == torch.bfloat16
    assert torch.equal(embed, model.get_input_embeddings().weight.detach().to(torch.bfloat16))
