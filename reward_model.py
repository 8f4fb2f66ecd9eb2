"""Reward models.

1. `ReversedEngineeredRewardForInference` (RER): the paper's white-box proxy reward, built from interpretable
   features of a (query, response, reference, qtype) sample:

       LI  = |tokens(response)| / 100                      length incentive (1.0 when off)
       RP  = |distinct trigrams| / |trigrams|              repetition penalty (1.0 under 3 tokens)
       QR  = e(query) . e(response)                        query relevance
       RAR = e(reference) . e(response)                    reference-answer relevance

       score  = LI                                         without relevance
              = LI x QR                                    relevance, no branching (or OPENENDED)
              = RAR / rar_max_dot x max_sequence_length/100   CONSTRAINED, with branching
       reward = score x RP                                 when RP is on

   Tokens are `nltk.wordpunct_tokenize` of the cleaned response (stripped, cut at the prompt format's role
   markers and the stop strings). e(.) is the relevance encoder (`RelevanceEncoder`).

2. Gold reward models (black-box judges for the monotonicity check) live further down.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from nltk.tokenize import wordpunct_tokenize
from tqdm.auto import tqdm

from data import DataError, Example
from precision import resolve_device
from prompts import ALPACA_ROLE_MARKERS, STOP_STRINGS, clean_response


@dataclass
class RewardConfig:
    """Flags of the white-box reward; names follow the paper's training arguments."""

    length_incentive: bool = field(default=True, metadata={"help": "LI: multiply by #tokens/100"})
    repetition_penalty: bool = field(default=True, metadata={"help": "RP: multiply by distinct/all trigrams"})
    relevance_scaling: bool = field(default=True, metadata={"help": "QR: multiply by e(query).e(response)"})
    reward_branching: bool = field(
        default=True, metadata={"help": "CONSTRAINED instructions score RAR against the reference instead"}
    )
    do_strip: bool = field(default=True, metadata={"help": "strip and cut responses at role markers/stop strings"})
    max_sequence_length: int = field(
        default=512, metadata={"help": "top of the RAR interpolation range is max_sequence_length/100"}
    )
    rar_max_dot: float = field(
        default=3.5,
        metadata={
            "help": "RAR dot product mapped to the top of the range. 3.5 is calibrated for Contriever's raw "
            "dot products; for a normalized (cosine) encoder such as MiniLM use about 1.0"
        },
    )
    relevance_model: str | None = field(
        default=None,
        metadata={"help": "relevance encoder: hub name or folder (default: offline all-MiniLM-L6-v2; "
                  "the paper used facebook/contriever)"},
    )
    relevance_model_type: str = field(
        default="auto",
        metadata={"help": "auto | sentence_transformers | contriever (mean pooling, raw dot product)"},
    )
    reward_model_batch_size: int = field(
        default=8, metadata={"help": "relevance encoder batch size (texts per forward; texts are sorted by length "
                             "first). 8 as the paper's command; on a CPU small batches are also the fastest "
                             "(less padding: 1.7x over 64 measured, see README)"})
    reward_device: str = field(default="auto", metadata={"help": "device of the relevance encoder"})
    reward_dtype: str = field(
        default="auto",
        metadata={"help": "relevance encoder precision: float32 | bfloat16 (autocast; weights stay float32) | auto: "
                  "bfloat16 on a CPU with native bf16 (about 2x faster; dot products agree to ~1e-3), else float32"},
    )

    relevance_backend: str = field(
        default="torch",
        metadata={"help": "relevance encoder runtime: torch (the exact path) | onnx (ONNX Runtime, float32, CPU) | "
                  "onnx-int8 (int8 weights: fastest on CPU; dot products move by a few hundredths)"},
    )

    @property
    def uses_relevance(self) -> bool:
        return self.relevance_scaling


# ---------------------------------------------------------------------------------------------------------
# The white-box features, each one named as in the paper.


def tokenize(response: str) -> list[str]:
    return wordpunct_tokenize(response)


def length_incentive(tokens: Sequence[str]) -> float:
    """LI: longer answers score higher, in units of 100 tokens."""
    return len(tokens) / 100.0


