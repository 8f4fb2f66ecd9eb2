"""Train a small Bradley-Terry reward model: the offline gold stand-in (or a reward model on your own pairs).

The monotonicity check needs a gold reward model that is independent of the white-box proxy. The paper's gold
is Starling-RM-34B; offline we train a learned stand-in instead, so that a neural model, not hand-written
length/repetition/relevance features, decides which response is better.

    loss = -log sigmoid(r(x, chosen) - r(x, rejected))          (Bradley-Terry on preference pairs)

r is `AutoModelForSequenceClassification` with one label: a fresh linear `score` head read at the last token
that is not `config.pad_token_id`, on the chat-template text of (instruction, response) from
`format_for_classifier`; a gold RM that loads the output must format its inputs the same way. To fit a few
minutes on a laptop CPU, the embeddings and the lower layers stay frozen (in bfloat16 where bf16 is native,
precision.py's rule): only the last `trainable_layers` transformer layers, the final norm and the score head
learn, and the frozen layers' output for each distinct text is computed once, the tokens its prompt's texts share
once per prompt (`--cache_frozen`). Whole prompts are held out to
measure pairwise accuracy (chosen scored above rejected).

Pairs come from `--pairs_path` (your preference data: `prompt` or `instruction` [+ `input`], `chosen`,
`rejected`), or, by default, are built from the project's own instruction data: chosen = the reference
answer, rejected = a deterministic corruption of it, by one of two recipes (`--recipe`, rre/standin.py):
truncation_neutral (default) shows every pair whole, both cut at one word count, only the chosen cut and only
the rejected cut, and never uses a truncated reference as the worse answer, so that a policy's answer stopped at
the token cap is judged on what it says; corruptions uses the five corruption kinds, a truncated reference among
them, whole answers only (a gold that reads "cut = worse"). Instructions also found in the eval files
(`--keep_apart_from`) are dropped from the built pairs.

    python train_reward_model.py                      # offline stand-in -> runs/gold_standin
    python train_reward_model.py --recipe corruptions --output_dir runs/gold_corruptions
    python train_reward_model.py --pairs_path prefs.jsonl --output_dir runs/my_rm

The output folder loads with `AutoModelForSequenceClassification.from_pretrained(output_dir)`.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rre import validation
from rre.attention import cache_argument, sdpa_attention
from rre.batching import length_batches, right_pad
from rre.data import REPO, Example, load_examples
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.files import (
    GOLD_STANDIN,
    atomic_dir,
    read_json,
    refuse_inputs,
    replaceable,
    require_key,
    write_json,
)
from rre.offline_models import smollm2_folder, smollm2_path
from rre.precision import announce, resolve_device, resolve_dtype  # not via reward_model: nltk, 1.5 s
from rre.standin import (
    CORRUPTIONS,
    NEUTRAL_CORRUPTIONS,
    RECIPES,
    Pair,
    TextPair,
    build_recipe_pairs,
    evaluate_pairs,
    load_pairs,
    render,
    rewards_of,
    split_by_prompt,
)

ROOT = Path(__file__).resolve().parent  # the checkout: default paths are relative to it

INFO_FILE = "standin_info.json"  # written last inside the temp folder: its presence marks a complete model


@dataclass
class TrainRewardModelConfig:
    pairs_path: str = field(
        default="", metadata={"help": "JSON/JSONL preference pairs {prompt|instruction, chosen, rejected}; "
                              "empty: build pairs from --data_path"})
    data_path: str = field(default="data/train.json", metadata={"help": "instruction data for the built pairs"})
    recipe: str = field(
        default="truncation_neutral", metadata={"help": "built pairs: truncation_neutral (every pair whole, both cut, "
                                                "only chosen cut, only rejected cut; no truncated rejected answers) | "
                                                "corruptions (whole pairs, a truncated reference among the rejected)"})
    keep_apart_from: list[str] = field(
        default_factory=lambda: [str(REPO / "data" / "eval.json"), str(REPO / "data" / "dev.json")],
        metadata={"help": "eval files whose instructions are dropped from --data_path before pairs are built (with "
                  "the paper's validation file as --data_path, add the eval subset, e.g. a ladder's eval_set.json)"})
    pairs_per_example: int = field(
        default=3, metadata={"help": "built pairs per instruction, each with a different corruption kind (under "
                             "truncation_neutral each is shown in four forms)"})
    model_name: str = field(
        default="", metadata={"help": "base model folder or hub name; empty: the offline SmolLM2-135M-Instruct"})
    output_dir: str = field(
        default="runs/gold_standin", metadata={"help": "the finished model; reused if already there"})
    trainable_layers: int = field(
        default=4, metadata={"help": "train the last N transformer layers + final norm + score head"})
    max_length: int = field(default=256, metadata={"help": "tokens per (instruction, response) text"})
    batch_size: int = field(default=8, metadata={"help": "pairs per optimizer step"})
    epochs: int = field(default=1, metadata={"help": "passes over the training pairs"})
    learning_rate: float = field(
        default=3e-4, metadata={"help": "AdamW; linear warm-up over the first tenth of steps, then linear decay"})
    heldout_fraction: float = field(default=0.15, metadata={"help": "share of prompts held out for accuracy"})
    max_pairs: int = field(default=0, metadata={"help": "use at most this many pairs (0: all)"})
    seed: int = field(default=0, metadata={"help": "pairs, held-out split, head init and batch order"})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available) | cpu | cuda"})
    bf16: str = field(
        default="auto", metadata={"help": "auto | true | false: frozen layers in bfloat16 and bf16 autocast (about 3x "
                                  "faster where bf16 is native: a bf16 GPU, a CPU with AVX512-BF16/AMX; about 10x "
                                  "slower where it is emulated). auto follows precision.py's rule"})
    cache_frozen: bool = field(
        default=True, metadata={"help": "compute the frozen layers' outputs once per text and train the top layers on "
                                "them (same model, several times faster); false: the full forward at every step"})
    overwrite: bool = field(default=False, metadata={"help": "retrain even if output_dir holds a finished model"})
    trust_remote_code: bool = field(default=False, metadata={"help": "run model code shipped with --model_name"})


def freeze_all_but_top(model, trainable_layers: int) -> int:
    """Train only the last N transformer layers, the final norm and the head; return the trainable count."""
    base = model.base_model
    n_layers = model.config.num_hidden_layers
    if not 0 <= trainable_layers <= n_layers:
        raise DataError(f"--trainable_layers={trainable_layers}: must be between 0 and {n_layers} for this model")
    # The transformer blocks are the ModuleList with one entry per hidden layer (`layers` in Llama, `h` in GPT-2).
    layers = next((m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers), None)
    if layers is None:
        raise DataError(f"{type(model).__name__}: no list of {n_layers} transformer layers found to unfreeze")
    model.requires_grad_(False)
    for layer in list(layers)[n_layers - trainable_layers:]:
        layer.requires_grad_(True)
    for name in ("norm", "ln_f", "final_layernorm", "final_layer_norm"):  # final norm, named per architecture
        if isinstance(getattr(base, name, None), torch.nn.Module):
            getattr(base, name).requires_grad_(True)
    for name, module in model.named_children():  # the head: everything outside the base model (Llama: `score`)
        if module is not base:
            module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def use_bf16(cfg: TrainRewardModelConfig) -> bool:
    """--bf16: true/false as given; auto = precision.py's rule for the training device (bf16 only where native)."""
    value = str(cfg.bf16).lower()
    requested = {"true": "bfloat16", "1": "bfloat16", "false": "float32", "0": "float32"}.get(value, value)
    if requested not in ("auto", "bfloat16", "float32"):
        raise DataError(f"--bf16={cfg.bf16}: expected auto, true or false")
    device = resolve_device(cfg.device)
    return resolve_dtype(requested, "cuda" if device.startswith("cuda") else "cpu", flag="--bf16") == torch.bfloat16


