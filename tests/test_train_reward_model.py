"""The Bradley-Terry reward-model trainer (offline gold stand-in): pair building, bad input, train/save/reuse."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

SCRIPT = ROOT / "train_reward_model.py"

import train_reward_model as trm  # noqa: E402

from rre import standin  # noqa: E402
from rre.batching import length_batches  # noqa: E402
from rre.data import Example  # noqa: E402
from rre.errors import DataError


def make_examples(n: int) -> list[Example]:
    """Varied references: multi-sentence, one sentence, and one-word answers (where some kinds do not apply)."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            ref = f"Answer {i} starts here. It has a second sentence about topic {i}. A third one closes it."
        elif i % 3 == 1:
            ref = f"The result for question {i} is a single plain sentence with several words."
        else:
            ref = f"Yes{i}."
        out.append(Example(instruction=f"Question number {i}?", reference=ref, qtype="OPENENDED"))
    return out


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


# ---------------------------------------------------------------------------------------------------------
# Pair construction


def test_build_pairs_is_seeded_and_covers_every_corruption():
    examples = make_examples(30)
    pairs = standin.build_pairs(examples, pairs_per_example=3, seed=0)
    assert pairs == standin.build_pairs(examples, pairs_per_example=3, seed=0)  # deterministic for a seed
    assert pairs != standin.build_pairs(examples, pairs_per_example=3, seed=1)
    assert {p.kind for p in pairs} == set(standin.CORRUPTIONS)
    for p in pairs:
        assert p.rejected.strip() and p.rejected.strip() != p.chosen.strip()
    by_prompt: dict[str, list[str]] = {}
    for p in pairs:
        by_prompt.setdefault(p.prompt, []).append(p.kind)
    assert len(by_prompt) == 30
    for kinds in by_prompt.values():
        assert len(kinds) == 3 and len(set(kinds)) == 3  # distinct kinds per instruction, even for "Yes2."
    # The prompt is the user turn eval_monotonicity.py scores with (instruction, blank line, input); chosen is the reference.
    assert pairs[0].prompt == examples[0].user_turn and pairs[0].chosen == examples[0].reference


def test_corruptions_do_what_they_say():
    examples = make_examples(6)
    rng = random.Random(0)
    ref_words = examples[0].reference.split()
    truncated = standin.corrupt("truncated", 0, examples, rng)
    assert ref_words[: len(truncated.split())] == truncated.split() and len(truncated.split()) < len(ref_words)
    assert standin.corrupt("off_topic", 0, examples, rng) in {ex.reference for ex in examples[1:]}
    assert standin.corrupt("evasive", 0, examples, rng) in standin.EVASIVE_ANSWERS
    repeated = standin.corrupt("repetition", 0, examples, rng)
    assert len(repeated.split()) > len(set(repeated.split())) * 3
    shuffled = standin.corrupt("shuffled", 0, examples, rng)
    assert set(shuffled.split()) <= set(ref_words) and shuffled != examples[0].reference
    assert standin.corrupt("truncated", 2, examples, rng) is None  # "Yes2." is too short to truncate


