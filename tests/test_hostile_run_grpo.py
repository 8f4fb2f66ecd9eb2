"""Hostile inputs to run_grpo.py: its model, data and output folders, its numbers. The runner and shared fixtures:
hostile.py."""

from __future__ import annotations

import pytest
from hostile import A_FILE, GRPO_FLAGS, MODEL, Case, assert_fails_in_one_line, case_ids, make


CASES = [
    Case("grpo-model-missing", "run_grpo", (*GRPO_FLAGS, "--model_name", "./no_model"), "--model_name ./no_model: no such folder"),
    Case("grpo-dataset-missing", "run_grpo", (*GRPO_FLAGS, "--dataset_path", "nope.json"), "--dataset_path nope.json: no such"),
    Case("grpo-one-generation", "run_grpo", (*GRPO_FLAGS, "--num_generations=1"), "--num_generations must be >= 2"),
    Case("grpo-save-freq-negative", "run_grpo", (*GRPO_FLAGS, "--save_freq=-1"), "--save_freq must be >= 0"),
    Case("grpo-output-dir-under-file", "run_grpo", (*GRPO_FLAGS, "--output_dir", "afile/g"), "afile is a file", make(A_FILE)),
    Case("grpo-resume-not-a-checkpoint", "run_grpo", (*GRPO_FLAGS, "--resume_from_checkpoint", "old"),
         "--resume_from_checkpoint old: not a", make({"old": None})),
    Case("grpo-unknown-flag", "run_grpo", (*GRPO_FLAGS, "--num_generation=4"), "", usage=True),
    Case("grpo-beta-nan", "run_grpo", (*GRPO_FLAGS, "--beta=nan"), "--beta must be a finite number, got nan"),
    Case("grpo-lora-dropout-inf", "run_grpo", (*GRPO_FLAGS, "--lora_dropout=inf"), "--lora_dropout must be a finite number"),
    Case("grpo-feature-empty-name", "run_grpo", (*GRPO_FLAGS, "--features_module", "feat.py"),
         "EXTRA_FEATURES has an empty name", make({"feat.py": "EXTRA_FEATURES = {' ': len}\n"})),
    Case("grpo-model-only-config", "run_grpo", (*GRPO_FLAGS, "--model_name", "model"), "--model_name model: cannot load it",
         make(MODEL)),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)