# ---------------------------------------------------------------------------------------------------------
# Frozen-layer cache: the frozen layers never change, so their output for a text is computed once and the
# trainable top layers learn from it. Same model as the full forward at every step: the top layers see the same
# inputs (right padding and a causal mask make a text's hidden states independent of its batch-mates), the
# score is read at the same token, and gradients never reached the frozen layers anyway.


def layer_list_name(base, n_layers: int) -> str | None:
    """The attribute holding the transformer blocks (`layers` in Llama, `h` in GPT-2)."""
    return next((name for name, m in base.named_children()
                 if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers), None)


def can_cache_frozen(model) -> bool:
    """Rotary-position models (Llama, Qwen, Mistral, ...): the blocks accept `inputs_embeds` with positions applied
    inside every attention layer, so the top blocks can start from a cached hidden state. Models that add position
    embeddings to the input (GPT-2) cannot, and train with the full forward."""
    base = model.base_model
    return (layer_list_name(base, model.config.num_hidden_layers) is not None and hasattr(base, "rotary_emb")
            and isinstance(getattr(model, "score", None), torch.nn.Linear))


@contextlib.contextmanager
def only_layers(model, first: int, last: int):
    """Run the base model through blocks [first, last) only; the full list is put back afterwards."""
    base = model.base_model
    name = layer_list_name(base, model.config.num_hidden_layers)
    full = getattr(base, name)
    setattr(base, name, torch.nn.ModuleList(list(full)[first:last]))
    try:
        yield
    finally:
        setattr(base, name, full)


