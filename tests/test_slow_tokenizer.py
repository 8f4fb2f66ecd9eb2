"""Starling's tokenizer as the paper loaded it: slow, through its sentencepiece model.

tests/data/sentencepiece holds small sentencepiece models built like Yi-34B-Chat's and the ids transformers 4.35.2's
slow LlamaTokenizer gave for hand-written texts under each tokenizer_config variant that changes its encoding
(bench/slow_tokenizer_check.py wrote them under the paper's stack and compares all 2,000 validation inputs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rre.gold import GoldArguments, gold_specs, gold_specs_from_flags, load_starling_tokenizer, starling_text
from rre.slow_tokenizer import SlowLlamaTokenizer

FIXTURE = Path(__file__).parent / "data" / "sentencepiece"
EXPECTED = json.loads((FIXTURE / "expected_ids.json").read_text())
VARIANTS = sorted(EXPECTED["ids"])


def tokenizer_folder(root: Path, name: str) -> Path:
    variant = EXPECTED["ids"][name]
    folder = root / name
    folder.mkdir()
    shutil.copyfile(FIXTURE / variant["model"], folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(variant["config"]))
    return folder


def test_the_fixture_covers_the_settings_that_change_slow_encoding():
    configs = [EXPECTED["ids"][n]["config"] for n in VARIANTS]
    assert {c.get("legacy", "absent") for c in configs} == {True, False, "absent"}
    assert {EXPECTED["ids"][n]["model"] for n in VARIANTS} == {"user_defined.model", "no_dummy_prefix.model",
                                                              "control.model"}
    assert EXPECTED["transformers"] == "4.35.2" and len(EXPECTED["texts"]) >= 20


@pytest.mark.parametrize("name", VARIANTS)
def test_slow_load_gives_the_ids_of_the_papers_stack(tmp_path, name):
    tok = load_starling_tokenizer(str(tokenizer_folder(tmp_path, name)))
    assert isinstance(tok, SlowLlamaTokenizer)
    texts, expected = EXPECTED["texts"], EXPECTED["ids"][name]
    assert tok(texts, add_special_tokens=False).input_ids == expected["plain"]
    assert tok(texts, add_special_tokens=True).input_ids == expected["special"]


def test_the_fast_form_splits_some_texts_otherwise(tmp_path):
    """Why the default matters: the tokenizers form of the same files parts from the paper's ids."""
    differing = 0
    for name in VARIANTS:
        fast = load_starling_tokenizer(str(tokenizer_folder(tmp_path, name)), use_fast=True)
        assert not isinstance(fast, SlowLlamaTokenizer)
        got = fast(EXPECTED["texts"], add_special_tokens=False).input_ids
        differing += sum(a != b for a, b in zip(got, EXPECTED["ids"][name]["plain"]))
    assert differing > len(VARIANTS)


def test_starling_gold_encodes_with_the_slow_form_by_default(tmp_path):
    """The gold itself: its paper-mode input ids are the slow tokenizer's, and --gold_use_fast changes them."""
    from tiny_reward_models import save_tiny_starling

    from rre.gold import load_gold_reward_model

    folder = str(tokenizer_folder(tmp_path, "control-legacy-false"))
    model, _ = save_tiny_starling(tmp_path / "rm", folder)
    instructions, responses = ["Name a fruit.", " Two  spaces"], ["  An apple <|im_end|> maybe.", "ok\n"]
    texts = [starling_text(i, r, "paper") for i, r in zip(instructions, responses)]
    default = load_gold_reward_model(model, "starling", device="cpu", tokenizer_name=folder, dtype="float32")
    fast = load_gold_reward_model(model, "starling", device="cpu", tokenizer_name=folder, dtype="float32",
                                  use_fast=True)
    assert isinstance(default.tokenizer, SlowLlamaTokenizer) and not isinstance(fast.tokenizer, SlowLlamaTokenizer)
    slow_ids = load_starling_tokenizer(folder)(texts, add_special_tokens=False).input_ids
    assert default.encode(instructions, responses) == slow_ids
    assert fast.encode(instructions, responses) != slow_ids


def test_a_tokenizer_without_a_sentencepiece_model_loads_as_it_is(smollm2_dir, capsys):
    tok = load_starling_tokenizer(smollm2_dir)
    assert not isinstance(tok, SlowLlamaTokenizer)
    assert "no sentencepiece model" in capsys.readouterr().out


def test_gold_use_fast_flag_reaches_the_spec_and_its_cache_name():
    slow = GoldArguments(gold_device="cpu", gold_dtype="float32")
    fast = GoldArguments(gold_device="cpu", gold_dtype="float32", gold_use_fast=True)
    [s], [f] = gold_specs_from_flags(slow, ["rm"]), gold_specs_from_flags(fast, ["rm"])
    assert (s.use_fast, f.use_fast) == (False, True) and s.slug != f.slug
    [c] = gold_specs(["rm"], ["classifier"], None)
    assert c.slug == gold_specs(["rm"], ["classifier"], None, use_fast=True)[0].slug  # Starling's setting only
