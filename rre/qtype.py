"""Query types (OPENENDED / CONSTRAINED) for instruction files that come without them.

The paper's reward branches on the query type, so a new prompt set needs `qtype` on every record before the
full design (and any design using reference relevance) can run on it. Two ways to label:

- a classifier: sentence-encoder embeddings of the instruction, a few hand-written features of its form
  (question words, the leading verb, an input, length), and a logistic-regression head, saved as a small
  folder (safetensors weights and a JSON record of the data it was trained on);
- a judge: any causal LM reads the paper's definitions of the two types in a prompt of ours, and the label
  whose tokens it finds more likely wins (two scored continuations, no sampling, so it is deterministic).

Reference answers for records without one come from `generate_references` (greedy, in the project's
prompt formats), since RAR compares a response with the reference and cannot be better than it.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from rre.files import QTYPE_CLASSIFIER, atomic_dir, current_umask, file_sha256, read_json, to_json
from rre.data import QTYPES, Example
from rre.errors import DataError
from rre.precision import resolve_device, resolve_dtype
from rre.prompts import get_prompt_format
from rre.relevance import RelevanceEncoder

OPEN, CONSTRAINED = QTYPES
DEFAULT_ENCODER = "offline:all-MiniLM-L6-v2"
CLASSIFIER_WEIGHTS = "head.safetensors"
CLASSIFIER_RECORD = "qtype_classifier.json"
FEATURE_VERSION = 1

# --- hand-written features of the instruction's form ------------------------------------------------------

_NARROW_VERBS = {  # tasks with one right answer, or a narrow set of them, in AlpacaFarm's annotations
    "classify", "categorize", "categorise", "convert", "calculate", "compute", "determine", "select", "rearrange",
    "arrange", "reverse", "rank", "translate", "sort", "correct", "solve", "extract", "count", "paraphrase",
    "replace", "fix", "detect", "spell", "match", "label", "delete", "remove", "insert", "combine", "shorten",
    "simplify", "reorder", "order", "group", "assign", "parse", "format", "transform", "transcribe", "locate",
    "pick", "choose", "change", "edit", "rewrite", "summarize", "summarise", "evaluate", "check", "verify",
    "multiply", "divide", "subtract", "add", "estimate", "predict", "find", "identify", "name", "list", "answer",
    "state", "output", "return", "tag", "split", "join", "capitalize", "punctuate", "abbreviate", "expand",
}
_OPEN_VERBS = {  # tasks where the writer chooses what to say
    "generate", "create", "write", "describe", "explain", "suggest", "construct", "design", "compose", "come",
    "propose", "imagine", "recommend", "formulate", "brainstorm", "invent", "think", "discuss", "tell", "share",
    "plan", "build", "draft", "devise", "develop", "offer", "make", "produce", "craft", "pretend", "provide",
    "give", "outline", "elaborate", "argue", "persuade", "convince", "reflect", "envision", "improvise",
}
_WH = re.compile(r"^(what|who|whom|whose|when|where|which|why|how)\b", re.I)
_YES_NO = re.compile(r"^(is|are|was|were|do|does|did|can|could|should|would|will|has|have|had)\b", re.I)
_HOW_MANY = re.compile(r"\bhow (many|much|long|far|old|often)\b", re.I)
_GIVEN_TEXT = re.compile(r"\b(the following|given|this|these|the (sentence|text|passage|paragraph|word|phrase|"
                         r"statement|list|article|words|sentences|story|poem|data|table|code|equation|number))\b", re.I)
_QUOTED = re.compile(r"[\"“”'‘’][^\"“”]{2,}[\"“”'‘’]")
_MATH = re.compile(r"\d|[+\-*/=^%]|\b(equation|sum|product|percent|average|area|volume|probability|integer)\b", re.I)
_CREATIVE = re.compile(r"\b(story|stories|poem|haiku|essay|song|lyrics|slogan|tagline|blog|tweet|letter|speech|"
                       r"dialogue|conversation|joke|recipe|character|plot|metaphor|limerick|rap|script|motto|"
                       r"advertisement|headline|title|name for)\b", re.I)
_MANY = re.compile(r"\b(ideas|ways|tips|suggestions|examples|strategies|reasons|ideas|some|several|creative|"
                   r"your own|opinion|you think|advice|pros and cons)\b", re.I)
_NARROW_ANSWER = re.compile(r"\b(one word|single word|yes or no|true or false|synonym|antonym|plural|tense|passive|"
                            r"active voice|grammar|grammatical|adjective|noun|verb|adverb|capital of|author of|"
                            r"definition|meaning of|formula|spelling|category|sentiment)\b", re.I)

FEATURES = ("verb_narrow", "verb_open", "wh_question", "how_many", "yes_no_question", "question_mark",
            "has_input", "instruction_words", "input_words", "given_text", "quoted", "math", "creative_form",
            "many_answers", "narrow_answer", "starts_given")


def _leading_verb(instruction: str) -> str:
    """The first word that says what to do: skips 'Please', and a leading 'Given ..., ' or 'Using ..., ' clause."""
    text = instruction.strip()
    if re.match(r"^(given|using|based on|for|in|with)\b", text, re.I) and "," in text[:200]:
        text = text.split(",", 1)[1]
    words = re.findall(r"[A-Za-z]+", text.lower())
    while words and words[0] in ("please", "now", "then", "also", "you", "can", "could", "kindly"):
        words = words[1:]
    return words[0] if words else ""


def instruction_features(example: Example) -> list[float]:
    """Features of the instruction's form, in the order of FEATURES (booleans as 0/1, lengths as log1p)."""
    ins, inp = example.instruction, example.input
    verb = _leading_verb(ins)
    both = f"{ins} {inp}"
    values = {
        "verb_narrow": verb in _NARROW_VERBS, "verb_open": verb in _OPEN_VERBS,
        "wh_question": bool(_WH.match(ins)), "how_many": bool(_HOW_MANY.search(ins)),
        "yes_no_question": bool(_YES_NO.match(ins)), "question_mark": ins.rstrip().endswith("?"),
        "has_input": bool(inp), "instruction_words": math.log1p(len(ins.split())),
        "input_words": math.log1p(len(inp.split())), "given_text": bool(_GIVEN_TEXT.search(ins)),
        "quoted": bool(_QUOTED.search(ins)), "math": bool(_MATH.search(both)),
        "creative_form": bool(_CREATIVE.search(ins)), "many_answers": bool(_MANY.search(ins)),
        "narrow_answer": bool(_NARROW_ANSWER.search(ins)),
        "starts_given": bool(re.match(r"^(given|using|based on)\b", ins, re.I)),
    }
    return [float(values[name]) for name in FEATURES]