@dataclass
class FrozenCache:
    """Per text: the output of the last frozen block (unpadded, [tokens, hidden]) and the position the score is
    read at (the classifier's rule: the rightmost token that is not pad_token_id)."""

    hidden: dict[str, torch.Tensor]
    pool_at: dict[str, int]


def common_prefix_length(rows: list[list[int]]) -> int:
    """Leading tokens shared by every row, leaving each row at least one token of its own."""
    n = min(len(r) for r in rows) - 1
    for i in range(max(n, 0)):
        if any(r[i] != rows[0][i] for r in rows[1:]):
            return i
    return max(n, 0)


@torch.no_grad()
def build_frozen_cache(model, tokenizer, groups: list[list[str]], max_length: int, bf16: bool, n_frozen: int,
                       batch_size: int = 16) -> FrozenCache:
    """Frozen-layer outputs of every text, once each. `groups` holds the texts of one prompt each: they share their
    leading tokens (chat template, instruction), which go through the frozen layers once per group; each text's own
    tokens then continue from that prefix's key/value cache. Causal attention makes the result the full forward's.
    Groups with similar prefixes run `batch_size` at a time; their texts' own tokens run in batches of similar
    length (`length_batches`), so little compute goes to padding."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    base = model.base_model
    pad_id = model.config.pad_token_id
    hidden, pool_at = {}, {}
    model.eval()

    def keep(text: str, tokens: list[int], h: torch.Tensor) -> None:
        hidden[text] = h.detach().cpu().clone()
        real = [i for i, t in enumerate(tokens) if t != pad_id]
        pool_at[text] = real[-1] if real else 0

    tokenized = [tokenizer(g, truncation=True, max_length=max_length)["input_ids"] for g in groups]
    if n_frozen == 0:  # nothing frozen but the embeddings
        for group, rows in zip(groups, tokenized):
            for text, tokens in zip(group, rows):
                keep(text, tokens, base.get_input_embeddings()(torch.tensor(tokens, device=device)))
        return FrozenCache(hidden, pool_at)

    blocks = getattr(base, layer_list_name(base, model.config.num_hidden_layers))
    cache_arg = cache_argument(base)
    captured: list[torch.Tensor] = []

    def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = right_pad(rows, pad_id)
        return ids.to(device), mask.to(device)

    def frozen(**inputs) -> torch.Tensor:
        """The last frozen block's output ([batch, tokens, hidden])."""
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), only_layers(model, 0, n_frozen):
            base(**inputs)
        return captured.pop()

    shared = [common_prefix_length(rows) for rows in tokenized]  # a lone text: all but its last token
    order = sorted(range(len(groups)), key=lambda g: (shared[g], max(len(r) for r in tokenized[g])))
    hook = blocks[n_frozen - 1].register_forward_hook(
        lambda _m, _i, o: captured.append(o[0] if isinstance(o, tuple) else o))
    bar = tqdm(total=sum(len(g) for g in groups), desc="frozen layers (once per text)", unit="text")
    try:
        for first in range(0, len(order), batch_size):
            chunk = order[first:first + batch_size]
            # 1. Each group's shared prefix, once, into a key/value cache.
            prefix_ids, prefix_mask = padded([tokenized[g][0][:shared[g]] for g in chunk])
            prefix_cache = DynamicCache(config=base.config)
            if prefix_ids.shape[1]:
                prefix = frozen(input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True,
                                **{cache_arg: prefix_cache})
            # 2. Every text's own tokens, attending to its group's prefix through a cache of the prefix rows it
            # needs (prefix padding masked out; positions continue from the prefix's length).
            members = [(i, text, tokens) for i, g in enumerate(chunk) for text, tokens in zip(groups[g], tokenized[g])]
            for batch in length_batches([len(tokens) - shared[chunk[i]] for i, _, tokens in members], batch_size):
                rows = [members[k] for k in batch]
                select = torch.tensor([i for i, _, _ in rows], device=device)
                cache = DynamicCache(config=base.config)
                if prefix_ids.shape[1]:
                    for index in range(n_frozen):
                        layer = prefix_cache.layers[index]
                        cache.update(layer.keys[select], layer.values[select], index)
                starts = [shared[chunk[i]] for i, _, _ in rows]
                own_ids, own_mask = padded([tokens[n:] for (_, _, tokens), n in zip(rows, starts)])
                positions = torch.tensor(starts, device=device)[:, None] + torch.arange(own_ids.shape[1], device=device)
                out = frozen(input_ids=own_ids, attention_mask=torch.cat([prefix_mask[select], own_mask], 1),
                             position_ids=positions, use_cache=True, **{cache_arg: cache})
                for row, ((i, text, tokens), n) in enumerate(zip(rows, starts)):
                    own = out[row, :len(tokens) - n]
                    keep(text, tokens, torch.cat([prefix[i, :n], own]) if n else own)
                bar.update(len(rows))
    finally:
        hook.remove()
        bar.close()
    return FrozenCache(hidden, pool_at)


