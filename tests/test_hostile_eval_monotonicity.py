"""Hostile inputs to eval_monotonicity.py: its run folder, the gold model, the checkpoints it correlates. The runner
and shared fixtures: hostile.py."""

from __future__ import annotations

import pytest
from hostile import (
    ALPACA_EVAL_SET,
    A_FILE,
    EVALUATED_STEP_1,
    EVALUATED_STEP_2,
    MODEL,
    MONOTONICITY_FLAGS,
    Case,
    assert_fails_in_one_line,
    case_ids,
    make,
    with_root,
)


CASES = [
    Case("mono-output-dir-missing", "eval_monotonicity", (*ALPACA_EVAL_SET, "--output_dir", "runs/x", "--gold_model", "model"),
         "--output_dir runs/x: no such folder", make(MODEL)),
    Case("mono-output-dir-is-file", "eval_monotonicity", (*ALPACA_EVAL_SET, "--output_dir", "afile", "--gold_model", "model"),
         "--output_dir afile: is a file, expected a folder", make({**MODEL, **A_FILE})),
    Case("mono-gold-missing", "eval_monotonicity", (*ALPACA_EVAL_SET, "--output_dir", ".", "--gold_model", "./gold"),
         "--gold_model ./gold: no such folder"),
    Case("mono-gold-no-config", "eval_monotonicity", (*ALPACA_EVAL_SET, "--output_dir", ".", "--gold_model", "gold"),
         "--gold_model gold: folder has no config.json", make({"gold": None})),
    Case("mono-gold-tokenizer-missing", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--gold_tokenizer", "./tok"),
         "--gold_tokenizer ./tok: no such folder", make(MODEL)),
    Case("mono-bogus-gold-type", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--gold_type", "oracle"),
         "--gold_type must be one of starling, classifier; got 'oracle'", make(MODEL)),
    Case("mono-one-checkpoint", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--model_prefix", "p", "--all_steps"),
         "a correlation needs at least 2",
         make({**MODEL, **EVALUATED_STEP_1})),
    Case("mono-missing-step", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--model_prefix", "p", "--steps", "1", "7"),
         "--steps: checkpoint folder(s) not found", make({**MODEL, **EVALUATED_STEP_1})),
    Case("mono-features-not-a-dict", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--features_module", "feat.py"),
         "--features_module feat.py: EXTRA_FEATURES must be", make({**MODEL, "feat.py": "EXTRA_FEATURES = 3\n"})),
    Case("mono-unknown-flag", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--gold_modle", "x"), "", make(MODEL), usage=True),
    Case("mono-rar-max-dot-nan", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--rar_max_dot=nan"), "--rar_max_dot must be a finite",
         make(MODEL)),
    Case("mono-policy-tokenizer-unloadable", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--model_prefix", "p", "--steps", "1", "2"),
         "the policy tokenizer model: cannot load it", make({**MODEL, **EVALUATED_STEP_1, **EVALUATED_STEP_2,
                                                           "p_step_1/adapter_config.json": '{"base_model_name_or_path": "model"}'})),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)


def test_base_outputs_without_include_base_says_it_has_no_effect(tmp_path, monkeypatch, capsys):
    import eval_monotonicity

    make({**MODEL, **EVALUATED_STEP_1, "base": None})(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        eval_monotonicity.main([*with_root(MONOTONICITY_FLAGS), "--model_prefix", "p",
                                "--base_outputs", "base", "--all_steps"])
    err = capsys.readouterr().err.splitlines()
    assert "note: --base_outputs has no effect without --include_base" in err
    assert err[-1].startswith("error: ") and "a correlation needs at least 2" in err[-1]
