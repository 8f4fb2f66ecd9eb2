"""Gold reward models: the Starling-RM layout and a one-label classifier, on tiny random models saved to disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_reward_models import save_tiny_classifier, save_tiny_starling
from transformers import AutoTokenizer

from rre.errors import DataError
from rre.gold import STARLING_TEMPLATE, StarlingRewardModel, load_gold_reward_model

INSTRUCTIONS = ["Name a fruit.", "Write a short poem about the sea.", "What is 2 + 2?", "Say hi.", "Explain rain."]
RESPONSES = [
    "An apple.",
    "The sea, the sea, the glorious sea, rolling in waves beneath the moon. " * 4,
    "4",
    # "<|endoftext|>" is token id 0 in SmolLM2's vocabulary: Starling's pad id, here inside a real text.
    "hi <|endoftext|> there",
    "Water vapour cools, condenses into droplets, and falls.",
]


@pytest.fixture(scope="module")
def starling(tmp_path_factory, smollm2_dir):
    return save_tiny_starling(tmp_path_factory.mktemp("starling") / "rm", smollm2_dir)


def manual_starling_score(model: StarlingRewardModel, tokenizer, instruction: str, response: str,
                          max_length: int | None = None) -> float:
    """The model card's definition on one unpadded sequence: the v_head applied to the backbone's hidden state
    at the last token."""
    ids = tokenizer(STARLING_TEMPLATE.format(instruction=instruction, response=response)).input_ids
    if max_length:
        ids = ids[-max_length:]
    with torch.no_grad():
        hidden = model.transformer(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        return float(hidden @ model.v_head.weight[0])


def test_starling_input_format():
    assert STARLING_TEMPLATE.format(instruction="Q?", response="A.") == (
        "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>"
    )


def test_starling_layout_and_save_load_round_trip(starling, smollm2_dir, tmp_path):
    folder, original = starling
    with safe_open(str(Path(folder) / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    # The checkpoint's weight names: the backbone under `transformer.`, a bias-free `v_head`.
    assert "v_head.weight" in keys and "v_head.bias" not in keys
    assert "transformer.embed_tokens.weight" in keys
    assert all(k.startswith(("transformer.", "v_head.")) for k in keys)

    gold = load_gold_reward_model(folder, "starling", batch_size=2, device="cpu", dtype="float32",
                                  tokenizer_name=smollm2_dir)
    loaded = gold.model.state_dict()
    assert set(loaded) == set(original.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in original.state_dict().items())
    assert gold.model.dtype == torch.float32  # float32 on CPU

    gold.model.save_pretrained(tmp_path / "again")
    again = load_gold_reward_model(str(tmp_path / "again"), "starling", batch_size=2, device="cpu", dtype="float32",
                                   tokenizer_name=smollm2_dir)
    assert again.score(INSTRUCTIONS, RESPONSES, progress=False) == gold.score(INSTRUCTIONS, RESPONSES, progress=False)


def test_starling_scores_the_last_non_pad_token(starling, smollm2_dir):
    folder, model = starling
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert 0 in tokenizer(STARLING_TEMPLATE.format(instruction=INSTRUCTIONS[3], response=RESPONSES[3])).input_ids
    gold = load_gold_reward_model(folder, "starling", batch_size=3, device="cpu", tokenizer_name=smollm2_dir,
                                  gold_prompt="model_card", dtype="float32")
    batched = gold.score(INSTRUCTIONS, RESPONSES, progress=False)  # padded batches of mixed lengths
    expected = [manual_starling_score(model, tokenizer, i, r) for i, r in zip(INSTRUCTIONS, RESPONSES)]
    assert batched == pytest.approx(expected, abs=1e-5)
    gold.batch_size = 1
    assert gold.score(INSTRUCTIONS, RESPONSES, progress=False) == pytest.approx(expected, abs=1e-5)
    assert len(set(round(s, 6) for s in batched)) == len(batched)  # a random head tells the texts apart


def test_starling_truncates_from_the_left(starling, smollm2_dir):
    folder, model = starling
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    gold = load_gold_reward_model(folder, "starling", batch_size=4, device="cpu", tokenizer_name=smollm2_dir,
                                  max_length=12, gold_prompt="model_card", dtype="float32")
    got = gold.score(INSTRUCTIONS, RESPONSES, progress=False)
    expected = [manual_starling_score(model, tokenizer, i, r, max_length=12) for i, r in zip(INSTRUCTIONS, RESPONSES)]
    assert got == pytest.approx(expected, abs=1e-5)


def test_starling_spans_the_visible_gpus_and_scores_the_same(starling, smollm2_dir, tmp_path, monkeypatch):
    """Starling-RM-34B (68 GB in bf16) is loaded with device_map="auto", as the paper's code did, so it may span
    several GPUs; scoring sends the inputs to the first layer's device and reads the head wherever it lies. A GPU
    load is stood in for (this machine has none): asked for "auto", the model is placed over two devices (a layer
    offloaded to disk, on the meta device until its hook brings it in), and scores as on one device."""
    folder, _ = starling
    one = load_gold_reward_model(folder, "starling", batch_size=2, device="cpu", dtype="float32",
                                 tokenizer_name=smollm2_dir)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked, load = [], StarlingRewardModel.from_pretrained
    spread = {"transformer.embed_tokens": "cpu", "transformer.rotary_emb": "cpu", "transformer.layers.0": "cpu",
              "transformer.layers.1": "disk", "transformer.norm": "cpu", "v_head": "cpu"}

    def over_two_devices(name, **kwargs):
        asked.append(kwargs["device_map"])
        return load(name, **{**kwargs, "device_map": spread, "offload_folder": str(tmp_path / "offload")})

    monkeypatch.setattr(StarlingRewardModel, "from_pretrained", over_two_devices)
    gold = load_gold_reward_model(folder, "starling", batch_size=2, device="auto", dtype="float32",
                                  tokenizer_name=smollm2_dir)
    assert asked == ["auto"] and {p.device.type for p in gold.model.parameters()} == {"cpu", "meta"}
    assert gold.score(INSTRUCTIONS, RESPONSES, progress=False) == pytest.approx(
        one.score(INSTRUCTIONS, RESPONSES, progress=False), abs=1e-5)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, smollm2_dir):
    return save_tiny_classifier(tmp_path_factory.mktemp("classifier") / "rm", smollm2_dir)


def test_classifier_uses_the_chat_template_and_the_last_token(classifier):
    folder, model = classifier
    tokenizer = AutoTokenizer.from_pretrained(folder)
    gold = load_gold_reward_model(folder, "classifier", batch_size=2, device="cpu", dtype="float32")
    got = gold.score(INSTRUCTIONS, RESPONSES, progress=False)
    expected = []
    for instruction, response in zip(INSTRUCTIONS, RESPONSES):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], tokenize=False
        )
        ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids])
        with torch.no_grad():
            manual = float(model.model(input_ids=ids).last_hidden_state[0, -1] @ model.score.weight[0])
            if ids[0, -1] != tokenizer.pad_token_id:  # transformers' own pooling agrees when it can find the end
                assert float(model(input_ids=ids).logits[0, 0]) == pytest.approx(manual, abs=1e-5)
        expected.append(manual)
    assert got == pytest.approx(expected, abs=1e-5)


def test_classifier_without_chat_template_uses_plain_text(tmp_path, smollm2_dir):
    folder, model = save_tiny_classifier(tmp_path / "plain", smollm2_dir, seed=1, chat_template=False)
    gold = load_gold_reward_model(folder, "classifier", batch_size=4, device="cpu", dtype="float32")
    assert not gold.tokenizer.chat_template
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert gold.encode(["Q?"], ["A."]) == [tokenizer("Q?\n\nA.").input_ids]
    batched = gold.score(INSTRUCTIONS, RESPONSES, progress=False)
    gold.batch_size = 1
    assert gold.score(INSTRUCTIONS, RESPONSES, progress=False) == pytest.approx(batched, abs=1e-5)


def test_classifier_must_have_one_label(tmp_path, smollm2_dir):
    folder, _ = save_tiny_classifier(tmp_path / "two", smollm2_dir, num_labels=2)
    with pytest.raises(DataError, match="num_labels=1"):
        load_gold_reward_model(folder, "classifier", device="cpu", dtype="float32")


def test_unknown_gold_type(starling):
    with pytest.raises(DataError, match="gold_type"):
        load_gold_reward_model(starling[0], "pairwise")
