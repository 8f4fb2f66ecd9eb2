"""ONNX Runtime backend of the relevance encoder (`--relevance_backend onnx | onnx-int8`): faster CPU scoring.

Why: pre-screening scores thousands of outputs per design, and the encoder's float32 arithmetic is the floor of
the PyTorch path on a CPU without native bf16. ONNX Runtime runs the same graph with fused kernels (`onnx`: float32,
dot products equal PyTorch's to ~1e-6), and with int8 weights (`onnx-int8`: dynamic per-channel quantization of the
linear layers; dot products move by a few hundredths, see the README for the measured bound).

Why not sentence-transformers' own `backend="onnx"/"openvino"`: they need optimum-onnx / optimum-intel, which
pin transformers 4.x (or replace torch) and so cannot live beside this project's transformers 5. Here the
encoder's transformer is exported once with `torch.onnx.export` and cached under
`~/.cache/reverse-reward-engineering/onnx/` (`$RRE_CACHE`); pooling, normalization and truncation stay as the
PyTorch path does them (mean pooling; normalized for all-MiniLM-L6-v2; left truncation for Contriever).
Needs `onnxruntime` and `onnx` (requirements.txt).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rre.batching import sorted_batches
from rre.errors import DataError
from rre.files import move_file
from rre.offline_models import DEFAULT_CACHE

BACKENDS = ("torch", "onnx", "onnx-int8")


class _LastHidden(torch.nn.Module):
    """The exported graph: token ids and mask in, last hidden state out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model: torch.nn.Module, tokenizer: Any, folder: Path, quantize: bool) -> Path:
    """model.onnx (float32), and model-int8.onnx when asked; written once, atomically, then reused."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        example = tokenizer(["an example sentence", "a second, longer example sentence"], padding=True,
                            return_tensors="pt")
        tmp = folder / ".model.onnx.tmp"
        with warnings.catch_warnings():  # the TorchScript exporter warns that it is deprecated; it still works
            warnings.simplefilter("ignore")
            torch.onnx.export(_LastHidden(model.float().eval()), (example["input_ids"], example["attention_mask"]),
                              str(tmp), dynamo=False, input_names=["input_ids", "attention_mask"],
                              output_names=["hidden"], opset_version=17,
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                            "hidden": {0: "batch", 1: "seq"}})
        move_file(tmp, fp32)
    if not quantize:
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / ".model-int8.onnx.tmp"
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        move_file(tmp, int8)
    return int8


class OnnxEncoder:
    """Embeddings of texts with an ONNX Runtime session; the same pooling as the PyTorch path."""

    def __init__(self, onnx_path: Path, tokenizer: Any, max_length: int, normalize: bool, batch_size: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer, self.max_length, self.normalize, self.batch_size = tokenizer, max_length, normalize, batch_size
        self.path = onnx_path

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = None
        for idx in sorted_batches([len(t) for t in texts], self.batch_size):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="np")
            ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)  # mean pooling
            if self.normalize:
                pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        return torch.from_numpy(out) if out is not None else torch.empty(0)


def onnx_backend(encoder: Any, backend: str) -> OnnxEncoder:
    """The ONNX backend of a loaded `RelevanceEncoder` (its model exported once and cached)."""
    if backend not in BACKENDS[1:]:
        raise DataError(f"--relevance_backend: unknown value {backend!r} (expected {' / '.join(BACKENDS)})")
    if encoder.device != "cpu":
        raise DataError(f"--relevance_backend {backend}: ONNX Runtime runs on the CPU here; use --reward_device cpu "
                        "or --relevance_backend torch")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise DataError(f"--relevance_backend {backend} needs onnxruntime and onnx (pip install -r requirements.txt)") from None
    if encoder.model_type == "sentence_transformers":
        st = encoder.st_model
        kinds = [type(m).__name__ for m in st]
        pooling = st[1].get_config_dict() if len(st) > 1 and kinds[1] == "Pooling" else {}
        mean = pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens", False)
        if kinds[0] != "Transformer" or not mean or set(kinds[2:]) - {"Normalize"}:
            raise DataError(f"--relevance_backend {backend}: {encoder.name} has modules {kinds}; the ONNX backend "
                            "supports Transformer + mean Pooling (+ Normalize); use --relevance_backend torch")
        model, tokenizer, max_length, normalize = st[0].auto_model, st[0].tokenizer, st.max_seq_length, "Normalize" in kinds
    else:
        model, tokenizer, max_length, normalize = encoder.model, encoder.tokenizer, encoder.max_length, False
    ident = json.dumps([str(encoder.name), model.config.to_dict(), torch.__version__], sort_keys=True, default=str)
    folder = DEFAULT_CACHE / "onnx" / f"{Path(str(encoder.name)).name}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"
    path = export_onnx(model, tokenizer, folder, quantize=backend == "onnx-int8")
    return OnnxEncoder(path, tokenizer, max_length, normalize, encoder.batch_size)