def rewards_from_cache(model, cache: FrozenCache, texts: list[str], bf16: bool, n_frozen: int) -> torch.Tensor:
    """One scalar per text from the trainable top blocks, final norm and head, fed the cached hidden states
    (texts of similar length share a forward: `length_batches`)."""
    device = next(model.parameters()).device
    scores = [None] * len(texts)
    for batch in length_batches([len(cache.hidden[t]) for t in texts], max_batch=len(texts)):
        rows = [cache.hidden[texts[k]] for k in batch]
        width = max(len(r) for r in rows)
        h = torch.zeros(len(rows), width, rows[0].shape[-1], dtype=rows[0].dtype)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            h[i, :len(r)] = r
            mask[i, :len(r)] = 1
        h, mask = h.to(device), mask.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            with only_layers(model, n_frozen, model.config.num_hidden_layers):
                last = model.base_model(inputs_embeds=h, attention_mask=mask, use_cache=False).last_hidden_state
            at = torch.tensor([cache.pool_at[texts[k]] for k in batch], device=device)
            batch_scores = model.score(last[torch.arange(len(batch), device=device), at]).squeeze(-1).float()
        for k, score in zip(batch, batch_scores):
            scores[k] = score
    return torch.stack(scores)


# ---------------------------------------------------------------------------------------------------------


def settings_of(cfg: TrainRewardModelConfig, model_name: str) -> dict:
    """The flags that define the trained model (compared before reusing a finished one)."""
    s = asdict(cfg)
    for name in ("output_dir", "overwrite", "num_threads", "device", "cache_frozen"):
        s.pop(name)
    s["bf16"] = use_bf16(cfg)  # the precision that ran, not "auto"
    s["model_name"] = model_name
    for name in ("pairs_path", "data_path"):
        s[name] = str(Path(s[name]).resolve()) if s[name] else ""
    s["keep_apart_from"] = [str(Path(p).resolve()) for p in cfg.keep_apart_from]
    if cfg.pairs_path:  # built-pair flags do not matter for user pairs
        for name in BUILT_PAIR_FLAGS:
            s.pop(name)
    return s


