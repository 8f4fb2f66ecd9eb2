"""Gold reward models: the black-box judges of the monotonicity check and the offline win rate.

The paper's gold is Starling-RM-34B (`starling`); any one-label sequence classifier (`classifier`) works too,
such as the offline stand-in that train_reward_model.py trains. Both score (instruction, response)
pairs in length-sorted batches: sequences of similar length share a batch, so little compute goes to padding,
and one forward scores `batch_size` responses (the paper's script scored them one at a time).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import LlamaModel, LlamaPreTrainedModel

from rre import validation
from rre.batching import right_pad, sorted_batches
from rre.data import gold_query
from rre.errors import DataError, load_errors
from rre.precision import announce, resolve_device, resolve_dtype
from rre.files import content_hash
from rre.slow_tokenizer import SENTENCEPIECE_FILE, SlowLlamaTokenizer, has_sentencepiece_model

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


def _gold_load_kwargs(device: str, dtype: str = "auto") -> dict:
    """Sharded over the GPUs (a 34B model needs it); the weights in precision.py's dtype: bf16 where the device
    runs it natively (a bf16 GPU, as the paper loaded Starling; a CPU with AVX512-BF16/AMX), else float32."""
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
        scores = [math.nan] * len(seqs)
        with tqdm(total=len(seqs), desc=desc, unit="resp", disable=not progress) as bar:
            for idx in sorted_batches([len(s) for s in seqs], self.batch_size, longest_first=True):
                out = self.forward_batch([seqs[i] for i in idx]).float().cpu().tolist()
                for i, s in zip(idx, out):
                    scores[i] = s
                bar.update(len(idx))
        return scores


def paper_instruction(instruction: str) -> str:
    """The instruction (single-field form) as the paper passed it to Starling: its input marker made a space,
    newlines, spaces and colons stripped from both ends (`data.gold_query`)."""
    return gold_query(instruction)


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


def load_starling_tokenizer(name_or_path: str, use_fast: bool = False):
    """The paper loaded Starling's tokenizer slow (sentencepiece, rre/slow_tokenizer.py); `use_fast` loads the
    tokenizers form, which splits some texts otherwise. A tokenizer with no sentencepiece model has one form only."""
    from transformers import AutoTokenizer

    if use_fast:
        return AutoTokenizer.from_pretrained(name_or_path)
    if not has_sentencepiece_model(name_or_path):
        print(f"note: gold tokenizer {name_or_path} has no sentencepiece model ({SENTENCEPIECE_FILE}); "
              "loaded as it is (--gold_use_fast applies to sentencepiece tokenizers such as Starling's)")
        return AutoTokenizer.from_pretrained(name_or_path)
    return SlowLlamaTokenizer.from_pretrained(name_or_path)


class StarlingGoldReward(GoldRewardModel):
    """`gold_prompt="paper"` (default) reproduces the paper's scoring: its text, tokenized without special tokens,
    right padding with 0, left truncation at 2,048, the score read before the first pad id.
    `gold_prompt="model_card"`: the model card's text, the tokenizer's special tokens, read at the last token.
    The tokenizer is loaded slow (sentencepiece) as the paper's was, unless `use_fast`."""

    def __init__(self, name_or_path: str, batch_size: int = 8, device: str = "auto", tokenizer_name: str | None = None,
                 max_length: int = GOLD_MAX_LENGTH, gold_prompt: str = "paper", dtype: str = "auto",
                 use_fast: bool = False):
        if gold_prompt not in GOLD_PROMPTS:
            raise DataError(f"--gold_prompt must be one of {' / '.join(GOLD_PROMPTS)}, got {gold_prompt!r}")
        self.gold_prompt = gold_prompt

        device = resolve_device(device)
        if tokenizer_name is None:
            # A local folder that ships its tokenizer uses it; otherwise the model card's tokenizer.
            has_tokenizer = (Path(name_or_path) / "tokenizer_config.json").exists()
            tokenizer_name = name_or_path if has_tokenizer else STARLING_TOKENIZER
        self.name, self.batch_size, self.max_length = name_or_path, batch_size, max_length
        self.tokenizer = load_starling_tokenizer(tokenizer_name, use_fast)
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
        ids, mask = right_pad(seqs, STARLING_PAD_ID)
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
        ids, mask = right_pad(seqs, self.pad_id)
        if self.last_token_head is None:
            return self.model(input_ids=ids.to(first), attention_mask=mask.to(first)).logits[:, 0]
        return last_token_scores(self.model.base_model, self.last_token_head, ids.to(first), mask.sum(-1))