def repetition_penalty(tokens: Sequence[str]) -> float:
    """RP: share of distinct word trigrams; 1.0 when there is no trigram to repeat."""
    if len(tokens) < 3:
        return 1.0
    trigrams = list(zip(tokens, tokens[1:], tokens[2:]))
    return len(set(trigrams)) / len(trigrams)


def interpolate_rar(rar: float, rar_max_dot: float, max_sequence_length: int) -> float:
    """Map RAR linearly from [0, rar_max_dot] onto [0, max_sequence_length/100], so a CONSTRAINED answer that
    matches its reference earns what a maximal-length OPENENDED answer could. Not clipped, as in the paper:
    a dot product above rar_max_dot earns more than the top of the range."""
    return rar / rar_max_dot * (max_sequence_length / 100.0)


def paper_reward(f: dict[str, float | str | None], config: RewardConfig) -> float:
    """Combine the features exactly as the paper does (see the module docstring)."""
    li = f["LI"] if config.length_incentive else 1.0  # LI and RP are 1.0 when off
    if config.relevance_scaling and config.reward_branching and f["qtype"] == "CONSTRAINED":
        score = interpolate_rar(f["RAR"], config.rar_max_dot, config.max_sequence_length)
    elif config.relevance_scaling:
        score = li * f["QR"]
    else:
        score = li
    return score * (f["RP"] if config.repetition_penalty else 1.0)


# ---------------------------------------------------------------------------------------------------------
# e(.): the relevance encoder.


def resolve_autocast_dtype(dtype: str, device: str) -> torch.dtype | None:
    """bf16 autocast where the device runs bf16 natively (precision.py's rule); None means plain float32."""
    from precision import resolve_dtype

    chosen = resolve_dtype(dtype, "cuda" if device.startswith("cuda") else "cpu", flag="--reward_dtype")
    return torch.bfloat16 if chosen == torch.bfloat16 else None


RELEVANCE_MODEL_TYPES = ("auto", "sentence_transformers", "contriever")


class RelevanceEncoder:
    """e(.) with an embedding cache, so instructions and references seen before are not encoded again
    (PPO revisits prompts every epoch and the dev set at every evaluation).

    - sentence-transformers models are used as their own modules define them (all-MiniLM-L6-v2 normalizes,
      so its dot product is a cosine);
    - plain transformer encoders (facebook/contriever) get Contriever semantics: mean pooling over the last
      hidden state, raw dot product, truncation from the left to the encoder's max length.
    """

    def __init__(self, name_or_path: str | None = None, model_type: str = "auto", batch_size: int = 64,
                 device: str = "auto", cache_size: int = 200_000, dtype: str = "auto", backend: str = "torch"):
        if name_or_path is None:
            from offline_models import minilm_path

            name_or_path = minilm_path()
        self.name = name_or_path
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_autocast_dtype(dtype, self.device)
        from precision import announce

        announce("relevance encoder", self.autocast_dtype or torch.float32, dtype, self.device)
        self.batch_size = batch_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size
        if model_type == "auto":
            local_st = (Path(name_or_path) / "modules.json").exists()
            model_type = "sentence_transformers" if local_st or name_or_path.startswith("sentence-transformers/") else "contriever"
        if model_type not in RELEVANCE_MODEL_TYPES[1:]:
            raise ValueError(f"relevance_model_type must be auto, sentence_transformers or contriever, got {model_type!r}")
        self.model_type = model_type
        if model_type == "sentence_transformers":
            from sentence_transformers import SentenceTransformer

            self.st_model = SentenceTransformer(name_or_path, device=self.device)
        else:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, truncation_side="left")
            self.model = AutoModel.from_pretrained(name_or_path).to(self.device).eval()
            self.max_length = min(self.tokenizer.model_max_length, 512)
        self.backend = backend
        self.onnx = None  # issue 13: an ONNX Runtime session replaces the PyTorch forward (onnx_encoder.py)
        if backend != "torch":
            from onnx_encoder import onnx_backend

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
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        out = torch.empty(len(texts), self.model.config.hidden_size)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
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


