"""Does the project tokenize Starling's inputs as the paper's stack did? Slow (sentencepiece) and fast against
transformers 4.35.2's slow LlamaTokenizer.

Yi-34B-Chat's files are not here, so the check runs on small sentencepiece models built like it (BPE, byte
fallback, identity normalization; chat markers as user-defined or as control symbols) under every
tokenizer_config variant that changes 4.35's slow encoding (`legacy` true / false / absent, with and without the
dummy prefix). Three steps, two environments:

    python bench/slow_tokenizer_check.py prepare /tmp/stc           # this project's venv: models, configs, texts
    /path/to/paper-stack/bin/python bench/slow_tokenizer_check.py encode /tmp/stc   # transformers==4.35.2
    python bench/slow_tokenizer_check.py compare /tmp/stc           # counts equal, slow and fast

The texts are the fixture's hand-written ones plus, where ../shared/data is present, Starling's input (paper and
model-card wrapping) for each validation record with its reference answer. `fixture` (under 4.35.2) rewrites
tests/data/sentencepiece/expected_ids.json, which tests/test_slow_tokenizer.py holds the slow loader to.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "sentencepiece"
VAL = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"
MARKERS = ["<|im_start|>", "<|im_end|>"]
BASE_CONFIG = {"add_bos_token": False, "add_eos_token": False, "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>",
               "unk_token": "<unk>", "pad_token": "<unk>", "clean_up_tokenization_spaces": False,
               "model_max_length": 4096, "padding_side": "right", "sp_model_kwargs": {},
               "tokenizer_class": "LlamaTokenizer"}
# (sentencepiece model, its legacy setting); None leaves `legacy` out of tokenizer_config.json
VARIANTS = [(m, legacy) for m in ("user_defined", "no_dummy_prefix", "control") for legacy in (True, False, None)]


def train_model(kind: str) -> bytes:
    """A 600-piece BPE model on the shipped train answers; deterministic for one sentencepiece version."""
    import sentencepiece as spm

    texts = [r["input"] + "\n" + r["output"] for r in json.loads((ROOT / "data" / "train.json").read_text())]
    symbols = {"control_symbols": MARKERS} if kind == "control" else {"user_defined_symbols": MARKERS}
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=out, vocab_size=600, model_type="bpe", byte_fallback=True,
        add_dummy_prefix=kind != "no_dummy_prefix", remove_extra_whitespaces=False, split_digits=True,
        normalization_rule_name="identity", character_coverage=1.0, num_threads=1, minloglevel=2,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<|startoftext|>",
        eos_piece="<|endoftext|>", **symbols)
    return out.getvalue()


def variant_config(model: str, legacy: bool | None) -> dict:
    """A Yi-like tokenizer_config.json for one fixture model; control symbols are special only through it."""
    import sentencepiece as spm

    config = dict(BASE_CONFIG)
    if legacy is not None:
        config["legacy"] = legacy
    if model == "control":
        sp = spm.SentencePieceProcessor(model_file=str(FIXTURE / f"{model}.model"))
        config["added_tokens_decoder"] = {
            str(sp.piece_to_id(p)): {"content": p, "lstrip": False, "normalized": False, "rstrip": False,
                                     "single_word": False, "special": True}
            for p in ["<unk>", "<|startoftext|>", "<|endoftext|>", *MARKERS]}
    return config


def variant_name(model: str, legacy: bool | None) -> str:
    return f"{model}-legacy-{str(legacy).lower()}"


def write_variant(folder: Path, model: str, legacy: bool | None) -> Path:
    """One tokenizer folder: the fixture's sentencepiece model plus its tokenizer_config.json."""
    target = folder / variant_name(model, legacy)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE / f"{model}.model", target / "tokenizer.model")
    (target / "tokenizer_config.json").write_text(json.dumps(variant_config(model, legacy), indent=1))
    return target