def load_gold_reward_model(name_or_path: str, gold_type: str = "starling", batch_size: int = 8, device: str = "auto",
                           tokenizer_name: str | None = None, trust_remote_code: bool = False,
                           max_length: int = GOLD_MAX_LENGTH, gold_prompt: str = "paper",
                           dtype: str = "auto", use_fast: bool = False) -> GoldRewardModel:
    """The gold judge: `starling` (Starling-RM-34B layout) or `classifier` (one-label sequence classifier).
    The result's `score(instructions, responses)` returns one float per pair. `dtype`: precision.py's rule
    (`auto`: bf16 where native) or an explicit bfloat16/float32. `use_fast`: Starling's tokenizers form instead of
    the paper's slow sentencepiece tokenizer."""
    if gold_type == "starling":
        if trust_remote_code:
            raise DataError("--trust_remote_code applies to --gold_type=classifier only (Starling is defined here)")
        return StarlingGoldReward(name_or_path, batch_size, device, tokenizer_name, max_length, gold_prompt, dtype,
                                  use_fast)
    if gold_type == "classifier":
        return ClassifierGoldReward(name_or_path, batch_size, device, tokenizer_name, trust_remote_code, max_length,
                                    dtype)
    raise DataError(f"unknown --gold_type {gold_type!r}; expected one of {GOLD_TYPES}")


@dataclass(frozen=True)
class GoldSpec:
    """One gold judge: model, type and tokenizer (several can be given: `--gold_model` repeated)."""

    model: str
    type: str = "starling"
    tokenizer: str | None = None
    display: str | None = None  # the name in tables and plots (default: the model's basename)
    prompt: str = "paper"  # Starling's input (--gold_prompt)
    dtype: str = "float32"  # the resolved compute dtype (--gold_dtype)
    use_fast: bool = False  # Starling's tokenizer: the paper's slow sentencepiece form unless true (--gold_use_fast)

    @property
    def slug(self) -> str:
        """Readable and unique: the model's basename plus a hash of everything that changes its scores."""
        ident = [self.model, self.type, self.tokenizer]
        if self.type == "starling" and self.prompt != "model_card":
            ident.append(self.prompt)  # a setting at its base value (model_card, float32) adds nothing to the name,
        if self.dtype != "float32":  # so the base settings' caches keep one name whichever flags are spelled out
            ident.append(f"torch.{self.dtype}")
        if self.type == "starling" and not self.use_fast:
            ident.append("slow-tokenizer")
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', Path(self.model).name)}-{content_hash(ident)[:8]}"

    @property
    def instruction_form(self) -> str:
        """The paper passed Starling the single-field instruction (stripped by the model); other judges read the
        user turn as a chat shows it."""
        return "seed_input" if self.type == "starling" and self.prompt == "paper" else "user_turn"

    @property
    def short(self) -> str:
        return self.display or Path(self.model.rstrip("/")).name


def gold_specs(models: Sequence[str], types: Sequence[str], tokenizers: Sequence[str] | None,
               prompt: str = "paper", dtype: str = "float32", use_fast: bool = False) -> list[GoldSpec]:
    """Pair every `--gold_model` with its type and tokenizer: one value for all golds, or one per gold."""
    def per_gold(values: Sequence[Any] | None, flag: str, default: Any) -> list[Any]:
        values = list(values) if values else [default]
        if len(values) == 1:
            return values * len(models)
        if len(values) != len(models):
            raise DataError(f"{flag}: {len(values)} values for {len(models)} --gold_model(s); give one or one each")
        return values

    kinds = per_gold(types, "--gold_type", "starling")
    for k in kinds:
        if k not in GOLD_TYPES:
            raise DataError(f"--gold_type: unknown value {k!r} (expected {' / '.join(GOLD_TYPES)})")
    specs = [GoldSpec(m, t, tok, None, prompt, dtype, use_fast)
             for m, t, tok in zip(models, kinds, per_gold(tokenizers, "--gold_tokenizer", None))]
    if len(set(specs)) != len(specs):
        raise DataError("--gold_model: the same gold is given twice")
    if len({s.short for s in specs}) != len(specs):  # two folders named alike: name them by their unique slug
        specs = [GoldSpec(s.model, s.type, s.tokenizer, s.slug, s.prompt, s.dtype, s.use_fast) for s in specs]
    return specs


