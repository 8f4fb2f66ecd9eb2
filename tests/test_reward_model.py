"""The white-box reward, pinned on hand-computed cases."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from reward_model import (
    ReversedEngineeredRewardForInference,
    RewardConfig,
    interpolate_rar,
    length_incentive,
    repetition_penalty,
    tokenize,
)
from rre.data import load_examples
from rre.prompts import ALPACA_ROLE_MARKERS, STOP_STRINGS, get_prompt_format
from rre.relevance import RelevanceEncoder



class DictEncoder:
    """e(.) with planted embeddings, so QR and RAR are known exactly; counts encoder calls."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([self.vectors[t] for t in texts])


def test_length_incentive_counts_wordpunct_tokens():
    tokens = tokenize("The cat sat on the mat.")
    assert tokens == ["The", "cat", "sat", "on", "the", "mat", "."]
    assert length_incentive(tokens) == pytest.approx(0.07)
    assert length_incentive(tokenize("")) == 0.0


def test_repetition_penalty_distinct_over_all_trigrams():
    # trigrams: abc, bca, cab, abc -> 3 distinct of 4
    assert repetition_penalty(tokenize("a b c a b c")) == pytest.approx(0.75)
    assert repetition_penalty(tokenize("one two three four")) == 1.0
    assert repetition_penalty(tokenize("hi there")) == 1.0  # under 3 tokens: no trigram
    assert repetition_penalty(tokenize("")) == 1.0
    assert repetition_penalty(tokenize("go go go go go")) == pytest.approx(1 / 3)


def test_rar_interpolation_is_linear_and_unclipped():
    assert interpolate_rar(0.0, 3.5, 512) == 0.0
    assert interpolate_rar(3.5, 3.5, 512) == pytest.approx(5.12)
    assert interpolate_rar(1.75, 3.5, 512) == pytest.approx(2.56)
    assert interpolate_rar(7.0, 3.5, 256) == pytest.approx(5.12)  # above the range: not clipped
    assert interpolate_rar(1.0, 1.0, 512) == pytest.approx(5.12)  # cosine encoder calibration


@pytest.mark.parametrize("text,expected", [
    ("  Paris is the capital.\n\n### Instruction:\nName a river.", "Paris is the capital."),
    ("Answer one.\n### Response:\nmore", "Answer one."),
    ("Line one.\n\n\n\nunrelated", "Line one."),
    ("Body text\n\n-- signature", "Body text"),
    ("Body text\n\n____\nfooter", "Body text"),
    ("\n\n  spaced out  \n", "spaced out"),
    ("### Instruction: at the start", ""),
])
def test_stop_string_cutting(text, expected):
    assert get_prompt_format("alpaca").clean(text) == expected


def test_chat_format_markers_come_from_the_template(smollm2_dir):
    from transformers import AutoTokenizer

    fmt = get_prompt_format("chat", AutoTokenizer.from_pretrained(smollm2_dir))
    assert set(fmt.role_markers) == {"<|im_start|>user", "<|im_end|>", "<|im_start|>assistant"}
    assert fmt.clean("Paris.<|im_end|>\n<|im_start|>user\nAnd Rome?") == "Paris."
    prompt = fmt.build("Translate.", "Hola")
    assert prompt.endswith("<|im_start|>user\nTranslate.\n\nHola<|im_end|>\n<|im_start|>assistant\n")


def test_alpaca_prompt_with_and_without_input():
    """The paper's alpaca prompt: one system line, the input inline after '### Input:', no newline at the end."""
    fmt = get_prompt_format("alpaca")
    system = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request.\n\n")
    assert fmt.build("Add.", "2 and 3") == system + "### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:"
    assert fmt.build("Add 2 and 3.") == system + "### Instruction:\nAdd 2 and 3.\n\n### Response:"
    assert fmt.stop_strings == ALPACA_ROLE_MARKERS + STOP_STRINGS


RESPONSE = "a b c a b c"  # LI = 0.06, RP = 0.75
VECTORS = {"q": [1.0, 0.0], RESPONSE: [0.5, 0.7], "ref": [0.0, 2.0]}  # QR = 0.5, RAR = 1.4


def make_rer(li, rp, rel, br, **kw):
    config = RewardConfig(length_incentive=li, repetition_penalty=rp, relevance_scaling=rel, reward_branching=br, **kw)
    return ReversedEngineeredRewardForInference(config, encoder=DictEncoder(VECTORS))


