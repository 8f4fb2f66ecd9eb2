"""The paper's reward defaults: Contriever as the encoder, rar_max_dot decided by the encoder actually used, and no
silent substitution offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT

from reward_model import ReversedEngineeredRewardForInference, RewardConfig, check_reward_flags
from rre.errors import DataError
from rre.relevance import PAPER_ENCODER, normalizes


def _tiny_bert(folder: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from rre.offline_models import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    tok.model_max_length = 32
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def raw_dot_encoder(tmp_path_factory) -> str:
    """A tiny random plain BERT: Contriever semantics (mean pooling, raw dot product)."""
    return str(_tiny_bert(tmp_path_factory.mktemp("raw-dot")))


@pytest.fixture(scope="module")
def cosine_encoder(tmp_path_factory, raw_dot_encoder) -> str:
    """The same tiny BERT as a sentence-transformers model ending in a Normalize module (a cosine encoder)."""
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(raw_dot_encoder, max_seq_length=32)
    st = SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension()), models.Normalize()])
    out = tmp_path_factory.mktemp("cosine")
    st.save(str(out))
    return str(out)


ARGS = (["what is the capital of France?"], ["Paris is the capital."], ["Paris"], ["CONSTRAINED"])


def test_defaults_are_the_papers():
    config = RewardConfig()
    assert config.relevance_model == PAPER_ENCODER == "facebook/contriever" and config.rar_max_dot == "auto"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_encoder_runs_float32_by_default_on_every_device(raw_dot_encoder, device, monkeypatch, capsys):
    """The paper's encoder ran in float32; bf16 autocast only when --reward_dtype asks (auto: where native)."""
    import rre.precision
    from rre.relevance import RelevanceEncoder, resolve_autocast_dtype

    monkeypatch.setattr(rre.precision, "native_bf16", lambda device="cpu": True)  # a device that runs bf16 natively
    monkeypatch.setattr(rre.precision, "_announced", set())  # the choice is printed once per process
    assert RewardConfig().reward_dtype == "float32"
    assert resolve_autocast_dtype(RewardConfig().reward_dtype, device) is None
    assert resolve_autocast_dtype("auto", device) == torch.bfloat16  # the speed setting still follows the rule
    encoder = ReversedEngineeredRewardForInference(RewardConfig(relevance_model=raw_dot_encoder,
                                                                reward_device="cpu")).encoder
    assert encoder.autocast_dtype is None and RelevanceEncoder(raw_dot_encoder, device="cpu").autocast_dtype is None
    assert "relevance encoder precision: float32 on cpu (requested)" in capsys.readouterr().out
    assert encoder.encode(["one text"]).dtype == torch.float32


@pytest.mark.parametrize("which,normalized,value", [("raw_dot_encoder", False, 3.5), ("cosine_encoder", True, 1.0)])
def test_auto_rar_max_dot_follows_the_encoder(request, which, normalized, value, capsys):
    folder = request.getfixturevalue(which)
    assert normalizes(folder) is normalized
    rer = ReversedEngineeredRewardForInference(RewardConfig(relevance_model=folder, reward_device="cpu",
                                                            reward_dtype="float32"))
    assert rer.encoder.normalized is normalized and rer.config.rar_max_dot == value
    assert f"rar_max_dot: auto -> {value}" in capsys.readouterr().err
    emb = rer.encoder.encode(["one text", "another text"])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-4) is normalized
    # The resolved value is the one the formula used: RAR / rar_max_dot * 512/100.
    _, (f,) = rer(*ARGS, return_features=True)
    assert f["reward"] == pytest.approx(f["RAR"] / value * 5.12 * f["RP"], rel=1e-5)


def test_an_explicit_rar_max_dot_wins(cosine_encoder):
    config = RewardConfig(relevance_model=cosine_encoder, rar_max_dot="3.5", reward_device="cpu")  # as argparse gives it
    assert config.rar_max_dot == 3.5
    assert ReversedEngineeredRewardForInference(config).config.rar_max_dot == 3.5
    with pytest.raises(DataError, match="--rar_max_dot must be auto or a number"):
        check_reward_flags(RewardConfig(relevance_model="minilm", rar_max_dot="big"))


def test_minilm_alias_is_the_offline_encoder():
    check_reward_flags(RewardConfig(relevance_model="minilm"))  # no hub lookup
    assert normalizes("minilm") is True


def test_contriever_offline_and_not_cached_stops_with_the_offline_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DataError) as err:
        check_reward_flags(RewardConfig())
    assert "--relevance_model facebook/contriever" in str(err.value)
    assert "--relevance_model minilm" in str(err.value) and "\n" not in str(err.value)


# The paper's README training command, flag for flag, with no encoder flag (its code hard-codes Contriever).
PAPER_TRAIN = ["--exp_name=alpaca_test", "--overall_steps=10000", "--seed=42", "--save_freq=500",
               "--output_dir={out}/alpaca_test", "--dataset_path=data/train.json", "--dev_prompt_path=data/dev.json",
               "--logging_dir={out}/alpaca_test/logs", "--output_max_length=512", "--batch_size=16",
               "--mini_batch_size=2", "--gradient_accumulation_steps=4", "--learning_rate=1e-5", "--lora_r=8",
               "--lora_alpha=16", "--lora_dropout=0.05", "--reward_model_batch_size", "8", "--length_incentive=true",
               "--repetition_penalty=true", "--relevance_scaling=true", "--reward_branching=true"]


@pytest.mark.parametrize("script", ["run_ppo.py", "run_grpo.py"])
def test_papers_training_command_offline_stops_in_one_line(tmp_path, script, smollm2_dir):
    grpo_lacks = ("--gradient_accumulation_steps", "--dev_prompt_path")  # PPO-only flags of the paper's command
    flags = [f.format(out=tmp_path) for f in PAPER_TRAIN if script == "run_ppo.py" or not f.startswith(grpo_lacks)]
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "PATH": "/usr/bin:/bin",
           "HOME": str(Path.home())}
    proc = subprocess.run([sys.executable, script, f"--model_name={smollm2_dir}", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("error: --relevance_model facebook/contriever") and "--relevance_model minilm" in lines[-1]
    assert [ln for ln in lines if ln.startswith("error")] == [lines[-1]]
    assert not (tmp_path / "alpaca_test").exists()  # stopped before any work
