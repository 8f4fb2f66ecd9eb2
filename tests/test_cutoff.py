"""Cut vs finished answers (rre.cutoff): the definition, the fallback for older outputs files, the split of gold
scores, and the flags that evaluation.py's real decode path and the PPO trainer's rollouts record."""

from __future__ import annotations

import pytest
import torch

import evaluation
from rre.cutoff import CUT_FIELD, cut_flags, fallback_note, format_split, split_by_cut, was_cut
from rre.prompts import resolve_prompt_format


def test_cut_means_stopped_at_the_cap_without_eos_or_stop_string():
    assert was_cut(48, ended=False, max_new_tokens=48)
    assert not was_cut(48, ended=True, max_new_tokens=48)  # EOS as the last allowed token: finished
    assert not was_cut(30, ended=False, max_new_tokens=48)  # the batch stopped early (a stop string elsewhere)
    assert not was_cut(48, ended=False, max_new_tokens=48, text="Done.\n### Instruction: more",
                       stop_strings=("### Instruction",))
    assert was_cut(48, ended=False, max_new_tokens=48, text="no marker here", stop_strings=("### Instruction",))


def test_recorded_flags_win_and_older_records_fall_back_to_token_counts():
    records = [{"output": "a b c", CUT_FIELD: False}, {"output": "a b c d"}, {"output": "a"}, {"output": "x y z w",
                                                                                             CUT_FIELD: True}]

    def words(texts: list[str]) -> list[int]:  # a tokenizer stand-in: one token a word
        return [len(t.split()) for t in texts]

    flags, fell_back = cut_flags(records, 4, words)
    assert flags == [False, True, False, True] and fell_back == 2
    assert cut_flags(records[:1] + records[3:], 4, None) == ([False, True], 0)  # nothing to count: no tokenizer needed
    assert cut_flags(records, 4, None) == (None, 2)  # cannot fall back
    assert "2 of 4 answers carry no 'truncated' field" in fallback_note(2, 4, "x.json", 4)
    assert "cap of 4" in fallback_note(2, 4, "x.json", 4) and "not split" in fallback_note(2, 4, "x.json", None)


def test_split_by_cut():
    split = split_by_cut([1.0, -1.0, 3.0, float("nan"), 5.0], [True, True, False, True, False])
    assert split == {"n": 4, "n_cut": 2, "share_cut": 0.5, "mean_cut": 0.0, "mean_finished": 4.0}
    assert split_by_cut([2.0], [False])["mean_cut"] is None
    assert format_split(split) == "2/4 cut, gold cut 0.00 / finished 4.00"
    with pytest.raises(ValueError):
        split_by_cut([1.0], [True, False])


@pytest.mark.parametrize("postprocess", ["paper", "clean"])
def test_generate_responses_reports_which_answers_hit_the_cap(smollm2_dir, postprocess):
    """SmolLM2 answers a one-word question and ends with EOS well inside 40 tokens (finished); a long request cut
    at 6 tokens is cut. The flags arrive with each batch, in prompt order."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    fmt = resolve_prompt_format("auto", tok)
    prompts = [fmt.build("What is 2 + 2? Answer with one number."), fmt.build("Write a long essay about rivers.")]
    got: dict[int, bool] = {}

    def keep(positions, texts, cut):
        got.update(zip(positions, cut))

    for cap, expected in ((40, {0: False, 1: True}), (6, {0: True, 1: True})):
        got.clear()
        answers = evaluation.generate_responses(model, tok, fmt, prompts, 2, cap, do_sample=False, on_batch=keep,
                                                postprocess=postprocess)
        assert got == expected, (cap, answers)
        n_tokens = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
        assert all(n <= cap + 1 for n in n_tokens)


def test_outputs_record_carries_the_flag_beside_output():
    from rre.data import Example

    ex = Example("Say hi.", "", "Hi.", "OPENENDED")
    assert evaluation.output_record(ex, "Hi", "g", "d", truncated=True) == {
        "instruction": "Say hi.", "output": "Hi", "generator": "g", "dataset": "d", "truncated": True}
    assert CUT_FIELD not in evaluation.output_record(ex, "Hi", "g", "d")  # a reference answer: no decoding