def load_gold(spec: GoldSpec, batch_size: int, device: str, trust_remote_code: bool):
    hint = (f"check it and --gold_tokenizer {spec.tokenizer}" if spec.tokenizer else
            "download it or pass --gold_model (a folder or hub name) and --gold_type")
    with load_errors("gold_model", spec.model, hint):  # any failure, not only a missing download: one line
        return load_gold_reward_model(spec.model, spec.type, batch_size, device, spec.tokenizer, trust_remote_code,
                                      gold_prompt=spec.prompt, dtype=spec.dtype, use_fast=spec.use_fast)


@dataclass
class GoldArguments:
    """The gold and bootstrap flags eval_monotonicity.py and prescreen.py share (each names its own --gold_model)."""

    gold_type: list[str] = field(
        default_factory=lambda: ["starling"], metadata={"help": "starling | classifier, one for all golds or one each"})
    gold_tokenizer: list[str] | None = field(
        default=None, metadata={"help": "gold tokenizer (starling default: 01-ai/Yi-34B-Chat), one for all or one each"}
    )
    gold_prompt: str = field(
        default="paper",
        metadata={"help": "Starling's input: paper (the paper's Human/Assistant wrapping of the stripped instruction, "
                  "no special tokens added) | model_card (the model card's chat string)"},
    )
    gold_use_fast: bool = field(
        default=False, metadata={"help": "Starling's tokenizer: false loads it slow (its sentencepiece model), as the "
                                 "paper did; true loads the tokenizers form, which splits some texts otherwise"})
    gold_batch_size: int = field(default=8, metadata={"help": "responses per gold forward pass"})
    gold_device: str = field(default="auto", metadata={"help": "auto | cuda | cpu"})
    gold_dtype: str = field(
        default="auto", metadata={"help": "auto (bfloat16 where the device runs it natively: a bf16 GPU, as the paper "
                                  "loaded Starling, or a CPU with AVX512-BF16/AMX; else float32) | bfloat16 | float32"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom code of a classifier gold model"})
    bootstrap_samples: int = field(default=1000, metadata={"help": "bootstrap resamples over instructions"})
    bootstrap_seed: int = field(default=0, metadata={"help": "bootstrap seed"})


def gold_specs_from_flags(args: GoldArguments, models: Sequence[str]) -> list[GoldSpec]:
    """The golds the flags name, in the dtype `--gold_dtype` resolves to on `--gold_device`."""
    kind = "cuda" if resolve_device(args.gold_device).startswith("cuda") else "cpu"
    gold_dtype = str(resolve_dtype(args.gold_dtype, kind, flag="--gold_dtype")).removeprefix("torch.")
    return gold_specs(models, args.gold_type, args.gold_tokenizer, args.gold_prompt, gold_dtype, args.gold_use_fast)


def check_gold_flags(args: Any) -> None:
    """The gold-model flags eval_monotonicity.py and prescreen.py share."""
    for name in args.gold_model or []:  # loaded only if its scores are not cached yet (a failed load is one line)
        validation.model("gold_model", name, offline_cache=False)
    for kind in args.gold_type:
        validation.one_of("gold_type", kind, GOLD_TYPES)
    for name in args.gold_tokenizer or []:
        validation.model("gold_tokenizer", name, marker="tokenizer_config.json")
    validation.one_of("gold_prompt", args.gold_prompt, GOLD_PROMPTS)
    validation.positive("gold_batch_size", args.gold_batch_size)
    validation.non_negative("bootstrap_samples", args.bootstrap_samples)