BUILT_PAIR_FLAGS = ("data_path", "pairs_per_example", "recipe", "keep_apart_from")


def check_args(cfg: TrainRewardModelConfig) -> None:
    """Flags, files and the output folder, before the base model loads and training starts."""
    validation.finite_flags(cfg)
    for name in ("epochs", "batch_size", "max_length", "pairs_per_example"):
        if getattr(cfg, name) < 1:
            raise DataError(f"--{name}={getattr(cfg, name)}: must be at least 1")
    validation.range_flags(cfg)
    if not 0 <= cfg.heldout_fraction < 1:
        raise DataError(f"--heldout_fraction={cfg.heldout_fraction}: must be in [0, 1)")
    validation.positive("learning_rate", cfg.learning_rate)
    validation.non_negative("max_pairs", cfg.max_pairs)
    validation.non_negative("trainable_layers", cfg.trainable_layers)
    validation.positive("num_threads", cfg.num_threads)
    use_bf16(cfg)
    if cfg.recipe not in RECIPES:
        raise DataError(f"--recipe={cfg.recipe}: expected one of {', '.join(RECIPES)}")
    if cfg.pairs_path:
        validation.input_data("pairs_path", cfg.pairs_path)
    else:
        validation.input_data("data_path", cfg.data_path)
        for path in cfg.keep_apart_from:
            validation.input_data("keep_apart_from", path)
    validation.output_folder("output_dir", cfg.output_dir)
    if cfg.model_name:
        validation.model("model_name", cfg.model_name)
    refuse_inputs("output_dir", cfg.output_dir, {"pairs_path": cfg.pairs_path or None, "data_path": cfg.data_path,
                                                 "model_name": cfg.model_name}, folder=True)
    replaceable("output_dir", cfg.output_dir, GOLD_STANDIN)  # --overwrite replaces only a stand-in
    validation.fits_context("model_name", cfg.model_name or str(smollm2_folder()), {"max_length": cfg.max_length})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    (cfg,) = validation.parse_flags([TrainRewardModelConfig], argv, __doc__.splitlines()[0])
    # With your own pairs nothing is built: the flags of built pairs say so instead of being silently ignored.
    validation.note_without([f for f in BUILT_PAIR_FLAGS
                             if any(a == f"--{f}" or a.startswith(f"--{f}=") for a in argv)],
                            "an empty --pairs_path (they build the pairs)", not cfg.pairs_path)
    with exit_on_data_error():
        check_args(cfg)
        train(cfg)