# --- the classifier ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _encoder(name: str, device: str):
    """The sentence encoder, in float32 so labels do not depend on a CPU's bf16 support; one per process (its
    embedding cache then serves a retraining or a second file too)."""
    return RelevanceEncoder("minilm" if name == DEFAULT_ENCODER else name, dtype="float32", device=device)


def design_matrix(examples: Sequence[Example], encoder) -> torch.Tensor:
    """Instruction embeddings (the input is left out: it says what to work on, not what kind of answer) beside
    the form features, float64 so the head's training is exact and repeatable."""
    emb = encoder.encode([e.instruction for e in examples]).double()
    feats = torch.tensor([instruction_features(e) for e in examples], dtype=torch.float64)
    return torch.cat([emb, feats], dim=1)


@dataclass
class Head:
    """Logistic regression on standardized columns: p(CONSTRAINED) = sigmoid(((x - mean) / std) . weight + bias)."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def prob_constrained(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(((x - self.mean) / self.std) @ self.weight + self.bias)


def fit_head(x: torch.Tensor, y: torch.Tensor, l2: float) -> Head:
    """Full-batch L-BFGS on a convex loss from zero weights: the same data gives the same head, bit for bit."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")
    target = y.double()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Head(w.detach(), b.detach(), mean, std)


def fold_indices(n: int, folds: int, seed: int) -> list[torch.Tensor]:
    """A seeded shuffle cut into `folds` interleaved parts."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [perm[k::folds] for k in range(folds)]


def cross_validated_probs(x: torch.Tensor, y: torch.Tensor, folds: int, l2: float, seed: int) -> torch.Tensor:
    """p(CONSTRAINED) for every row from a head that did not see it."""
    probs = torch.empty(len(y), dtype=torch.float64)
    for test in fold_indices(len(y), folds, seed):
        train = torch.ones(len(y), dtype=torch.bool)
        train[test] = False
        probs[test] = fit_head(x[train], y[train], l2).prob_constrained(x[test])
    return probs


def label_report(gold: Sequence[str], pred: Sequence[str]) -> dict:
    """Accuracy, per-class precision and recall, and the majority-class baseline."""
    n = len(gold)
    report = {"n": n, "accuracy": sum(g == p for g, p in zip(gold, pred)) / n if n else math.nan,
              "majority_baseline": max(sum(g == q for g in gold) for q in QTYPES) / n if n else math.nan}
    for q in QTYPES:
        hits = sum(g == p == q for g, p in zip(gold, pred))
        predicted, actual = sum(p == q for p in pred), sum(g == q for g in gold)
        report[q] = {"precision": hits / predicted if predicted else math.nan,
                     "recall": hits / actual if actual else math.nan, "count": actual}
    return report




class QTypeClassifier:
    """A trained head with the record of how it was made; the encoder is loaded on first use."""

    def __init__(self, head: Head, record: dict, device: str = "cpu"):
        self.head, self.record, self.device = head, record, device
        self._encoder = None

    @classmethod
    def train(cls, examples: Sequence[Example], source: str | Path, encoder: str = DEFAULT_ENCODER, seed: int = 0,
              l2: float = 0.1, folds: int = 5, device: str = "cpu") -> "QTypeClassifier":
        """Fit on every labelled example; `folds`-fold cross-validation (seeded split) goes into the record."""
        labelled = [e for e in examples if e.qtype in QTYPES]
        if len(labelled) < 2 * folds or {e.qtype for e in labelled} != set(QTYPES):
            raise DataError(f"{source}: {len(labelled)} labelled records; training needs both qtypes and at least "
                            f"{2 * folds} records")
        enc = _encoder(encoder, device)
        x = design_matrix(labelled, enc)
        y = torch.tensor([e.qtype == CONSTRAINED for e in labelled])
        gold = [e.qtype for e in labelled]
        cv_pred = [CONSTRAINED if p >= 0.5 else OPEN for p in cross_validated_probs(x, y, folds, l2, seed).tolist()]
        record = {
            "format": "rre-qtype-classifier", "feature_version": FEATURE_VERSION, "encoder": encoder,
            "encoder_dtype": "float32", "embedded_text": "instruction", "embedding_dim": x.shape[1] - len(FEATURES),
            "features": list(FEATURES), "head": "logistic regression, L-BFGS, standardized columns", "l2": l2,
            "seed": seed, "labels": {"0": OPEN, "1": CONSTRAINED},
            "trained_on": {"path": str(source), "sha256": file_sha256(source) if Path(source).is_file() else None,
                           "count": len(labelled), "per_label": {q: gold.count(q) for q in QTYPES}},
            "cross_validation": {"folds": folds, "split_seed": seed, **label_report(gold, cv_pred)},
        }
        model = cls(fit_head(x, y, l2), record, device)
        model._encoder = enc
        return model

    def save(self, folder: str | Path) -> None:
        """Weights as safetensors and the record as JSON, built under a temporary name and renamed."""
        from safetensors.torch import save_file

        with atomic_dir(folder, QTYPE_CLASSIFIER) as tmp:
            save_file({"weight": self.head.weight, "bias": self.head.bias, "mean": self.head.mean,
                       "std": self.head.std}, str(tmp / CLASSIFIER_WEIGHTS))
            (tmp / CLASSIFIER_WEIGHTS).chmod(0o666 & ~current_umask())  # safetensors writes it private
            (tmp / CLASSIFIER_RECORD).write_text(to_json(self.record, CLASSIFIER_RECORD) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "QTypeClassifier":
        """Read a saved classifier; a folder from other features or a damaged one is one DataError line."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        record = read_classifier_record(folder)
        try:
            t = load_file(str(folder / CLASSIFIER_WEIGHTS))
        except (OSError, SafetensorError) as err:
            raise DataError(f"{folder / CLASSIFIER_WEIGHTS}: unreadable ({err})".splitlines()[0]) from None
        width = record["embedding_dim"] + len(FEATURES)
        if set(t) != {"weight", "bias", "mean", "std"} or any(t[k].shape != (width,) for k in ("weight", "mean", "std")):
            raise DataError(f"{folder / CLASSIFIER_WEIGHTS}: tensors do not match the record ({width} columns)")
        return cls(Head(t["weight"], t["bias"], t["mean"], t["std"]), record, device)

    def predict(self, examples: Sequence[Example]) -> list[tuple[str, float]]:
        """(label, confidence = the probability of that label) per example."""
        if self._encoder is None:
            self._encoder = _encoder(self.record["encoder"], self.device)
        probs = self.head.prob_constrained(design_matrix(examples, self._encoder)).tolist()
        return [(CONSTRAINED, p) if p >= 0.5 else (OPEN, 1.0 - p) for p in probs]


