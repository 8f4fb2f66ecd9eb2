"""The gold stand-in's data and scoring, shared by train_reward_model.py (which trains it) and
bench/gold_standin_accuracy.py (which measures it): preference pairs built from the annotated references and
corruptions of them (two recipes, RECIPES), their rendering through the chat template, and the pairwise accuracy
of a classifier."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

from rre.batching import length_batches
from rre.data import Example, check_unicode, read_records
from rre.errors import DataError


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    kind: str  # the corruption that made `rejected`, or "user" for --pairs_path data
    form: str = "whole"  # which side is cut short (FORMS); "whole": both answers as they are


@dataclass(frozen=True)
class TextPair(Pair):
    """A pair with both sides already rendered by format_for_classifier."""

    chosen_text: str = ""
    rejected_text: str = ""


# ---------------------------------------------------------------------------------------------------------
# Formatting: the one text layout used for training here and for scoring as a gold RM later.


def format_for_classifier(tokenizer, instruction: str, response: str) -> str:
    """The user/assistant chat-template text the classifier scores ("instruction\\n\\nresponse" without one)."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return f"{instruction}\n\n{response}"


# ---------------------------------------------------------------------------------------------------------
# Offline pairs: the reference answer beats a corrupted answer. Each corruption is a typical failure of a
# policy (off-topic, cut short, scrambled, degenerate loop, evasive); the model has to learn them from text.

CORRUPTIONS = ("off_topic", "truncated", "shuffled", "repetition", "evasive")