def train(cfg: TrainRewardModelConfig) -> None:
    """Pairs, the classifier, Bradley-Terry training, held-out accuracy, an atomic save; a finished stand-in with
    the same settings is reused."""
    t0 = time.time()
    out = Path(cfg.output_dir)
    model_name = cfg.model_name or smollm2_path()
    settings = settings_of(cfg, model_name)
    if reuse_finished(cfg, out, settings):
        return
    pairs, train_pairs, heldout_pairs, source = prepare_pairs(cfg)
    bf16, device = use_bf16(cfg), resolve_device(cfg.device)
    tokenizer, model, n_trainable = load_classifier(cfg, model_name, device, bf16)
    train_pairs, heldout_pairs = render(train_pairs, tokenizer), render(heldout_pairs, tokenizer)
    n_tokens, n_long = token_counts(tokenizer, train_pairs + heldout_pairs, cfg.max_length)
    cached, train_seconds = fit(cfg, model, tokenizer, train_pairs, n_tokens, bf16)
    heldout = heldout_accuracy(model, tokenizer, heldout_pairs, cfg.max_length, bf16)
    kinds = {k: sum(p.kind == k for p in pairs) for k in dict.fromkeys(p.kind for p in pairs)}
    info = {
        "what": "Bradley-Terry reward model (AutoModelForSequenceClassification, num_labels=1)",
        "training_data": source,
        "pairs": {"total": len(pairs), "train": len(train_pairs), "heldout": len(heldout_pairs), "by_kind": kinds,
                  "by_form": {f: sum(p.form == f for p in pairs) for f in dict.fromkeys(p.form for p in pairs)}},
        "heldout": heldout,
        "base_model": model_name,
        "trainable_layers": cfg.trainable_layers,
        "num_hidden_layers": model.config.num_hidden_layers,
        "trainable_parameters": n_trainable,
        "bf16": bf16,
        "frozen_cache": cached,
        "training_seconds": round(train_seconds, 1),
        "text_format": "chat_template" if getattr(tokenizer, "chat_template", None) else "instruction\\n\\nresponse",
        "truncated_texts": n_long,
        "train_seconds": round(time.time() - t0, 1),
        "settings": settings,
    }
    with atomic_dir(out, GOLD_STANDIN) as tmp:  # a hidden temporary folder beside output_dir, renamed when complete
        model.float().cpu().save_pretrained(tmp)  # safetensors, all float32
        tokenizer.save_pretrained(tmp)
        write_json(tmp / INFO_FILE, info)
    print(f"saved the reward model to {out} ({time.time() - t0:.0f}s)")


def reuse_finished(cfg: TrainRewardModelConfig, out: Path, settings: dict) -> bool:
    """True when `out` holds a stand-in trained with these settings (reused as it is). A stand-in with other
    settings is an error unless --overwrite (a folder this script did not write is refused by check_args)."""
    if (out / INFO_FILE).exists() and not cfg.overwrite:
        info = read_json(out / INFO_FILE)
        where = str(out / INFO_FILE)
        recorded = require_key(info, "settings", where, dict)
        changed = sorted(k for k in settings.keys() | recorded.keys() if settings.get(k) != recorded.get(k))
        if changed:
            raise DataError(f"{out}: holds a stand-in trained with other settings ({', '.join(changed)}); "
                            "pass --overwrite=true or choose another --output_dir")
        accuracy = require_key(require_key(info, "heldout", where, dict), "accuracy", f"{where}: heldout",
                               (int, float, type(None)))
        print(f"reusing the trained reward model at {out} (held-out accuracy "
              f"{'n/a' if accuracy is None else f'{accuracy:.3f}'}); pass --overwrite=true to retrain")
        return True
    return False


def prepare_pairs(cfg: TrainRewardModelConfig) -> tuple[list[Pair], list[Pair], list[Pair], str]:
    """(all pairs, train, held out, where they came from): the user's pairs, or pairs built from the annotations."""
    if cfg.pairs_path:
        pairs, ties = load_pairs(cfg.pairs_path)
        source = f"user preference pairs from {cfg.pairs_path} ({ties} ties with chosen == rejected dropped)"
    else:
        examples = kept_apart(load_examples(cfg.data_path), cfg.keep_apart_from)
        pairs = build_recipe_pairs(cfg.recipe, examples, cfg.pairs_per_example, cfg.seed)
        whole = [p for p in pairs if p.form == "whole"]
        short = cfg.pairs_per_example * len(examples) - len(whole)
        if short:  # empty references, or short answers where fewer corruption kinds apply
            print(f"note: {short} fewer pairs than {cfg.pairs_per_example} per instruction (empty references or "
                  "answers too short for some corruptions)")
        kinds = NEUTRAL_CORRUPTIONS if cfg.recipe == "truncation_neutral" else CORRUPTIONS
        source = (f"built from {cfg.data_path} ({len(examples)} instructions) by the {cfg.recipe} recipe: chosen = "
                  f"reference answer, rejected = one of {', '.join(kinds)}; {cfg.pairs_per_example} per instruction")
        if cfg.recipe == "truncation_neutral":
            n_cut = len(pairs) - len(whole)
            source += (f", each whole and, where both answers have 4+ words, both cut / only chosen cut / only "
                       f"rejected cut ({n_cut} cut pairs)")
    if cfg.max_pairs:
        random.Random(cfg.seed).shuffle(pairs)
        pairs = pairs[: cfg.max_pairs]
    train_pairs, heldout_pairs = split_by_prompt(pairs, cfg.heldout_fraction, cfg.seed)
    if not train_pairs:
        raise DataError(f"no training pairs left (from {len(pairs)} pairs)")
    print(f"pairs: {len(pairs)} ({len(train_pairs)} train, {len(heldout_pairs)} held out); {source}")
    return pairs, train_pairs, heldout_pairs, source