def read_classifier_record(folder: str | Path) -> dict:
    """The JSON record of a classifier folder, checked against this code's features (cheap: no weights)."""
    path = Path(folder) / CLASSIFIER_RECORD
    if not path.is_file():
        raise DataError(f"{folder}: no {CLASSIFIER_RECORD}, so it is not a qtype classifier folder")
    record = read_json(path, expect=None)  # decoding and parse errors: one line naming the file
    if not isinstance(record, dict) or record.get("format") != "rre-qtype-classifier":
        raise DataError(f"{path}: not a qtype classifier record")
    if record.get("feature_version") != FEATURE_VERSION or record.get("features") != list(FEATURES):
        raise DataError(f"{path}: trained with other instruction features (version {record.get('feature_version')}, "
                        f"this code has {FEATURE_VERSION}); train it again with --train_path")
    if not isinstance(record.get("embedding_dim"), int) or not isinstance(record.get("encoder"), str):
        raise DataError(f"{path}: field 'embedding_dim' or 'encoder' missing")
    return record


# --- the judge --------------------------------------------------------------------------------------------

JUDGE_PROMPT = """Sort an instruction into one of two kinds by the answers it allows.

OPENENDED: many different answers could all be good. The writer chooses what to say: a story, poem, essay, \
letter, slogan, advice, ideas, a plan, an opinion, a description or explanation told in one's own way.
CONSTRAINED: the correct answers form a narrow set. A fact, a number, math, a classification, a choice among \
options, something extracted or identified in a given text, a rewriting, correction, translation, conversion \
or summary of a given text.

Instruction: {instruction}
{input_line}
Which kind is this instruction? Answer with one word, OPENENDED or CONSTRAINED."""
CONTENT_FREE = Example("N/A")  # contextual calibration: the labels' prior odds with no instruction at all