EVASIVE_ANSWERS = (
    "I'm not sure I can help with that.",
    "That is a good question. There are many ways to look at it, and the answer depends on the situation.",
    "It depends on many factors, so it is hard to say.",
    "I would need more information before I could answer this.",
    "There are different opinions about this, and everyone has to decide for themselves.",
    "Sorry, I cannot answer that right now.",
    "This is a complex topic. You may want to consult other sources for more details.",
    "Let me think about it. In general, it varies from case to case.",
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def corrupt(kind: str, i: int, examples: list[Example], rng: random.Random, finished: bool = False) -> str | None:
    """A worse answer to examples[i] of the given kind, or None where the kind does not apply to it. `finished`:
    a shuffled or repeated answer ends with the reference's closing punctuation, as a finished answer does (so that
    an answer that stops mid-sentence is not by itself the worse one)."""
    text = _corrupt(kind, i, examples, rng)
    end = examples[i].reference.rstrip()[-1:]
    if finished and text is not None and kind in ("shuffled", "repetition") and end in ".!?":
        text = text.rstrip(" .,;:!?") + end
    return text


def _corrupt(kind: str, i: int, examples: list[Example], rng: random.Random) -> str | None:
    reference = examples[i].reference
    words = reference.split()
    if kind == "off_topic":  # a fluent answer to another instruction
        others = [ex.reference for j, ex in enumerate(examples) if j != i and ex.reference.strip() != reference.strip()]
        return rng.choice(others) if others else None
    if kind == "truncated":  # only the first few words
        if len(words) < 4:
            return None
        return " ".join(words[: rng.randint(2, max(2, min(6, len(words) // 2)))])
    if kind == "shuffled":  # sentence order (word order for one sentence) scrambled, about a quarter of words dropped
        if len(words) < 3:
            return None
        sentences = _SENTENCE_END.split(reference.strip())
        if len(sentences) >= 2:
            rng.shuffle(sentences)
            words = " ".join(sentences).split()
        else:
            rng.shuffle(words)
        kept = [w for w in words if rng.random() >= 0.25] or words[:1]
        text = " ".join(kept)
        return text if text != " ".join(reference.split()) else None
    if kind == "repetition":  # a degenerate loop of the answer's opening phrase
        phrase = " ".join(words[: rng.randint(2, 5)]).rstrip(".,;:!?") if words else "the answer"
        return " ".join([phrase] * rng.randint(6, 12))
    if kind == "evasive":  # a generic non-answer
        return rng.choice(EVASIVE_ANSWERS)
    raise ValueError(f"unknown corruption kind {kind!r}")


def build_pairs(examples: list[Example], pairs_per_example: int, seed: int,
                kinds: tuple[str, ...] = CORRUPTIONS, finished: bool = False) -> list[Pair]:
    """(reference, corruption) pairs; each example gets distinct kinds, drawn in a seeded random order."""
    rng = random.Random(seed)
    pairs = []
    for i, ex in enumerate(examples):
        if not ex.reference.strip():
            continue  # no reference to prefer (the caller reports how many pairs are short)
        order = list(kinds)
        rng.shuffle(order)
        made = 0
        for kind in order:
            if made == pairs_per_example:
                break
            rejected = corrupt(kind, i, examples, rng, finished)
            if rejected is None or rejected.strip() == ex.reference.strip():
                continue
            pairs.append(Pair(ex.user_turn, ex.reference, rejected, kind))
            made += 1
    return pairs


# ---------------------------------------------------------------------------------------------------------
# Recipes. "corruptions": one pair per corruption kind, the truncated reference among the rejected answers, so
# every chosen answer is finished and a cut answer is always the worse one; a gold trained so learns "cut = bad"
# and then scores a policy's answers by whether they hit the token cap. "truncation_neutral": no truncated
# rejected answers, and every pair is shown in four forms (FORMS) that cut the chosen side exactly as often as the
# rejected side, so being cut says nothing about being preferred and the gold has to judge content.

RECIPES = ("truncation_neutral", "corruptions")
NEUTRAL_CORRUPTIONS = tuple(k for k in CORRUPTIONS if k != "truncated")
FORMS = ("whole", "both_cut", "chosen_cut", "rejected_cut")
MIN_CUT_WORDS = 3  # a cut answer keeps at least this many words
_WORD = re.compile(r"\S+")


def cut_words(text: str, n_words: int) -> str:
    """The first `n_words` whitespace-separated words of `text`, with its own spacing and line breaks kept (what a
    decoder stopped mid-answer leaves)."""
    ends = [m.end() for m in _WORD.finditer(text)]
    if n_words >= len(ends):
        return text
    return text[: ends[n_words - 1]] if n_words > 0 else ""


def draw_cut(rng: random.Random, n_words: int) -> int | None:
    """A whole-word cut length between MIN_CUT_WORDS and one less than `n_words`, or None if there is none."""
    return rng.randint(MIN_CUT_WORDS, n_words - 1) if n_words - 1 >= MIN_CUT_WORDS else None


def four_forms(pair: Pair, rng: random.Random) -> list[Pair]:
    """`pair` whole, both sides cut at one drawn word count, only the chosen cut, only the rejected cut. A pair whose
    shorter side has fewer than MIN_CUT_WORDS + 1 words is shown whole only, so every cut form comes with the other
    two and the chosen side is cut exactly as often as the rejected one."""
    n_chosen, n_rejected = len(pair.chosen.split()), len(pair.rejected.split())
    both = draw_cut(rng, min(n_chosen, n_rejected))
    if both is None:
        return [pair]
    chosen_at, rejected_at = draw_cut(rng, n_chosen), draw_cut(rng, n_rejected)
    return [pair,
            Pair(pair.prompt, cut_words(pair.chosen, both), cut_words(pair.rejected, both), pair.kind, "both_cut"),
            Pair(pair.prompt, cut_words(pair.chosen, chosen_at), pair.rejected, pair.kind, "chosen_cut"),
            Pair(pair.prompt, pair.chosen, cut_words(pair.rejected, rejected_at), pair.kind, "rejected_cut")]


def build_recipe_pairs(recipe: str, examples: list[Example], pairs_per_example: int, seed: int) -> list[Pair]:
    """The built pairs of a recipe (RECIPES): `pairs_per_example` corruption pairs per instruction, and under
    truncation_neutral each of them in its four forms (the cut lengths drawn from the same seeded stream)."""
    if recipe == "corruptions":
        return build_pairs(examples, pairs_per_example, seed)
    if recipe != "truncation_neutral":
        raise ValueError(f"unknown recipe {recipe!r} (expected one of {', '.join(RECIPES)})")
    base = build_pairs(examples, pairs_per_example, seed, kinds=NEUTRAL_CORRUPTIONS, finished=True)
    rng = random.Random(f"{seed}-cuts")
    return [form for pair in base for form in four_forms(pair, rng)]


def load_pairs(path: str) -> tuple[list[Pair], int]:
    """User preference pairs; bad records raise DataError naming file, record and field. Returns (pairs, ties)."""
    records = read_records(path)
    if not records:
        raise DataError(f"{path}: no records")
    pairs, ties = [], 0
    for where, rec in records:
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        check_unicode(rec, where)
        if "prompt" in rec:
            prompt_field, prompt = "prompt", rec["prompt"]
        elif "instruction" in rec:
            prompt_field, prompt = "instruction", rec["instruction"]
        else:
            raise DataError(f"{where}: field 'prompt': missing (a pair needs 'prompt' or 'instruction')")
        texts = {}
        for name, value in ((prompt_field, prompt), ("input", rec.get("input", "")), ("chosen", rec.get("chosen")),
                            ("rejected", rec.get("rejected"))):
            if value is None:
                raise DataError(f"{where}: field '{name}': missing")
            if not isinstance(value, str):
                raise DataError(f"{where}: field '{name}': expected a string, got {type(value).__name__}")
            texts[name] = value
        if not texts[prompt_field].strip():
            raise DataError(f"{where}: field '{prompt_field}': empty")
        if texts["chosen"].strip() == texts["rejected"].strip():
            ties += 1  # no preference signal; dropped and reported
            continue
        # Same prompt text as the built pairs and as eval_monotonicity.py scores with (Example.user_turn).
        prompt_text = Example(texts[prompt_field], texts["input"]).user_turn
        pairs.append(Pair(prompt_text, texts["chosen"], texts["rejected"], "user"))
    if not pairs:
        raise DataError(f"{path}: no usable pairs (all {ties} have chosen == rejected)")
    return pairs, ties


def split_by_prompt(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out whole prompts, so no held-out prompt (or its chosen answer) is seen in training."""
    prompts = list(dict.fromkeys(p.prompt for p in pairs))
    random.Random(seed).shuffle(prompts)
    n_held = 0
    if fraction > 0 and len(prompts) >= 2:  # at least one prompt on each side
        n_held = min(max(round(fraction * len(prompts)), 1), len(prompts) - 1)
    held = set(prompts[:n_held])
    return [p for p in pairs if p.prompt not in held], [p for p in pairs if p.prompt in held]


# ---------------------------------------------------------------------------------------------------------
# Model: which parameters learn, and scoring.


def rewards_of(model, tokenizer, texts: list[str], max_length: int, bf16: bool) -> torch.Tensor:
    """One scalar per text; the classifier pools the last non-pad token (needs config.pad_token_id)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
    return logits.squeeze(-1).float()


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[str], max_length: int, bf16: bool, batch_size: int = 16) -> list[float]:
    model.eval()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    scores = [0.0] * len(texts)
    for batch in length_batches(lengths, batch_size):
        for k, score in zip(batch, rewards_of(model, tokenizer, [texts[k] for k in batch], max_length, bf16).tolist()):
            scores[k] = score
    return scores


def evaluate_pairs(model, tokenizer, pairs: list[TextPair], max_length: int, bf16: bool) -> dict:
    """Pairwise accuracy (chosen scored above rejected) and mean margin, overall and per kind."""
    if not pairs:
        return {"pairs": 0, "accuracy": None, "mean_margin": None, "by_kind": {}, "by_form": {}}
    texts = list(dict.fromkeys(t for p in pairs for t in (p.chosen_text, p.rejected_text)))
    score = dict(zip(texts, score_texts(model, tokenizer, texts, max_length, bf16)))
    margins = [score[p.chosen_text] - score[p.rejected_text] for p in pairs]

    def summary(ms: list[float]) -> dict:
        return {"pairs": len(ms), "accuracy": sum(m > 0 for m in ms) / len(ms), "mean_margin": sum(ms) / len(ms)}

    by_kind = {k: summary([m for m, p in zip(margins, pairs) if p.kind == k])
               for k in dict.fromkeys(p.kind for p in pairs)}
    by_form = {f: summary([m for m, p in zip(margins, pairs) if p.form == f])
               for f in dict.fromkeys(p.form for p in pairs)}
    return {**summary(margins), "by_kind": by_kind, "by_form": by_form}


def render(pairs: list[Pair], tokenizer) -> list[TextPair]:
    return [TextPair(p.prompt, p.chosen, p.rejected, p.kind, p.form,
                     chosen_text=format_for_classifier(tokenizer, p.prompt, p.chosen),
                     rejected_text=format_for_classifier(tokenizer, p.prompt, p.rejected)) for p in pairs]