def kept_apart(examples: list[Example], eval_paths: list[str]) -> list[Example]:
    """`examples` without the instructions found in any eval file (the gold must not have seen the prompts it
    judges); how many were dropped is printed."""
    held = {ex.user_turn.strip() for path in eval_paths for ex in load_examples(path)}
    kept = [ex for ex in examples if ex.user_turn.strip() not in held]
    if len(kept) < len(examples):
        print(f"note: {len(examples) - len(kept)} of {len(examples)} instructions are in --keep_apart_from "
              f"({', '.join(eval_paths)}) and are left out of the pairs")
    if not kept:
        raise DataError(f"--data_path: every instruction is in --keep_apart_from ({', '.join(eval_paths)})")
    return kept


def load_classifier(cfg: TrainRewardModelConfig, model_name: str, device: str, bf16: bool):
    """(tokenizer, classifier with only the top layers trainable, number of trainable parameters), on `device`."""
    announce("train_reward_model.py:", torch.bfloat16 if bf16 else torch.float32,
             "auto" if str(cfg.bf16).lower() == "auto" else "explicit", device)
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    with load_errors("model_name", model_name):
        tokenizer = AutoTokenizer.from_pretrained(model_name, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Eager attention on CPU: the top layers' backward ran 1.2x faster than with the CPU flash kernel (29 steps: 11.0 s
    # vs 9.3 s); the no-grad passes (frozen layers, held-out scoring) switch to sdpa, faster without a backward.
    attn = {"attn_implementation": "eager"} if device == "cpu" else {}
    with load_errors("model_name", model_name):
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name, num_labels=1, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code, **attn)
    # The classifier reads its score at the last token that is not pad_token_id, so the config must name it.
    model.config.pad_token_id = tokenizer.pad_token_id
    n_trainable = freeze_all_but_top(model, cfg.trainable_layers)
    model.to(device)
    if bf16:
        # Frozen weights are only read, so bfloat16 costs nothing in learning; trainable ones stay float32 (the
        # optimizer's copy) and autocast runs their matmuls in bf16. Saved as float32 at the end.
        for param in model.parameters():
            if not param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    print(f"base model {model_name}: training the last {cfg.trainable_layers} of "
          f"{model.config.num_hidden_layers} layers + final norm + score head ({n_trainable / 1e6:.1f}M parameters)")
    return tokenizer, model, n_trainable


def token_counts(tokenizer, pairs: list[TextPair], max_length: int) -> tuple[dict[str, int], int]:
    """Token count of every distinct text, and how many exceed --max_length (printed: they are truncated)."""
    texts = list(dict.fromkeys(t for p in pairs for t in (p.chosen_text, p.rejected_text)))
    n_tokens = {text: len(ids) for text, ids in zip(texts, tokenizer(texts)["input_ids"])}
    n_long = sum(n > max_length for n in n_tokens.values())
    if n_long:
        print(f"note: {n_long} of {len(n_tokens)} texts exceed --max_length={max_length} tokens and are truncated")
    return n_tokens, n_long


def pair_batches(train_pairs: list[TextPair], n_tokens: dict[str, int], batch_size: int,
                 rng: random.Random) -> list[list[TextPair]]:
    """The pairs of one prompt side by side (they share its chosen answer, scored once per batch), prompts
    bucketed by token length so little compute goes to padding (ties in a seeded random prompt order)."""
    longest: dict[str, int] = {}
    for p in train_pairs:
        longest[p.prompt] = max(longest.get(p.prompt, 0), n_tokens[p.chosen_text], n_tokens[p.rejected_text])
    prompt_rank = {prompt: i for i, prompt in enumerate(rng.sample(sorted(longest), len(longest)))}
    by_length = sorted(range(len(train_pairs)),
                       key=lambda i: (longest[train_pairs[i].prompt], prompt_rank[train_pairs[i].prompt]))
    return [[train_pairs[i] for i in by_length[start:start + batch_size]]
            for start in range(0, len(by_length), batch_size)]