def test_truncation_neutral_pairs_say_nothing_by_being_cut():
    """No truncated reference is ever the rejected answer; every pair comes whole and, where both answers have 4+
    words, cut on both sides at one length, on the chosen side only and on the rejected side only, each cut a
    whole-word prefix of 3 .. length-1 words. So the chosen side is cut exactly as often as the rejected one."""
    examples = make_examples(30)
    pairs = standin.build_recipe_pairs("truncation_neutral", examples, pairs_per_example=3, seed=0)
    assert pairs == standin.build_recipe_pairs("truncation_neutral", examples, pairs_per_example=3, seed=0)
    assert pairs != standin.build_recipe_pairs("truncation_neutral", examples, pairs_per_example=3, seed=1)
    assert "truncated" not in {p.kind for p in pairs}
    assert {p.kind for p in pairs} == set(standin.NEUTRAL_CORRUPTIONS)
    whole = {(p.prompt, p.kind): p for p in pairs if p.form == "whole"}
    counts = {f: sum(p.form == f for p in pairs) for f in standin.FORMS}
    assert counts["both_cut"] == counts["chosen_cut"] == counts["rejected_cut"] > 0
    assert counts["whole"] == len(whole) > counts["both_cut"]  # "Yes2."-style answers are too short to cut
    assert sum(p.chosen != whole[p.prompt, p.kind].chosen for p in pairs) == \
        sum(p.rejected != whole[p.prompt, p.kind].rejected for p in pairs)

    def is_cut_of(part: str, full: str) -> bool:
        n = len(part.split())
        return full.startswith(part) and part.split() == full.split()[:n] and 3 <= n <= len(full.split()) - 1

    lengths = set()
    for p in pairs:
        w = whole[p.prompt, p.kind]
        if p.form in ("both_cut", "chosen_cut"):
            assert is_cut_of(p.chosen, w.chosen)
            lengths.add(len(p.chosen.split()))
        else:
            assert p.chosen == w.chosen
        if p.form in ("both_cut", "rejected_cut"):
            assert is_cut_of(p.rejected, w.rejected)
        else:
            assert p.rejected == w.rejected
        if p.form == "both_cut":
            assert len(p.chosen.split()) == len(p.rejected.split())
    assert len(lengths) > 3  # drawn, not fixed
    # A whole shuffled or repeated answer ends as the reference does, so stopping mid-sentence marks neither side.
    for w in whole.values():
        if w.kind in ("shuffled", "repetition") and w.chosen[-1] in ".!?":
            assert w.rejected.endswith(w.chosen[-1]) and w.rejected[-2:-1] not in ".,;:!?"
    assert standin.build_pairs(examples, 3, 0) == standin.build_recipe_pairs("corruptions", examples, 3, 0)


def test_cut_words_keeps_the_answers_own_spacing():
    assert standin.cut_words("One two\n\nthree  four five.", 3) == "One two\n\nthree"
    assert standin.cut_words("a b", 5) == "a b"
    rng = __import__("random").Random(0)
    assert {standin.draw_cut(rng, 5) for _ in range(50)} == {3, 4} and standin.draw_cut(rng, 3) is None


def test_corruptions_recipe_is_the_five_kind_pairs():
    examples = make_examples(12)
    assert standin.build_recipe_pairs("corruptions", examples, 3, 0) == standin.build_pairs(examples, 3, 0)
    with pytest.raises(ValueError, match="unknown recipe"):
        standin.build_recipe_pairs("other", examples, 3, 0)


def test_shipped_training_prompts_are_apart_from_every_eval_set():
    """data/train.json (the offline stand-in's prompts) shares no instruction with data/eval.json, data/dev.json
    or the AlpacaFarm validation file the ladder and the accuracy bench answer from."""
    from rre.data import load_examples

    train = {ex.user_turn.strip() for ex in load_examples(ROOT / "data" / "train.json")}
    for name in ("eval.json", "dev.json"):
        held = {ex.user_turn.strip() for ex in load_examples(ROOT / "data" / name)}
        assert held and not train & held, name
    val = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"
    if not val.is_file():
        pytest.skip(f"{val} is absent (the paper's validation set, read in place)")
    held = {ex.user_turn.strip() for ex in load_examples(val)}
    assert len(held) > 1900 and not train & held
    # And the script's default keeps the shipped eval files apart.
    cfg = trm.TrainRewardModelConfig()
    assert cfg.recipe == "truncation_neutral" and cfg.keep_apart_from == [str(ROOT / "data" / "eval.json"),
                                                                      str(ROOT / "data" / "dev.json")]


def test_keep_apart_from_drops_eval_instructions(tmp_path, capsys):
    examples = make_examples(6)
    held = tmp_path / "eval.json"
    held.write_text(json.dumps([{"input": examples[1].instruction, "output": "x"},
                                {"input": "Not in training?", "output": "y"}]))
    kept = trm.kept_apart(examples, [str(held)])
    assert [ex.instruction for ex in kept] == [ex.instruction for i, ex in enumerate(examples) if i != 1]
    assert "1 of 6 instructions are in --keep_apart_from" in capsys.readouterr().out
    with pytest.raises(DataError, match="every instruction is in --keep_apart_from"):
        trm.kept_apart(examples[1:2], [str(held)])


def test_unknown_recipe_exits_2(tmp_path, tiny_llama_dir):
    result = run_script("--model_name", tiny_llama_dir, "--output_dir", str(tmp_path / "rm"), "--recipe", "old")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == \
        "error: --recipe=old: expected one of truncation_neutral, corruptions"
    assert not (tmp_path / "rm").exists()


