"""What the test files share: where the repository is, the environment of the commands they start, how a command
is started (plain python or accelerate launch), and the tiny Llama configuration of the model fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A command started from a test: no hub access (a hub call fails fast), no tokenizer threads beside the test's,
# and unbuffered output, so what a killed or failing run printed last is there to read.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def accelerate_launch(config: str = "configs/zero2-cpu.yaml", processes: int = 2) -> list[str]:
    """`accelerate launch` through a launch config (by default DeepSpeed ZeRO-2 on the CPU; a path relative to
    ROOT, where run_cli runs)."""
    return ["accelerate", "launch", "--config_file", config, "--num_processes", str(processes)]


DEEPSPEED_LAUNCH = accelerate_launch()  # two processes: ZeRO-2 partitions the optimizer state between them


def paper_config_launch(script: str = "run_ppo.py") -> list[str]:
    """`accelerate launch` of one process on one machine through the paper's configs/zero2-bf16.yaml, then the
    script; absolute paths, so it runs from any folder."""
    return [*accelerate_launch(str(ROOT / "configs" / "zero2-bf16.yaml"), processes=1), "--num_machines", "1",
            str(ROOT / script)]


def run_cli(script: str, args: Sequence[str], launcher: list[str] | None = None, expect_rc: int | None = 0,
            timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command of the repository (`script`, relative to ROOT) with ENV, under `launcher` or plain python,
    from ROOT; asserts its exit code is `expect_rc` (None: the caller checks it) and returns the process."""
    cmd = (launcher or [sys.executable]) + [script, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    if expect_rc is not None:
        assert proc.returncode == expect_rc, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def tiny_llama_config(tokenizer, **overrides):
    """A two-layer Llama of width 64 over `tokenizer`'s vocabulary: real layout, random weights, fast on a CPU."""
    from transformers import LlamaConfig

    kwargs = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)