# ---------------------------------------------------------------------------------------------------------
# The proxy reward.

# A white-box feature: a function of one sample's cleaned response and its context.
FeatureFn = Callable[["Sample"], float]
# A combination rule: the sample's feature values (LI, RP, QR, RAR, qtype, paper_reward, your features) -> reward.
CombineFn = Callable[[dict], float]


@dataclass(frozen=True)
class Sample:
    query: str
    response: str  # cleaned when do_strip is on
    reference: str
    qtype: str | None
    tokens: tuple[str, ...]


class ReversedEngineeredRewardForInference:
    """The white-box reward. Call it on a batch; every encoder call is batched over the whole batch.

    Extend it without editing the class: `extra_features={"name": fn}` adds a feature computed per sample
    (fn gets a `Sample`), and `combine=fn` replaces the combination rule; it gets every feature value,
    including `paper_reward`, the paper's own combination. Example (README): halve the reward of
    responses that apologise.
    """

    def __init__(self, config: RewardConfig | None = None, stop_strings: Sequence[str] | None = None,
                 extra_features: dict[str, FeatureFn] | None = None, combine: CombineFn | None = None,
                 encoder: RelevanceEncoder | None = None):
        self.config = config or RewardConfig()
        self.stop_strings = tuple(stop_strings) if stop_strings is not None else ALPACA_ROLE_MARKERS + STOP_STRINGS
        self.extra_features = dict(extra_features or {})
        clash = set(self.extra_features) & {"LI", "RP", "QR", "RAR", "qtype", "branch", "paper_reward", "reward"}
        if clash:
            raise ValueError(f"extra feature names clash with built-in ones: {sorted(clash)}")
        self.combine = combine
        self.encoder = encoder
        if self.encoder is None and self.config.uses_relevance:
            self.encoder = RelevanceEncoder(self.config.relevance_model, self.config.relevance_model_type,
                                            self.config.reward_model_batch_size, self.config.reward_device,
                                            dtype=self.config.reward_dtype, backend=self.config.relevance_backend)

    def _branch(self, qtype: str | None) -> str:
        c = self.config
        if c.relevance_scaling and c.reward_branching:
            if qtype not in ("OPENENDED", "CONSTRAINED"):
                raise ValueError(f"reward_branching needs qtype OPENENDED or CONSTRAINED, got {qtype!r}")
            return "RAR" if qtype == "CONSTRAINED" else "LIxQR"
        return "LIxQR" if c.relevance_scaling else "LI"

    def __call__(self, queries: Sequence[str], responses: Sequence[str], references: Sequence[str] | None = None,
                 qtypes: Sequence[str | None] | None = None, return_features: bool = False, first_index: int = 0):
        """`first_index`: the position of this batch's first sample in the whole file, for error messages."""
        n = len(responses)
        references = list(references) if references is not None else [""] * n
        qtypes = list(qtypes) if qtypes is not None else [None] * n
        if not (len(queries) == n == len(references) == len(qtypes)):
            raise ValueError("queries, responses, references and qtypes must have the same length")
        cleaned = [clean_response(r, self.stop_strings) if self.config.do_strip else r for r in responses]
        tokens = [tokenize(r) for r in cleaned]
        branches = [self._branch(q) for q in qtypes]
        qr = [math.nan] * n
        rar = [math.nan] * n
        if self.config.relevance_scaling:
            # Only what the formula needs is encoded (QR for LI x QR samples, RAR for CONSTRAINED ones), all
            # in one encoder pass; asking for the features computes both wherever there is a text to compare with.
            # A `combine` rule may read any feature, so it sees them all, in training as in scoring.
            every = return_features or self.combine is not None
            need_qr = [i for i in range(n) if every or branches[i] == "LIxQR"]
            need_rar = [i for i in range(n) if branches[i] == "RAR" or (every and references[i])]
            texts = [cleaned[i] for i in range(n)] + [queries[i] for i in need_qr] + [references[i] for i in need_rar]
            emb = self.encoder.encode(texts)
            resp, rest = emb[:n], emb[n:]
            if need_qr:
                dots = (resp[need_qr] * rest[: len(need_qr)]).sum(-1).tolist()
                for i, d in zip(need_qr, dots):
                    qr[i] = d
            if need_rar:
                dots = (resp[need_rar] * rest[len(need_qr):]).sum(-1).tolist()
                for i, d in zip(need_rar, dots):
                    rar[i] = d
        rewards, features = [], []
        for i in range(n):
            # LI and RP are reported as used: 1.0 when that feature is off.
            f = {"LI": length_incentive(tokens[i]) if self.config.length_incentive else 1.0,
                 "RP": repetition_penalty(tokens[i]) if self.config.repetition_penalty else 1.0, "QR": qr[i],
                 "RAR": rar[i], "qtype": qtypes[i], "branch": branches[i]}
            f["paper_reward"] = paper_reward(f, self.config)
            if self.extra_features:
                sample = Sample(queries[i], cleaned[i], references[i], qtypes[i], tuple(tokens[i]))
                for name, fn in self.extra_features.items():
                    f[name] = _user_number(fn, sample, f"feature {name!r}", first_index + i)
            f["reward"] = (_user_number(self.combine, f, "combine", first_index + i) if self.combine
                           else f["paper_reward"])
            rewards.append(f["reward"])
            features.append(f)
        return (rewards, features) if return_features else rewards

    def score_examples(self, examples: Sequence[Example], responses: Sequence[str], batch_size: int = 256,
                       return_features: bool = False, progress: bool = True, desc: str = "proxy reward"):
        """Score a whole file in batches, with a progress bar."""
        rewards, features = [], []
        for start in tqdm(range(0, len(examples), batch_size), desc=desc, disable=not progress or len(examples) <= batch_size,
                          unit="batch"):
            exs = examples[start:start + batch_size]
            out = self([e.query for e in exs], responses[start:start + batch_size], [e.reference for e in exs],
                       [e.qtype for e in exs], return_features=return_features, first_index=start)
            rewards += out[0] if return_features else out
            features += out[1] if return_features else []
        return (rewards, features) if return_features else rewards


