"""Where the parts meet the paper: the gold model's input, one proxy from training to the check, eval-mode
training forwards, optimizer steps per PPO step, and the paper's README commands run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_run_ppo import make_run, next_batch, tiny_flags, trainable

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
PAD = 0
# A word-level tokenizer small enough to write its ids by hand; ":" and "?" are unknown, so they become id 0,
# Starling's pad id, inside a text.
VOCAB = {"<unk>": 0, "<s>": 1, "<|im_start|>": 2, "<|im_end|>": 3, "user": 4, "assistant": 5, "Human:": 6,
         "Assistant:": 7, "Q?": 8, "A.": 9, "x": 10}


@pytest.fixture(scope="module")
def word_tokenizer_dir(tmp_path_factory) -> str:
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    out = tmp_path_factory.mktemp("word-tok")
    fast.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def word_starling(tmp_path_factory, word_tokenizer_dir):
    from tiny_reward_models import save_tiny_starling

    return save_tiny_starling(tmp_path_factory.mktemp("word-starling") / "rm", word_tokenizer_dir)


def test_gold_prompt_strings_and_ids(word_starling, word_tokenizer_dir):
    from reward_model import load_gold_reward_model, starling_text

    instruction = "\nQ?\n: "
    assert starling_text(instruction, "A.", "paper") == (
        "<|im_start|>user\n\n\nHuman: Q?\n\nAssistant: <|im_end|>\n<|im_start|>assistant\nA.<|im_end|>")
    assert starling_text(instruction, "A.", "model_card") == (
        "<|im_start|>user\n\nQ?\n: <|im_end|>\n<|im_start|>assistant\nA.<|im_end|>")
    folder, _ = word_starling
    paper = load_gold_reward_model(folder, "starling", device="cpu", tokenizer_name=word_tokenizer_dir)
    card = load_gold_reward_model(folder, "starling", device="cpu", tokenizer_name=word_tokenizer_dir,
                                  gold_prompt="model_card")
    # paper: no special tokens added; model card: the tokenizer's BOS, and the unstripped ":" (unknown -> 0).
    assert paper.encode([instruction], ["A."]) == [[2, 4, 6, 8, 7, 3, 2, 5, 9, 3]]
    assert card.encode([instruction], ["A."]) == [[1, 2, 4, 8, 0, 3, 2, 5, 9, 3]]


def manual_score(model, ids: list[int], position: int) -> float:
    with torch.no_grad():
        hidden = model.transformer(input_ids=torch.tensor([ids])).last_hidden_state[0, position]
        return float(hidden @ model.v_head.weight[0])


def test_gold_paper_truncation_and_pad_read_position(word_starling, word_tokenizer_dir):
    from reward_model import load_gold_reward_model, pad_read_positions

    folder, model = word_starling
    gold = load_gold_reward_model(folder, "starling", batch_size=3, device="cpu", tokenizer_name=word_tokenizer_dir,
                                  max_length=8)
    responses = ["A.", "A. x ? x", "x " * 6]
    ids = [[2, 4, 6, 8, 7, 3, 2, 5, 9, 3], [2, 4, 6, 8, 7, 3, 2, 5, 9, 10, 0, 10, 3],
           [2, 4, 6, 8, 7, 3, 2, 5] + [10] * 6 + [3]]
    assert gold.encode(["Q?"] * 3, responses) == ids
    cut = [row[-8:] for row in ids]  # left truncation keeps the last 8 ids
    assert cut == [[6, 8, 7, 3, 2, 5, 9, 3], [3, 2, 5, 9, 10, 0, 10, 3], [5, 10, 10, 10, 10, 10, 10, 3]]
    # Read before the first pad id: index 4 in the second row (its "?" is id 0), the last token elsewhere.
    expected = [manual_score(model, cut[0], 7), manual_score(model, cut[1][:5], 4), manual_score(model, cut[2], 7)]
    assert gold.score(["Q?"] * 3, responses, progress=False) == pytest.approx(expected, abs=1e-5)
    padded = torch.tensor([[5, 6, 0, 0], [0, 5, 6, 7], [5, 6, 7, 8]])
    assert pad_read_positions(padded, torch.tensor([2, 4, 4]), PAD).tolist() == [1, 3, 3]


def test_default_training_is_not_changed_by_dropout(tiny_llama_dir, tmp_path):
    """TRL 0.7.4 trained in eval mode: with the default, dropout probabilities do not change the weights."""
    def one_step(name: str, *flags: str) -> dict[str, torch.Tensor]:
        run = make_run(tiny_llama_dir, tmp_path / name, *flags)
        run.trainer.step(*next_batch(run))
        return trainable(run)

    low = one_step("low", "--lora_dropout=0.0", "--value_head_dropout=0.0")
    high = one_step("high", "--lora_dropout=0.5", "--value_head_dropout=0.5")
    assert low.keys() == high.keys() and all(torch.equal(low[k], high[k]) for k in low)
    dropped = one_step("drop", "--lora_dropout=0.5", "--value_head_dropout=0.5", "--train_dropout=true")
    assert any(not torch.equal(low[k], dropped[k]) for k in low)


def count_run(flags: list[str], launcher: list[str] | None = None, env: dict | None = None) -> tuple[int, list[int]]:
    cmd = (launcher or [sys.executable]) + ["tests/count_optimizer_steps.py"] + flags
    proc = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = re.findall(r"optimizer steps per PPO step: (\d+) \(mini-batch 2, accumulation (\d+)", proc.stderr)
    assert len(printed) == 1, proc.stderr[-2000:]
    return int(printed[0][0]), [int(n) for n in re.findall(r"counted optimizer.step calls: (\d+)", proc.stdout)]


@pytest.mark.parametrize("launch, extra, expected", [
    ("python", [], 4),  # batch 4 / (mini-batch 2 x accumulation 2) x 4 epochs
    ("configs/zero2-cpu.yaml", [], 8),  # the launch config's gradient_accumulation_steps 1, as the paper's
    ("configs/zero2-cpu.yaml", ["--accumulation_from_launch=false"], 4),
    ("configs/zero2-bf16.yaml", ["--mixed_precision=no"], 8),  # the paper's config (run on CPU here)
])
def test_printed_optimizer_steps_match_the_real_ones(tiny_llama_dir, tmp_path, launch, extra, expected):
    flags = tiny_flags(tiny_llama_dir, tmp_path / "run", 1, 0, "--relevance_scaling=false",
                       "--reward_branching=false", "--log_with=none", *extra)
    flags[flags.index("--gradient_accumulation_steps=1")] = "--gradient_accumulation_steps=2"
    launcher = None if launch == "python" else ["accelerate", "launch", "--config_file", launch,
                                                "--num_processes", "1", "--num_machines", "1"]
    env = {**ENV, "CUDA_VISIBLE_DEVICES": ""} if launch.endswith("bf16.yaml") else None
    printed, counted = count_run(flags, launcher, env)
    assert printed == expected and counted == [expected]
