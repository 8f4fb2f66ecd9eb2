"""Hostile inputs to run_ppo.py: its model, data and output folders, its numbers, the checkpoint it resumes. The
runner and shared fixtures: hostile.py."""

from __future__ import annotations

import pytest
from hostile import A_FILE, MODEL, PPO_FLAGS, Case, assert_fails_in_one_line, case_ids, make


CASES = [
    Case("ppo-model-missing", "run_ppo", (*PPO_FLAGS, "--model_name", "./no_model"), "--model_name ./no_model: no such folder"),
    Case("ppo-model-no-config", "run_ppo", (*PPO_FLAGS, "--model_name", "empty"), "--model_name empty: folder has no config.json",
         make({"empty": None})),
    Case("ppo-dataset-missing", "run_ppo", (*PPO_FLAGS, "--dataset_path", "nope.json"), "--dataset_path nope.json: no such file"),
    Case("ppo-dataset-is-folder", "run_ppo", (*PPO_FLAGS, "--dataset_path", "d.json"), "--dataset_path d.json: is a folder",
         make({"d.json": None})),
    Case("ppo-dev-missing", "run_ppo", (*PPO_FLAGS, "--dev_prompt_path", "dev.json"), "--dev_prompt_path dev.json: no such file"),
    Case("ppo-save-freq-negative", "run_ppo", (*PPO_FLAGS, "--save_freq=-1"), "--save_freq must be >= 0, got -1"),
    Case("ppo-steps-negative", "run_ppo", (*PPO_FLAGS, "--overall_steps=-5"), "--overall_steps must be >= 0"),
    Case("ppo-lora-r-0", "run_ppo", (*PPO_FLAGS, "--lora_r=0"), "--lora_r must be > 0"),
    Case("ppo-batch-not-multiple", "run_ppo", (*PPO_FLAGS, "--batch_size=5", "--mini_batch_size=2"), "batch_size (5)"),
    Case("ppo-bogus-log-with", "run_ppo", (*PPO_FLAGS, "--log_with=mlflow"), "--log_with must be one of tensorboard, wandb, none"),
    Case("ppo-bogus-precision", "run_ppo", (*PPO_FLAGS, "--mixed_precision=fp8"), "--mixed_precision must be one of"),
    Case("ppo-output-dir-under-file", "run_ppo", (*PPO_FLAGS, "--output_dir", "afile/run"), "afile is a file", make(A_FILE)),
    Case("ppo-output-dir-on-proc", "run_ppo", (*PPO_FLAGS, "--output_dir", "/proc/rre-test/run"),
         "--output_dir /proc/rre-test/run: cannot be created (/proc is not writable"),
    Case("ppo-output-dir-on-sys", "run_ppo", (*PPO_FLAGS, "--output_dir", "/sys/rre-test"),
         "--output_dir /sys/rre-test: cannot be created (/sys is not writable"),
    Case("ppo-resume-not-a-checkpoint", "run_ppo", (*PPO_FLAGS, "--resume_from_checkpoint", "old"),
         "--resume_from_checkpoint old: not a complete checkpoint", make({"old/adapter_config.json": "{}"})),
    Case("ppo-features-no-extra", "run_ppo", (*PPO_FLAGS, "--features_module", "feat.py"), "defines no EXTRA_FEATURES",
         make({"feat.py": "FEATURES = {}\n"})),
    Case("ppo-relevance-model-missing", "run_ppo", (*PPO_FLAGS, "--relevance_model", "./enc"), "--relevance_model ./enc: no such"),
    Case("ppo-unknown-flag", "run_ppo", (*PPO_FLAGS, "--overal_steps=3"), "", usage=True),
    Case("ppo-resume-state-not-json", "run_ppo", (*PPO_FLAGS, "--resume_from_checkpoint", "old"),
         "--resume_from_checkpoint old/training_state.json: not valid JSON",
         make({"old/training_state.json": "{", "old/state": None})),
    Case("ppo-resume-state-not-utf8", "run_ppo", (*PPO_FLAGS, "--resume_from_checkpoint", "old"),
         "old/training_state.json: line 1: not valid UTF-8", make({"old/training_state.json": b"\xfe{}", "old/state": None})),
    Case("ppo-learning-rate-nan", "run_ppo", (*PPO_FLAGS, "--learning_rate=nan"), "--learning_rate must be a finite number"),
    Case("ppo-kl-coef-minus-inf", "run_ppo", (*PPO_FLAGS, "--init_kl_coef=-inf"), "--init_kl_coef must be a finite number"),
    Case("ppo-features-differ-in-case", "run_ppo", (*PPO_FLAGS, "--features_module", "feat.py"),
         "feature names 'words' and 'Words' differ only in case",
         make({"feat.py": "EXTRA_FEATURES = {'words': len, 'Words': len}\n"})),
    Case("ppo-model-only-config", "run_ppo", (*PPO_FLAGS, "--model_name", "model"), "--model_name model: cannot load it",
         make(MODEL), after_progress=True),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)