def _user_number(fn: Callable, arg: Any, what: str, index: int) -> float:
    """Call a researcher's feature (or `combine`): what it raises or returns instead of a number becomes one
    line naming it and the sample's index in the batch."""
    try:
        value = fn(arg)
    except Exception as err:  # their code: report it as theirs, then stop
        raise DataError(f"{what} raised on sample {index}: {type(err).__name__}: {err}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            raise DataError(f"{what} returned {type(value).__name__} on sample {index}, expected a number") from None
    return float(value)


def load_features_module(path: str, flag: str = "features_module") -> tuple[dict[str, FeatureFn], CombineFn | None]:
    """Import a researcher's feature file: `EXTRA_FEATURES = {name: fn(sample)}` and optionally `combine(f)`.
    It is their own code, run as any script they write would be; a file that breaks the contract stops here,
    in one line, before any model loads."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--{flag} {path}: " + ("is a folder, expected a Python file" if p.is_dir() else "no such file"))
    spec = importlib.util.spec_from_file_location(p.stem, p)
    if spec is None or spec.loader is None:
        raise DataError(f"--{flag} {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ beside their file: it is edited between runs, and a run writes nothing it was not asked to.
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's module: report where it broke, in one line
        raise DataError(f"--{flag} {path}: importing it failed: {type(err).__name__}: {err}") from None
    finally:
        sys.dont_write_bytecode = write_bytecode
    if not hasattr(module, "EXTRA_FEATURES"):
        raise DataError(f"--{flag} {path}: defines no EXTRA_FEATURES (a dict of name -> function(sample))")
    features = module.EXTRA_FEATURES
    if not isinstance(features, dict) or not features:
        raise DataError(f"--{flag} {path}: EXTRA_FEATURES must be a non-empty dict of name -> function(sample), "
                        f"got {type(features).__name__}")
    for name, fn in features.items():
        if not isinstance(name, str) or not callable(fn):
            raise DataError(f"--{flag} {path}: EXTRA_FEATURES[{name!r}] must be a function of one sample")
    combine = getattr(module, "combine", None)
    if combine is not None and not callable(combine):
        raise DataError(f"--{flag} {path}: combine must be a function of the feature dict")
    return features, combine


# =========================================================================================================
# Gold reward models (issue 4): the black-box judges of the monotonicity check and the offline win rate.
#
# Both score (instruction, response) pairs in length-sorted batches: sorting puts sequences of similar length
# together, so a batch wastes little compute on padding, and one forward pass scores `batch_size` responses
# (the paper's script scored them one at a time). Imports for this section are kept here, beside the code.

from torch import nn  # noqa: E402
from transformers import LlamaModel, LlamaPreTrainedModel  # noqa: E402


GOLD_TYPES = ("starling", "classifier")
STARLING_TOKENIZER = "01-ai/Yi-34B-Chat"  # Starling-RM-34B was fine-tuned from Yi-34B-Chat and uses its tokenizer
STARLING_TEMPLATE = "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>"
# The paper's own input: its Human/Assistant wrapping of the instruction inside the user turn.
STARLING_PAPER_TEMPLATE = ("<|im_start|>user\n\n\nHuman: {instruction}\n\nAssistant: <|im_end|>\n"
                           "<|im_start|>assistant\n{response}<|im_end|>")
GOLD_PROMPTS = ("paper", "model_card")
STARLING_PAD_ID = 0  # the model card pads with id 0 (Yi's <unk>)
GOLD_MAX_LENGTH = 2048  # the model card's max length; longer inputs lose their beginning (left truncation)


class StarlingRewardModel(LlamaPreTrainedModel):
    """Starling-RM-34B as its model card defines it: Yi-34B-Chat without its LM head (a Llama-architecture
    `transformer`), plus a bias-free linear `v_head` that maps a hidden state to a scalar. The reward is the
    head's output at the last non-pad token. The attribute names match the checkpoint's weight names."""

    base_model_prefix = "transformer"

    def __init__(self, config):
        super().__init__(config)
        self.transformer = LlamaModel(config)
        self.v_head = nn.Linear(config.hidden_size, 1, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards of a right-padded batch, shape (batch,)."""
        return last_token_scores(self.transformer, self.v_head, input_ids, attention_mask.sum(-1))


def last_token_scores(backbone: nn.Module, head: nn.Linear, input_ids: torch.Tensor,
                      lengths: torch.Tensor) -> torch.Tensor:
    """A scalar head read at the last real token of each row of a right-padded batch, shape (batch,).

    Right padding puts every pad after the real tokens, and causal attention never looks forward: no real token
    attends to a pad, so the backbone runs without an attention mask (SDPA then takes its fast causal path) and
    the real tokens' hidden states are exactly those of the unpadded text. The last real token sits at
    length - 1; it is found from the lengths, never from a pad id, which may also occur inside a text (Starling
    pads with 0; SmolLM2's pad is its end-of-turn token).
    """
    hidden = backbone(input_ids=input_ids, use_cache=False).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return head(hidden[rows, lengths.to(hidden.device) - 1]).squeeze(-1)


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token id lists into (input_ids, attention_mask), padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def _gold_load_kwargs(device: str, dtype: str = "auto") -> dict:
    """Sharded over the GPUs (a 34B model needs it); the weights in precision.py's dtype: bf16 where the device
    runs it natively (a bf16 GPU, as the paper loaded Starling; a CPU with AVX512-BF16/AMX), else float32."""
    from precision import announce, resolve_dtype

    kind = "cuda" if device.startswith("cuda") else "cpu"
    chosen = resolve_dtype(dtype, kind, flag="--gold_dtype")
    announce("gold reward model", chosen, dtype, kind)
    if kind == "cuda":
        return {"dtype": chosen, "device_map": "auto" if device == "cuda" else device}
    return {"dtype": chosen}


class GoldRewardModel:
    """Shared batching: encode every pair, sort by token length, score `batch_size` at a time."""

    name: str
    batch_size: int
    max_length: int

    def encode(self, instructions: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of every (instruction, response) pair, untruncated."""
        raise NotImplementedError

    def forward_batch(self, seqs: list[list[int]]) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def score(self, instructions: Sequence[str], responses: Sequence[str], progress: bool = True,
              desc: str = "gold reward") -> list[float]:
        if len(instructions) != len(responses):
            raise ValueError("instructions and responses must have the same length")
        # Left truncation keeps the end of the text: the response and the final token the score is read at.
        seqs = [ids[-self.max_length:] for ids in self.encode(instructions, responses)]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # longest first: memory errors show early
        scores = [math.nan] * len(seqs)
        with tqdm(total=len(seqs), desc=desc, unit="resp", disable=not progress) as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                out = self.forward_batch([seqs[i] for i in idx]).float().cpu().tolist()
                for i, s in zip(idx, out):
                    scores[i] = s
                bar.update(len(idx))
        return scores


def paper_instruction(instruction: str) -> str:
    """The instruction as the paper passed it to Starling: trailing/leading newlines, spaces and colons stripped."""
    return instruction.strip("\n: ")


def starling_text(instruction: str, response: str, gold_prompt: str = "paper") -> str:
    """Starling's input text: `paper` (the paper's wrapping, its stripped instruction) or `model_card`."""
    if gold_prompt == "paper":
        return STARLING_PAPER_TEMPLATE.format(instruction=paper_instruction(instruction), response=response)
    if gold_prompt == "model_card":
        return STARLING_TEMPLATE.format(instruction=instruction, response=response)
    raise DataError(f"--gold_prompt must be one of {' / '.join(GOLD_PROMPTS)}, got {gold_prompt!r}")


def pad_read_positions(ids: torch.Tensor, lengths: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The paper's read position: the token before the first pad id of each row (its Starling code looked for the
    pad id, so a pad id inside a text moves it earlier); the last token when the row has none before its end.
    A pad id at position 0 reads the last token, as the paper's one-at-a-time call did (index -1)."""
    width = ids.shape[1]
    is_pad = ids == pad_id
    first = torch.where(is_pad.any(1), is_pad.float().argmax(1), torch.full_like(lengths, width))
    first = torch.minimum(first, lengths)
    return torch.where(first > 0, first - 1, lengths - 1)


class StarlingGoldReward(GoldRewardModel):
    """`gold_prompt="paper"` (default) reproduces the paper's scoring: its text, tokenized without special tokens,
    right padding with 0, left truncation at 2,048, the score read before the first pad id.
    `gold_prompt="model_card"`: the model card's text, the tokenizer's special tokens, read at the last token."""

    def __init__(self, name_or_path: str, batch_size: int = 8, device: str = "auto", tokenizer_name: str | None = None,
                 max_length: int = GOLD_MAX_LENGTH, gold_prompt: str = "paper", dtype: str = "auto"):
        from transformers import AutoTokenizer

        if gold_prompt not in GOLD_PROMPTS:
            raise DataError(f"--gold_prompt must be one of {' / '.join(GOLD_PROMPTS)}, got {gold_prompt!r}")
        self.gold_prompt = gold_prompt

        device = resolve_device(device)
        if tokenizer_name is None:
            # A local folder that ships its tokenizer uses it; otherwise the model card's tokenizer.
            has_tokenizer = (Path(name_or_path) / "tokenizer_config.json").exists()
            tokenizer_name = name_or_path if has_tokenizer else STARLING_TOKENIZER
        self.name, self.batch_size, self.max_length = name_or_path, batch_size, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
        self.model = StarlingRewardModel.from_pretrained(name_or_path, use_safetensors=True,
                                                         **_gold_load_kwargs(device, dtype)).eval()
        if not device.startswith("cuda"):
            self.model.to(device)

    def encode(self, instructions: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        texts = [starling_text(i, r, self.gold_prompt) for i, r in zip(instructions, responses)]
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=self.gold_prompt == "model_card").input_ids

    def forward_batch(self, seqs: list[list[int]]) -> torch.Tensor:
        ids, mask = _right_pad(seqs, STARLING_PAD_ID)
        first = self.model.get_input_embeddings().weight.device  # with device_map="auto", where inputs go
        if self.gold_prompt == "model_card":
            return self.model(ids.to(first), mask.to(first))
        positions = pad_read_positions(ids, mask.sum(-1), STARLING_PAD_ID)
        return last_token_scores(self.model.transformer, self.model.v_head, ids.to(first), positions + 1)


class ClassifierGoldReward(GoldRewardModel):
    """Any AutoModelForSequenceClassification with one output (Skywork-Reward style), fed the conversation in
    its tokenizer's chat template ("instruction\\n\\nresponse" when the tokenizer has none)."""

    def __init__(self, name_or_path: str, batch_size: int = 8, device: str = "auto", tokenizer_name: str | None = None,
                 trust_remote_code: bool = False, max_length: int = GOLD_MAX_LENGTH, dtype: str = "auto"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = resolve_device(device)
        self.name, self.batch_size = name_or_path, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or name_or_path,
                                                       trust_remote_code=trust_remote_code)
        self.max_length = min(max_length, self.tokenizer.model_max_length)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, use_safetensors=True, trust_remote_code=trust_remote_code, **_gold_load_kwargs(device, dtype)
        ).eval()
        if self.model.config.num_labels != 1:
            raise DataError(f"{name_or_path}: a gold classifier must output one score (num_labels=1), "
                            f"this one has num_labels={self.model.config.num_labels}")
        if not device.startswith("cuda"):
            self.model.to(device)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Decoder reward models (Llama/Qwen/Gemma/...ForSequenceClassification) put a linear `score` head on the
        # last token. transformers finds that token by looking for the pad id, which fails when the pad id is
        # also the end-of-turn id (SmolLM2: both are 2). So we read the head at the last real token ourselves
        # (`last_token_scores`). Other classifiers (encoders pooling a first [CLS] token) use their own forward.
        self.last_token_head = self.model.score if isinstance(getattr(self.model, "score", None), nn.Linear) else None

    def encode(self, instructions: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        if not instructions:
            return []
        if self.tokenizer.chat_template:
            texts = [self.tokenizer.apply_chat_template(
                [{"role": "user", "content": i}, {"role": "assistant", "content": r}], tokenize=False
            ) for i, r in zip(instructions, responses)]
            return self.tokenizer(texts, add_special_tokens=False).input_ids  # the template has its special tokens
        return self.tokenizer([f"{i}\n\n{r}" for i, r in zip(instructions, responses)]).input_ids

    def forward_batch(self, seqs: list[list[int]]) -> torch.Tensor:
        first = self.model.get_input_embeddings().weight.device
        ids, mask = _right_pad(seqs, self.pad_id)
        if self.last_token_head is None:
            return self.model(input_ids=ids.to(first), attention_mask=mask.to(first)).logits[:, 0]
        return last_token_scores(self.model.base_model, self.last_token_head, ids.to(first), mask.sum(-1))


def load_gold_reward_model(name_or_path: str, gold_type: str = "starling", batch_size: int = 8, device: str = "auto",
                           tokenizer_name: str | None = None, trust_remote_code: bool = False,
                           max_length: int = GOLD_MAX_LENGTH, gold_prompt: str = "paper",
                           dtype: str = "auto") -> GoldRewardModel:
    """The gold judge: `starling` (Starling-RM-34B layout) or `classifier` (one-label sequence classifier).
    The result's `score(instructions, responses)` returns one float per pair. `dtype`: precision.py's rule
    (`auto`: bf16 where native) or an explicit bfloat16/float32."""
    if gold_type == "starling":
        if trust_remote_code:
            raise DataError("--trust_remote_code applies to --gold_type=classifier only (Starling is defined here)")
        return StarlingGoldReward(name_or_path, batch_size, device, tokenizer_name, max_length, gold_prompt, dtype)
    if gold_type == "classifier":
        return ClassifierGoldReward(name_or_path, batch_size, device, tokenizer_name, trust_remote_code, max_length,
                                    dtype)
    raise DataError(f"unknown --gold_type {gold_type!r}; expected one of {GOLD_TYPES}")