def _device_dtype(device: str, dtype: str) -> tuple[str, torch.dtype]:
    device = resolve_device(device)
    return device, resolve_dtype(dtype, device, "--dtype")


def load_causal_lm(name: str, device: str, dtype: str, trust_remote_code: bool):
    """Tokenizer and model in eval mode; the tokenizer gets a pad token if it has none."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, torch_dtype = _device_dtype(device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return tokenizer, model.to(device).eval()


class QTypeJudge:
    """A causal LM labels an instruction by comparing the next-token log-probabilities of the two labels.

    The first tokens of the labels must differ (checked at load). With `calibrate`, the log-odds a content-free
    instruction gets are subtracted, so a small model's preference for one word does not decide every label.
    """

    def __init__(self, name: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 batch_size: int = 8, calibrate: bool = True):
        self.tokenizer, self.model = load_causal_lm(name, device, dtype, trust_remote_code)
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        prefix = "" if self.chat else " "
        ids = [self.tokenizer(prefix + q, add_special_tokens=False)["input_ids"] for q in QTYPES]
        if ids[0][0] == ids[1][0]:
            raise DataError(f"--judge_model {name}: its tokenizer starts both labels with the same token")
        self.label_ids = torch.tensor([i[0] for i in ids])
        self.batch_size = batch_size
        self.offset = torch.zeros(2)
        if calibrate:
            self.offset = self._label_logprobs([CONTENT_FREE])[0]

    def prompt(self, example: Example) -> str:
        input_line = f"Input: {example.input}\n" if example.input else ""
        text = JUDGE_PROMPT.format(instruction=example.instruction, input_line=input_line)
        if self.chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return f"{text}\nAnswer:"

    @torch.inference_mode()
    def _label_logprobs(self, examples: Sequence[Example]) -> torch.Tensor:
        """[n, 2] log-probabilities of the labels' first tokens right after each prompt (right padding)."""
        self.tokenizer.padding_side = "right"
        enc = self.tokenizer([self.prompt(e) for e in examples], return_tensors="pt", padding=True,
                             add_special_tokens=not self.chat).to(self.model.device)
        logits = self.model(**enc).logits.float()
        last = enc["attention_mask"].sum(1) - 1
        logp = torch.log_softmax(logits[torch.arange(len(examples)), last], dim=-1)
        return logp[:, self.label_ids.to(logp.device)].cpu()

    def predict(self, examples: Sequence[Example]) -> list[tuple[str, float]]:
        """(label, confidence): the calibrated two-way softmax of the labels' log-probabilities."""
        out = []
        for start in range(0, len(examples), self.batch_size):
            scores = self._label_logprobs(examples[start:start + self.batch_size]) - self.offset
            for p_open, p_con in torch.softmax(scores, dim=-1).tolist():
                out.append((OPEN, p_open) if p_open > p_con else (CONSTRAINED, p_con))
        return out


# --- reference answers ------------------------------------------------------------------------------------


class ReferenceWriter:
    """Greedy answers from a causal LM in one of the project's prompt formats, cleaned as the reward cleans."""

    def __init__(self, name: str, prompt_format: str = "auto", device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, max_new_tokens: int = 256, batch_size: int = 8):
        self.tokenizer, self.model = load_causal_lm(name, device, dtype, trust_remote_code)
        if prompt_format == "auto":
            prompt_format = "chat" if getattr(self.tokenizer, "chat_template", None) else "alpaca"
        try:
            self.format = get_prompt_format(prompt_format, self.tokenizer)
        except ValueError as err:
            raise DataError(str(err)) from None
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    @torch.inference_mode()
    def _generate(self, examples: Sequence[Example]) -> list[str]:
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer([self.format.build(e.instruction, e.input) for e in examples], return_tensors="pt",
                             padding=True, add_special_tokens=self.format.name != "chat").to(self.model.device)
        out = self.model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [self.format.clean(t) for t in texts]

    def write(self, examples: Sequence[Example]) -> list[str]:
        return [text for start in range(0, len(examples), self.batch_size)
                for text in self._generate(examples[start:start + self.batch_size])]
