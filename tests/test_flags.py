"""One reading of explicit flags (rre.validation.given_flags / merge_repeated_flags): every spelling the parsers
accept (`--x v`, `--x=v`, dashes for underscores, `--no_x`) counts as given, in every script that asks."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT

from rre.validation import flag_given, given_flags, merge_repeated_flags


# Every spelling HfArgumentParser accepts for the field rar_max_dot / the bool relevance_scaling.
SPELLINGS = [
    (["--rar_max_dot=1.0"], "rar_max_dot"), (["--rar_max_dot", "1.0"], "rar_max_dot"),
    (["--rar-max-dot=1.0"], "rar_max_dot"), (["--rar-max-dot", "1.0"], "rar_max_dot"),
    (["--relevance_scaling"], "relevance_scaling"), (["--relevance_scaling=false"], "relevance_scaling"),
    (["--no_relevance_scaling"], "relevance_scaling"), (["--no-relevance-scaling"], "relevance_scaling"),
    (["--relevance-scaling", "false"], "relevance_scaling"),
]


@pytest.mark.parametrize("argv,name", SPELLINGS)
def test_every_spelling_is_given(argv, name):
    assert given_flags(["--seed=1", *argv], ["rar_max_dot", "relevance_scaling", "seed"]) == {name, "seed"}


def test_the_parsers_accept_exactly_these_spellings():
    """The helper's spellings are the parser's: each parses, and sets the field."""
    from reward_model import RewardConfig
    from rre.validation import parse_flags

    for argv, name in SPELLINGS:
        (config,) = parse_flags([RewardConfig], argv)
        assert getattr(config, name) in (1.0, False, True)
        if name == "relevance_scaling" and argv[0].startswith("--no"):
            assert config.relevance_scaling is False


def test_values_and_prefixes_are_not_flags():
    assert given_flags(["--max_sequence_length_x=3", "max_sequence_length", "--", "-x"], ["max_sequence_length"]) == set()
    assert not flag_given(["--rar_max_dotty=1"], "rar_max_dot")


@pytest.mark.parametrize("argv", [["--gold-model", "g1", "--gold_model", "g2"], ["--gold_model=g1", "--gold-model", "g2"],
                                  ["--gold-model=g1", "--gold-model=g2"]])
def test_repeated_flags_merge_in_every_spelling(argv):
    assert merge_repeated_flags(["--seed", "1", *argv], ["--gold_model"]) == ["--seed", "1", "--gold_model", "g1", "g2"]


def test_a_missing_first_gold_in_dashed_spelling_is_reported(tmp_path, capsys, monkeypatch):
    import eval_monotonicity

    monkeypatch.chdir(tmp_path)
    (tmp_path / "g2").mkdir()
    (tmp_path / "g2" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        eval_monotonicity.main(["--output_dir", ".", "--eval_path", str(ROOT / "data" / "eval.json"),
                                "--gold-model", "./g1", "--gold_model", "g2",
                                "--relevance_model=minilm"])
    assert exc.value.code == 2 and "--gold_model ./g1: no such folder" in capsys.readouterr().err


def test_prescreen_merges_dashed_features_modules():
    import prescreen

    args, _ = prescreen.parse_args(["--systems", "a", "b", "--features-module", "m1.py", "--features_module", "m2.py"])
    assert args.features_module == ["m1.py", "m2.py"]


@pytest.mark.parametrize("flag", ["--max-sequence-length", "--max_sequence_length"])
@pytest.mark.parametrize("script", ["run_ppo", "run_grpo"])
def test_max_sequence_length_given_in_any_spelling_is_kept(script, flag):
    parse_args = __import__(script).parse_args
    *_, reward = parse_args(["--output_max_length=64", flag, "128", "--relevance_model=minilm"])
    assert reward.max_sequence_length == 128
    *_, reward = parse_args(["--output_max_length=64", "--relevance_model=minilm"])
    assert reward.max_sequence_length == 64


@pytest.mark.parametrize("flag", ["--loss_type=dapo", "--loss-type=dr_grpo", "--loss-type dapo", "--loss_type dapo"])
def test_grpo_loss_type_with_rloo_is_refused_in_every_spelling(flag, capsys):
    """The dashed spelling reaches the rule too: it must not read only `--loss_type`."""
    from run_grpo import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(["--trainer=rloo", "--relevance_model=minilm", *flag.split()])
    assert exc.value.code == 2 and "--loss_type applies to --trainer=grpo only" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--no_relevance_scaling"], ["--no-relevance-scaling"], ["--rar-max-dot=2.0"],
                                   ["--rar_max_dot", "2.0"]])
def test_score_outputs_keeps_explicit_flags_over_the_trained_proxy(tmp_path, flags, capsys):
    import score_outputs

    trained = {"reward": {"relevance_scaling": True, "rar_max_dot": 1.0, "relevance_model": "minilm",
                          "length_incentive": True, "repetition_penalty": True, "reward_branching": False,
                          "do_strip": True, "max_sequence_length": 64, "relevance_model_type": "auto",
                          "reward_dtype": "float32"},
               "prompt_format": "alpaca", "stop_strings": ["### Instruction:"], "features_module": None}
    (tmp_path / "training_config.json").write_text(json.dumps({"proxy": trained}))
    save = tmp_path / "f.json"
    # Relevance off in every case (no encoder loads); the flag under test must survive the trained value.
    off = [] if flags[0].startswith("--no") else ["--relevance_scaling=false"]
    score_outputs.main(["--annotations_path", str(ROOT / "data" / "eval.json"), "--run_dir", str(tmp_path),
                        "--save_path", str(save), *off, *flags])
    err = capsys.readouterr().err
    name = "relevance_scaling" if flags[0].startswith("--no") else "rar_max_dot"
    assert f"proxy override: {name}:" in err


@pytest.mark.parametrize("flag", ["--cache-dir=x", "--cache_dir", "--baseline-model-file=f"])
def test_evaluation_notes_no_effect_flags_in_any_spelling(flag):
    from evaluation import NO_EFFECT_FLAGS

    assert given_flags([*flag.split()], NO_EFFECT_FLAGS)