# Texts where the slow and fast forms, or legacy and non-legacy encoding, can part: spaces at the edges and in runs,
# newlines, the word-start marker itself, byte-fallback characters, markers inside text, the empty string.
HAND_TEXTS = [
    "Hello world", " leading space", "  two leading spaces", "trailing spaces  ", "a\nb\n\nc", "tab\tseparated",
    "\n\nHuman: What is 2+2?\n\nAssistant: 4", "naïve café über", "emoji 🙂 and ✓", "中文测试", "日本語のテキスト",
    "\u2581marker\u2581inside", "x <|im_end|> y", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|> spaced <|im_end|>", "<unk> as text", "1234567890", "", " ", "Multiple   spaces   here",
    "ends with newline\n", "Human: list three fruits\n\nAssistant: 1. apple\n2. pear\n3. plum</s>",
]


def fixture_texts() -> list[str]:
    return list(HAND_TEXTS)


def prepare(work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from rre.gold import starling_text

    for model, legacy in VARIANTS:
        write_variant(work, model, legacy)
    texts = fixture_texts()
    if VAL.exists():
        records = json.loads(VAL.read_text())
        texts += [starling_text(r["input"], r["output"], form) for form in ("paper", "model_card") for r in records]
    else:
        print(f"{VAL} absent: the hand-written texts only")
    (work / "texts.json").write_text(json.dumps(texts))
    print(f"{len(VARIANTS)} tokenizer folders and {len(texts)} texts in {work}")


def encode_435(work: Path, fixture: bool) -> None:
    """Under transformers 4.35.2: the paper's `AutoTokenizer.from_pretrained(..., use_fast=False)`."""
    import transformers
    from transformers import AutoTokenizer

    if not transformers.__version__.startswith("4.35."):
        sys.exit(f"error: encode runs under transformers 4.35.x (the paper's), this is {transformers.__version__}")
    texts = fixture_texts() if fixture else json.loads((work / "texts.json").read_text())
    ids = {}
    for model, legacy in VARIANTS:
        tok = AutoTokenizer.from_pretrained(write_variant(work, model, legacy), use_fast=False)
        name = variant_name(model, legacy)
        ids[name] = {"model": f"{model}.model", "config": variant_config(model, legacy),
                     "plain": tok(texts, add_special_tokens=False).input_ids,
                     "special": tok(texts, add_special_tokens=True).input_ids}
    if fixture:
        out = {"texts": texts, "transformers": transformers.__version__, "ids": ids}
        (FIXTURE / "expected_ids.json").write_text(json.dumps(out, ensure_ascii=False))
    else:
        (work / "ids_4_35.json").write_text(json.dumps(ids))
    print(f"{len(texts)} texts x {len(ids)} variants encoded with transformers {transformers.__version__}")


def compare(work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from rre.gold import load_starling_tokenizer

    texts = json.loads((work / "texts.json").read_text())
    paper = json.loads((work / "ids_4_35.json").read_text())
    print(f"texts: {len(texts)} per variant; equal to transformers 4.35.2's slow LlamaTokenizer:")
    print(f"{'variant':34} {'slow':>12} {'fast':>12}")
    for name, expected in paper.items():
        row = []
        for use_fast in (False, True):
            tok = load_starling_tokenizer(str(work / name), use_fast=use_fast)
            got = tok(texts, add_special_tokens=False).input_ids
            row.append(sum(a == b for a, b in zip(got, expected["plain"])))
        print(f"{name:34} {row[0]:>7}/{len(texts)} {row[1]:>7}/{len(texts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["prepare", "encode", "compare", "fixture", "models"])
    parser.add_argument("work", type=Path, nargs="?", default=Path("/tmp/slow_tokenizer_check"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step == "models":  # rebuild the fixture's sentencepiece models (then `fixture` under 4.35.2)
        for kind in ("user_defined", "no_dummy_prefix", "control"):
            (FIXTURE / f"{kind}.model").write_bytes(train_model(kind))
    elif args.step == "prepare":
        prepare(args.work)
    elif args.step in ("encode", "fixture"):
        encode_435(args.work, fixture=args.step == "fixture")
    else:
        compare(args.work)


if __name__ == "__main__":
    main()