def test_split_by_prompt_keeps_prompts_apart():
    pairs = standin.build_pairs(make_examples(20), pairs_per_example=2, seed=0)
    train, held = standin.split_by_prompt(pairs, 0.15, seed=0)
    assert len(train) + len(held) == len(pairs) and held
    assert not {p.prompt for p in train} & {p.prompt for p in held}


def test_format_for_classifier(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    text = standin.format_for_classifier(tok, "What is 2+2?", "4.")
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text and "<|im_start|>assistant\n4.<|im_end|>" in text
    tok.chat_template = None
    assert standin.format_for_classifier(tok, "What is 2+2?", "4.") == "What is 2+2?\n\n4."


# ---------------------------------------------------------------------------------------------------------
# User preference pairs: bad input is one line naming file, record and field, exit code 2


def test_load_pairs_accepts_prompt_or_instruction(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
            {"instruction": "Fix it.", "input": "teh cat", "chosen": "the cat", "rejected": "teh cat"},
            {"prompt": "Tie.", "chosen": "same", "rejected": "same"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs, ties = standin.load_pairs(str(path))
    assert ties == 1 and [p.prompt for p in pairs] == ["Say hi.", "Fix it.\n\nteh cat"]
    assert pairs[1].chosen == "the cat" and pairs[1].kind == "user"


def test_load_pairs_errors_name_file_record_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": 3,
                                                                                 "rejected": "c"}]))
    with pytest.raises(DataError, match=r"bad\.json: record 1: field 'chosen': expected a string"):
        standin.load_pairs(str(path))
    path.write_text(json.dumps([{"chosen": "b", "rejected": "c"}]))
    with pytest.raises(DataError, match=r"record 0: field 'prompt': missing"):
        standin.load_pairs(str(path))


