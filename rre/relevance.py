"""e(.): the relevance encoder of the white-box reward's QR and RAR features.

The paper's code hard-codes facebook/contriever: mean pooling over the last hidden state and a raw dot product;
it is the default. A sentence-transformers model (all-MiniLM-L6-v2, the offline choice, `--relevance_model minilm`)
is used as its own modules define it; it normalizes, so its dot product is a cosine. Whether the encoder
normalizes decides `--rar_max_dot auto` (3.5, the paper's value for Contriever's raw dot products; 1.0 for a
cosine), read from the model's files before anything loads. Embeddings are cached: PPO revisits prompts every epoch.
It runs in float32 on every device, as the paper's encoder did; `--reward_dtype auto|bfloat16` trades that for speed.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch

from rre.batching import sorted_batches
from rre.offline_models import minilm_path
from rre.onnx_encoder import onnx_backend
from rre.precision import announce, resolve_device, resolve_dtype
from rre.files import read_json


def resolve_autocast_dtype(dtype: str, device: str) -> torch.dtype | None:
    """The autocast dtype of `--reward_dtype`: float32 by default (None: plain float32, as the paper's encoder ran);
    `auto` takes precision.py's rule (bf16 where native); an explicit bfloat16 always autocasts."""
    chosen = resolve_dtype(dtype, "cuda" if device.startswith("cuda") else "cpu", flag="--reward_dtype")
    return torch.bfloat16 if chosen == torch.bfloat16 else None


RELEVANCE_MODEL_TYPES = ("auto", "sentence_transformers", "contriever")
PAPER_ENCODER = "facebook/contriever"
OFFLINE_ALIAS = "minilm"  # --relevance_model minilm: the shipped all-MiniLM-L6-v2 (rre.offline_models)
RAW_DOT_RAR_MAX_DOT = 3.5  # the paper's value, calibrated on Contriever's raw dot products
COSINE_RAR_MAX_DOT = 1.0  # a normalized encoder's dot product is at most 1


def resolve_name(name_or_path: str | None) -> str:
    """The encoder folder or hub name behind a --relevance_model value (the alias `minilm` is the shipped MiniLM)."""
    if name_or_path is None:
        return PAPER_ENCODER
    return minilm_path() if name_or_path == OFFLINE_ALIAS else name_or_path


def _model_file(name: str, filename: str) -> Path | None:
    """A file of a local model folder or of a hub model (the hub cache, downloading it when online)."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(name, filename))
    except EntryNotFoundError:
        return None


def resolve_model_type(name: str, model_type: str = "auto") -> str:
    """auto: sentence_transformers for a local folder with modules.json or a sentence-transformers/ hub name,
    else contriever (mean pooling, raw dot product), as the paper's code used any plain encoder."""
    if model_type != "auto":
        return model_type
    local_st = (Path(name).expanduser() / "modules.json").exists()
    return "sentence_transformers" if local_st or name.startswith("sentence-transformers/") else "contriever"


def normalizes(name: str, model_type: str = "auto") -> bool:
    """Whether the encoder's embeddings are unit vectors: a sentence-transformers model with a Normalize module.
    Contriever-style mean pooling never normalizes."""
    name = resolve_name(name)
    if resolve_model_type(name, model_type) != "sentence_transformers":
        return False
    modules = _model_file(name, "modules.json")
    if modules is None:
        return False
    return any(str(m.get("type", "")).endswith("Normalize") for m in read_json(modules, "--relevance_model", expect=list)
               if isinstance(m, dict))


def auto_rar_max_dot(normalized: bool) -> float:
    return COSINE_RAR_MAX_DOT if normalized else RAW_DOT_RAR_MAX_DOT


class RelevanceEncoder:
    """e(.) with an embedding cache, so instructions and references seen before are not encoded again
    (PPO revisits prompts every epoch and the dev set at every evaluation).

    - sentence-transformers models are used as their own modules define them (all-MiniLM-L6-v2 normalizes,
      so its dot product is a cosine);
    - plain transformer encoders (facebook/contriever) get Contriever semantics: mean pooling over the last
      hidden state, raw dot product, truncation from the left to the encoder's max length.
    """

    def __init__(self, name_or_path: str | None = PAPER_ENCODER, model_type: str = "auto", batch_size: int = 64,
                 device: str = "auto", cache_size: int = 200_000, dtype: str = "float32", backend: str = "torch"):
        name_or_path = resolve_name(name_or_path)
        self.name = name_or_path
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_autocast_dtype(dtype, self.device)
        announce("relevance encoder", self.autocast_dtype or torch.float32, dtype, self.device)
        self.batch_size = batch_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size
        model_type = resolve_model_type(name_or_path, model_type)
        if model_type not in RELEVANCE_MODEL_TYPES[1:]:
            raise ValueError(f"relevance_model_type must be auto, sentence_transformers or contriever, got {model_type!r}")
        self.model_type = model_type
        self.normalized = normalizes(name_or_path, model_type)  # decides --rar_max_dot auto
        if model_type == "sentence_transformers":
            from sentence_transformers import SentenceTransformer

            self.st_model = SentenceTransformer(name_or_path, device=self.device)
        else:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, truncation_side="left")
            self.model = AutoModel.from_pretrained(name_or_path).to(self.device).eval()
            self.max_length = min(self.tokenizer.model_max_length, 512)
        self.backend = backend
        self.onnx = None  # an ONNX Runtime session in place of the PyTorch forward (onnx_encoder.py)
        if backend != "torch":
            self.onnx = onnx_backend(self, backend)

    def _encode_uncached(self, texts: list[str]) -> torch.Tensor:
        if self.onnx is not None:
            return self.onnx.encode(texts)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=self.autocast_dtype or torch.float32,
                                                    enabled=self.autocast_dtype is not None):
            return self._forward(texts)

    def _forward(self, texts: list[str]) -> torch.Tensor:
        if self.model_type == "sentence_transformers":
            return self.st_model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                        show_progress_bar=False).float().cpu()
        out = torch.empty(len(texts), self.model.config.hidden_size)
        for idx in sorted_batches([len(t) for t in texts], self.batch_size):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[idx] = ((hidden * mask).sum(1) / mask.sum(1)).float().cpu()  # mean pooling
        return out

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of texts, one encoder pass over the distinct texts not cached yet."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            for text, emb in zip(missing, self._encode_uncached(missing)):
                self.cache[text] = emb
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        for t in texts:
            self.cache.move_to_end(t)
        return torch.stack([self.cache[t] for t in texts]) if texts else torch.empty(0)