# Hand-computed rewards for every flag combination: (LI, RP, relevance, branching) -> (OPENENDED, CONSTRAINED).
# RAR branch: 1.4 / 3.5 * 512/100 = 2.048.
EXPECTED = {
    (False, False, False, False): (1.0, 1.0), (False, False, False, True): (1.0, 1.0),
    (False, False, True, False): (0.5, 0.5), (False, False, True, True): (0.5, 2.048),
    (False, True, False, False): (0.75, 0.75), (False, True, False, True): (0.75, 0.75),
    (False, True, True, False): (0.375, 0.375), (False, True, True, True): (0.375, 1.536),
    (True, False, False, False): (0.06, 0.06), (True, False, False, True): (0.06, 0.06),
    (True, False, True, False): (0.03, 0.03), (True, False, True, True): (0.03, 2.048),
    (True, True, False, False): (0.045, 0.045), (True, True, False, True): (0.045, 0.045),
    (True, True, True, False): (0.0225, 0.0225), (True, True, True, True): (0.0225, 1.536),
}


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=4)))
def test_every_flag_combination(flags):
    rer = make_rer(*flags)
    rewards, feats = rer(["q", "q"], [RESPONSE, RESPONSE], ["ref", "ref"], ["OPENENDED", "CONSTRAINED"],
                         return_features=True)
    assert rewards == pytest.approx(list(EXPECTED[flags]))
    li, rp, rel, br = flags
    if rel:
        assert feats[0]["QR"] == pytest.approx(0.5) and feats[1]["RAR"] == pytest.approx(1.4)
    assert feats[1]["branch"] == ("RAR" if rel and br else "LIxQR" if rel else "LI")


def test_one_encoder_pass_per_batch_and_only_needed_texts():
    rer = make_rer(True, True, True, True)
    rer(["q", "q"], [RESPONSE, RESPONSE], ["ref", "ref"], ["OPENENDED", "CONSTRAINED"])
    assert len(rer.encoder.calls) == 1
    # OPENENDED needs its query, CONSTRAINED its reference; responses always.
    assert sorted(rer.encoder.calls[0]) == sorted([RESPONSE, RESPONSE, "q", "ref"])


def test_rar_max_dot_and_max_sequence_length_flags():
    rer = make_rer(True, False, True, True, rar_max_dot=1.4, max_sequence_length=300)
    assert rer(["q"], [RESPONSE], ["ref"], ["CONSTRAINED"]) == pytest.approx([3.0])


@pytest.mark.parametrize("mode,qr", [("clean", [0.2, 0.0]), ("paper", [0.3, 0.5])])
def test_short_and_empty_responses(mode, qr):
    """LI and RP read the cut text in both modes; QR reads the cut text under clean, the raw one under paper."""
    vectors = {"q": [1.0, 0.0], "ref": [0.0, 2.0], "Yes": [0.2, 0.0], "": [0.0, 0.0],
               "  Yes \n": [0.3, 0.0], "\n\n### Response:\nrest": [0.5, 0.0]}
    rer = ReversedEngineeredRewardForInference(RewardConfig(response_postprocess=mode), encoder=DictEncoder(vectors))
    rewards, feats = rer(["q", "q"], ["  Yes \n", "\n\n### Response:\nrest"], ["ref", "ref"],
                         ["OPENENDED", "OPENENDED"], return_features=True)
    assert feats[0]["RP"] == 1.0 and feats[0]["LI"] == pytest.approx(0.01)
    assert [f["QR"] for f in feats] == pytest.approx(qr)
    assert rewards[0] == pytest.approx(0.01 * qr[0])
    assert feats[1]["LI"] == 0.0 and rewards[1] == 0.0  # cut at the role marker: nothing left


def test_do_strip_off_keeps_the_text_after_stop_strings():
    rer = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False, do_strip=False))
    text = "Done.\n\n### Instruction:\nNext"
    assert rer(["q"], [text]) == pytest.approx([len(tokenize(text)) / 100])
    rer_strip = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False))
    assert rer_strip(["q"], [text]) == pytest.approx([0.02])


def test_branching_requires_qtype():
    with pytest.raises(ValueError, match="qtype"):
        make_rer(True, True, True, True)(["q"], [RESPONSE], ["ref"], [None])


def test_custom_feature_and_combination_rule():
    """The README's worked example: a hedging feature halves the paper's reward."""
    sys.path.insert(0, str(ROOT / "examples"))
    import my_features

    vectors = {"q": [1.0, 0.0], "I'm sorry, as an AI I cannot help.": [0.4, 0.0], "Sure: step one, step two.": [0.4, 0.0]}
    rer = ReversedEngineeredRewardForInference(RewardConfig(reward_branching=False), encoder=DictEncoder(vectors),
                                               extra_features=my_features.EXTRA_FEATURES, combine=my_features.combine)
    rewards, feats = rer(["q", "q"], ["I'm sorry, as an AI I cannot help.", "Sure: step one, step two."],
                         return_features=True)
    assert [f["hedging"] for f in feats] == [1.0, 0.0]
    assert rewards[0] == pytest.approx(0.5 * feats[0]["paper_reward"])
    assert rewards[1] == pytest.approx(feats[1]["paper_reward"])
    with pytest.raises(ValueError, match="clash"):
        ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False), extra_features={"LI": len})


