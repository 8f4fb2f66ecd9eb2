"""One rule for the compute precision, by hardware: bf16 where the device runs it natively, else float32.

Why a rule and not a habit: on a CPU without native bf16 (AVX2 only: most laptops, many cloud VMs) bf16 is
emulated and about 10x slower than float32, so a bf16 default that is right on a GPU or an AVX512-BF16/AMX
CPU turns a 10-minute job into an hour. Every entry point asks `resolve_dtype` with the user's flag
(`auto` by default); an explicit `bfloat16`/`float32` always wins.

`RRE_FORCE_NO_NATIVE_BF16=1` makes `native_bf16()` answer False everywhere, so a machine with native bf16 can
time the path an AVX2-only CPU takes (float32 throughout) with one environment variable.
"""

from __future__ import annotations

import os

import torch

from rre.errors import DataError

FORCE_ENV = "RRE_FORCE_NO_NATIVE_BF16"  # =1: behave as on a CPU/GPU without native bf16 (time the AVX2 path)
CHOICES = ("auto", "bfloat16", "float32")
_ALIASES = {"bf16": "bfloat16", "fp32": "float32", "no": "float32", "float": "float32"}
_announced: set[tuple[str, str, str]] = set()


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matmuls run in hardware: a CUDA GPU that supports bf16, or a CPU with AVX512-BF16/AMX."""
    if os.environ.get(FORCE_ENV, "") not in ("", "0"):
        return False
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_device(device: str) -> str:
    """`auto`: the GPU where there is one, else the CPU; anything else as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(requested: str = "auto", device: str | torch.device = "cpu",
                  flag: str = "--precision") -> torch.dtype:
    """The compute dtype for `device`: `auto` picks bf16 only where it is native; explicit values win.
    A bad value raises DataError naming `flag` (entry points turn it into `error: ...`, exit code 2)."""
    name = _ALIASES.get(str(requested).lower(), str(requested).lower())
    if name not in CHOICES:
        raise DataError(f"{flag}={requested}: expected one of {', '.join(CHOICES)} (or bf16/fp32)")
    if name == "bfloat16":
        return torch.bfloat16
    if name == "float32":
        return torch.float32
    return torch.bfloat16 if native_bf16(device) else torch.float32


def mixed_precision_for(requested: str = "auto", device: str | torch.device = "cpu",
                        flag: str = "--mixed_precision") -> str:
    """The same rule in accelerate's words: "bf16" or "no"."""
    return "bf16" if resolve_dtype(requested, device, flag) == torch.bfloat16 else "no"


def describe(dtype: torch.dtype, requested: str, device: str | torch.device) -> str:
    device = torch.device(device)
    if requested not in ("auto", None):
        why = "requested"
    elif dtype == torch.bfloat16:
        why = "native bf16 on this device"
    elif os.environ.get(FORCE_ENV, "") not in ("", "0"):
        why = f"{FORCE_ENV} set"
    else:
        why = "no native bf16 on this device"
    return f"precision: {str(dtype).removeprefix('torch.')} on {device.type} ({why})"


def announce(what: str, dtype: torch.dtype, requested: str, device: str | torch.device) -> None:
    """Print the choice once per (what, dtype, device) in this process, so logs say which path ran."""
    key = (what, str(dtype), str(torch.device(device)))
    if key not in _announced:
        _announced.add(key)
        print(f"{what} {describe(dtype, requested, device)}", flush=True)