def fit(cfg: TrainRewardModelConfig, model, tokenizer, train_pairs: list[TextPair], n_tokens: dict[str, int],
        bf16: bool) -> tuple[bool, float]:
    """Bradley-Terry training of the top layers (the frozen layers' outputs cached when the model allows);
    returns (whether they were cached, training seconds)."""
    # fused: one kernel for all parameters instead of a dozen ops each (29 steps: 1 s less on 2 CPU cores).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=0.0, fused=model.device.type in ("cpu", "cuda"))
    total_steps = -(-len(train_pairs) // cfg.batch_size) * cfg.epochs
    warmup = max(1, total_steps // 10)  # linear warm-up over the first tenth, then linear decay to zero
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))
    rng = random.Random(cfg.seed)  # the batch order is reshuffled every epoch
    batches = pair_batches(train_pairs, n_tokens, cfg.batch_size, rng)
    cached = cfg.cache_frozen and can_cache_frozen(model)
    n_frozen = model.config.num_hidden_layers - cfg.trainable_layers
    if cfg.cache_frozen and not cached:
        print(f"note: {type(model).__name__} adds position embeddings to its input; training with the full forward")
    t_train = time.time()
    if cached:
        by_prompt: dict[str, dict[str, None]] = {}
        for p in train_pairs:
            by_prompt.setdefault(p.prompt, {}).update({p.chosen_text: None, p.rejected_text: None})
        with sdpa_attention(model):
            cache = build_frozen_cache(model, tokenizer, [list(g) for g in by_prompt.values()], cfg.max_length,
                                       bf16, n_frozen)
    bar = tqdm(total=total_steps, desc="reward model", unit="step")
    for epoch in range(cfg.epochs):
        model.train()
        rng.shuffle(batches)
        for batch in batches:
            # Chosen and rejected texts go through the model in one padded batch, each distinct text once.
            texts = [p.chosen_text for p in batch] + [p.rejected_text for p in batch]
            distinct = list(dict.fromkeys(texts))
            if cached:
                scored = rewards_from_cache(model, cache, distinct, bf16, n_frozen)
            else:
                scored = rewards_of(model, tokenizer, distinct, cfg.max_length, bf16)
            position = {text: i for i, text in enumerate(distinct)}
            rewards = scored[[position[t] for t in texts]]  # [chosen..., rejected...]
            margin = rewards[: len(batch)] - rewards[len(batch):]
            loss = -F.logsigmoid(margin).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", acc=f"{(margin > 0).float().mean().item():.2f}")
    bar.close()
    train_seconds = time.time() - t_train
    print(f"training: {train_seconds:.1f} s ({'frozen layers cached' if cached else 'full forward every step'})")
    return cached, train_seconds


def heldout_accuracy(model, tokenizer, heldout_pairs: list[TextPair], max_length: int, bf16: bool) -> dict:
    """Held-out accuracy with the full model, exactly as it is saved and later loaded (printed)."""
    with sdpa_attention(model):
        heldout = evaluate_pairs(model, tokenizer, heldout_pairs, max_length, bf16)
    if heldout["pairs"]:
        per_kind = ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in heldout["by_kind"].items())
        per_form = "".join(f"; {k} {v['accuracy']:.2f}" for k, v in heldout["by_form"].items() if len(heldout["by_form"]) > 1)
        print(f"held-out pairs: {heldout['pairs']}  accuracy {heldout['accuracy']:.3f}  "
              f"mean margin {heldout['mean_margin']:.3f}  ({per_kind}{per_form})")
    else:
        print("held-out pairs: 0 (no accuracy measured)")
    return heldout


if __name__ == "__main__":
    main()