def test_real_minilm_scores_the_shipped_data(minilm_encoder):
    examples = load_examples(ROOT / "data" / "eval.json", require_qtype=True)
    rer = ReversedEngineeredRewardForInference(RewardConfig(relevance_model="minilm"), encoder=minilm_encoder)
    assert rer.config.rar_max_dot == 1.0  # auto: MiniLM normalizes
    refs = [e.reference for e in examples]
    rewards, feats = rer.score_examples(examples, refs, batch_size=8, return_features=True, progress=False)
    assert len(rewards) == len(examples) and all(math.isfinite(r) for r in rewards)
    for e, f, r in zip(examples, feats, rewards):
        if e.qtype == "CONSTRAINED":  # response == reference: cosine 1, so RAR maps to the top of the range
            assert f["RAR"] == pytest.approx(1.0, abs=1e-4)
            assert r == pytest.approx(5.12 * f["RP"], rel=1e-4)
        else:
            assert r == pytest.approx(f["LI"] * f["QR"] * f["RP"])
    # An answer to a different question is less relevant than the right one.
    shifted = refs[1:] + refs[:1]
    _, off = rer(*zip(*[(e.query, s, e.reference, e.qtype) for e, s in zip(examples, shifted)]), return_features=True)
    assert sum(f["QR"] for f in feats) > sum(f["QR"] for f in off)
    assert sum(f["RAR"] for f in feats) > sum(f["RAR"] for f in off)


def test_encoder_cache_skips_texts_seen_before(minilm_encoder):
    minilm_encoder.encode(["cache test one", "cache test two"])
    before = len(minilm_encoder.cache)
    emb = minilm_encoder.encode(["cache test one", "cache test three", "cache test one"])
    assert len(minilm_encoder.cache) == before + 1
    assert torch.allclose(emb[0], emb[2]) and emb[0].norm().item() == pytest.approx(1.0, abs=1e-4)


def test_contriever_style_encoder_mean_pools_and_truncates_left(tmp_path, minilm_encoder):
    """Contriever semantics on a tiny random BERT: mean pooling, raw dot product, left truncation."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_encoder.name)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(tmp_path)
    tok.model_max_length = 16
    tok.save_pretrained(tmp_path)
    enc = RelevanceEncoder(str(tmp_path), model_type="auto", batch_size=2, device="cpu", dtype="float32")
    assert enc.model_type == "contriever"
    texts = ["short one", "a somewhat longer sentence to pool", " ".join(f"w{i}" for i in range(40)) + " end"]
    got = enc.encode(texts)
    for text, vec in zip(texts, got):
        ids = enc.tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            hidden = enc.model(**ids).last_hidden_state[0]
        torch.testing.assert_close(vec, hidden.mean(0), rtol=1e-4, atol=1e-5)
    last = enc.tokenizer(texts[2], truncation=True, max_length=16)["input_ids"]
    assert enc.tokenizer.convert_ids_to_tokens(last)[-2] == "end"  # the end survived: cut from the left


def test_score_outputs_cli(tmp_path):
    outputs = [{"instruction": e.seed_input, "output": e.reference + " " + e.reference, "generator": "x"}
               for e in load_examples(ROOT / "data" / "eval.json")]
    path = tmp_path / "outs.json"
    path.write_text(json.dumps(outputs))
    save = tmp_path / "features.json"
    proc = subprocess.run([sys.executable, "score_outputs.py", "--outputs_path", str(path), "--save_path", str(save),
                           "--features_module", "examples/my_features.py", "--relevance_model", "minilm"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for word in ("OPENENDED", "CONSTRAINED", "hedging", "reward"):
        assert word in proc.stdout
    rows = json.loads(save.read_text())
    assert len(rows) == 30 and {"LI", "RP", "QR", "RAR", "hedging", "reward"} <= set(rows[0])


def test_bf16_autocast_encoder_agrees_with_float32(minilm_encoder):
    texts = ["How do I boil an egg?", "Put the egg in boiling water for nine minutes, then cool it.", "Paris"]
    fp32 = RelevanceEncoder(minilm_encoder.name, dtype="float32").encode(texts)
    bf16 = RelevanceEncoder(minilm_encoder.name, dtype="bfloat16").encode(texts)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16 @ bf16.T, fp32 @ fp32.T, atol=1e-2, rtol=0)