def test_missing_chosen_exits_2_with_one_line(tmp_path, tiny_llama_dir):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n"
                    + json.dumps({"prompt": "p2", "rejected": "b"}) + "\n")
    result = run_script("--pairs_path", str(path), "--model_name", tiny_llama_dir,
                        "--output_dir", str(tmp_path / "rm"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"error: {path}: line 2 (record 1): field 'chosen': missing"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "rm").exists()


# ---------------------------------------------------------------------------------------------------------
# End to end on a tiny model: trains, saves a loadable classifier with its info file, and is reused


def test_train_save_load_and_reuse(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = tmp_path / "train.json"
    data.write_text(json.dumps([{"input": ex.instruction, "output": ex.reference, "qtype": ex.qtype}
                                for ex in make_examples(12)]))
    out = tmp_path / "standin"
    args = ["--data_path", str(data), "--model_name", tiny_llama_dir, "--output_dir", str(out),
            "--pairs_per_example", "2", "--max_pairs", "20", "--epochs", "1", "--batch_size", "4",
            "--max_length", "96", "--trainable_layers", "1", "--heldout_fraction", "0.2", "--seed", "3"]
    first = run_script(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "held-out pairs:" in first.stdout and "saved the reward model" in first.stdout

    info = json.loads((out / "standin_info.json").read_text())
    for key in ("training_data", "pairs", "heldout", "base_model", "trainable_layers", "settings"):
        assert key in info
    assert info["pairs"]["total"] == 20 and info["pairs"]["train"] + info["pairs"]["heldout"] == 20
    assert info["pairs"]["heldout"] > 0 and 0.0 <= info["heldout"]["accuracy"] <= 1.0
    assert info["base_model"] == tiny_llama_dir and info["trainable_layers"] == 1
    assert info["settings"]["recipe"] == "truncation_neutral" and set(info["pairs"]["by_form"]) <= set(standin.FORMS)
    assert info["frozen_cache"] is True  # a Llama: the frozen layers ran once per text
    assert (out / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".standin-")]  # temp folder renamed away

    # Loads as an ordinary classifier and gives one score per input, the same alone or padded in a batch.
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    texts = [standin.format_for_classifier(tok, "Question number 1?", r) for r in
             ("A short answer.", "A much longer answer that goes on for quite a few more words than the first.")]
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        batch_scores = model(**enc).logits
        alone = model(**tok(texts[:1], return_tensors="pt")).logits
    assert batch_scores.shape == (2, 1) and torch.isfinite(batch_scores).all()
    assert torch.allclose(batch_scores[0], alone[0], atol=1e-4)

    # Second run: reuses the finished model without retraining.
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    second = run_script(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing the trained reward model" in second.stdout
    assert "reward model:" not in second.stderr  # no training progress bar
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime

    # Different settings on a finished folder are refused rather than silently reused.
    third = run_script(*[a if a != "3" else "4" for a in args])
    assert third.returncode == 2 and "other settings (seed)" in third.stderr


@pytest.mark.parametrize("bf16", [False, True])
def test_frozen_cache_gives_the_full_forwards_scores_and_gradients(tiny_llama_dir, bf16):
    """Training on cached frozen-layer outputs is the same model: same scores, same gradients, even for a batch
    of mixed lengths and a text that contains the pad id (SmolLM2: pad = <|im_end|>). Texts of one prompt share their
    prefix's frozen pass; a prompt with a single text runs alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    trm.freeze_all_but_top(model, 1)
    if bf16:
        for param in model.parameters():
            if not param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    assert trm.can_cache_frozen(model)
    texts = [standin.format_for_classifier(tok, f"Question {i // 3}?", "word " * (3 * i + 1)) for i in range(7)]
    assert tok.pad_token_id in tok(texts[0]).input_ids  # the template's end-of-turn token is the pad id
    groups = [texts[0:3], texts[3:6], texts[6:7]]
    assert trm.common_prefix_length(tok(groups[0]).input_ids) > 5
    cache = trm.build_frozen_cache(model, tok, groups, 96, bf16, n_frozen=1)
    assert len(model.base_model.layers) == 2  # the full block list is back
    # Two groups per prefix pass and at most two texts per forward: a text's prefix rows are picked out of a
    # cache shared with another group, and groups are split across forwards.
    small = trm.build_frozen_cache(model, tok, groups, 96, bf16, n_frozen=1, batch_size=2)
    assert small.pool_at == cache.pool_at
    for text in texts:
        torch.testing.assert_close(small.hidden[text], cache.hidden[text], atol=2e-2 if bf16 else 1e-5, rtol=1e-2)

    grads = []
    for use_cache in (False, True):
        model.zero_grad(set_to_none=True)
        model.train()
        batch = [texts[4], texts[0], texts[6], texts[2], texts[1]]
        scores = (trm.rewards_from_cache(model, cache, batch, bf16, 1) if use_cache
                  else standin.rewards_of(model, tok, batch, 96, bf16))
        scores.sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        grads[-1]["scores"] = scores.detach()
    tol = 1e-2 if bf16 else 1e-5
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=tol, rtol=tol, msg=name)


def test_length_batches_cut_where_padding_costs_most():
    lengths = [100, 5, 98, 6, 7, 101, 50]
    batches = length_batches(lengths, max_batch=16, overhead=32)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every index once
    assert [sorted(lengths[i] for i in b) for b in batches] == [[5, 6, 7], [50], [98, 100, 101]]
    assert all(len(b) <= 2 for b in length_batches(lengths, max_batch=2))
    assert length_batches([9, 9, 9], max_batch=16) == [[0, 1, 2]]  # equal lengths: one forward
    assert length_batches([], max_batch=4) == []


def test_bad_bf16_value_exits_2(tmp_path, tiny_llama_dir):
    result = run_script("--model_name", tiny_llama_dir, "--output_dir", str(tmp_path / "rm"), "--bf16", "maybe")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: --bf16=maybe")


def test_refuses_to_replace_a_foreign_folder(tmp_path, tiny_llama_dir):
    out = tmp_path / "not_a_model"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_script("--model_name", tiny_llama_dir, "--output_dir", str(out), "--max_pairs", "4")
    assert result.returncode == 2 and "holds 1 entry not written by this project (notes.txt)" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me"
    result = run_script("--model_name", tiny_llama_dir, "--output_dir", str(out), "--overwrite=true")
    assert result.returncode == 2 and "it is not a gold stand-in folder" in result.stderr  # --overwrite or not
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_help_renders():
    result = run_script("--help")
    assert result.returncode == 0 and "--pairs_path" in result.stdout and "--trainable_layers" in result.stdout
