"""Hostile inputs to train_reward_model.py: its output folder, the base model, the stand-in's own record.
The runner and shared fixtures: hostile.py."""

from __future__ import annotations

import pytest
from hostile import A_FILE, MODEL, MODEL_FLAG, TRAIN_DATA, Case, assert_fails_in_one_line, case_ids, make


CASES = [
    Case("trm-output-under-file", "train_reward_model", (*TRAIN_DATA, "--output_dir", "afile/rm"),
         "--output_dir afile/rm", make(A_FILE)),
    # A pseudo-filesystem: os.access says yes for root there; the write probe fails.
    Case("trm-output-dir-on-proc", "train_reward_model", (*TRAIN_DATA, "--output_dir", "/proc/rre-test/rm"),
         "--output_dir /proc/rre-test/rm: cannot be created (/proc is not writable"),
    Case("trm-model-missing", "train_reward_model", (*TRAIN_DATA, "--model_name", "./base"),
         "--model_name ./base: no such folder"),
    Case("trm-pairs-missing", "train_reward_model", ("--pairs_path", "prefs.jsonl"),
         "--pairs_path prefs.jsonl: no such file"),
    Case("trm-batch-size-0", "train_reward_model", (*TRAIN_DATA, "--batch_size", "0"), "--batch_size=0"),
    Case("trm-unknown-flag", "train_reward_model", (*TRAIN_DATA, "--epochz", "2"), "", usage=True),
    Case("trm-info-not-json", "train_reward_model", (*TRAIN_DATA, *MODEL_FLAG, "--output_dir", "rm"),
         "rm/standin_info.json: not valid JSON", make({**MODEL, "rm/standin_info.json": '{"settings": {'})),
    Case("trm-info-no-settings", "train_reward_model", (*TRAIN_DATA, *MODEL_FLAG, "--output_dir", "rm"),
         "rm/standin_info.json: field 'settings': missing", make({**MODEL, "rm/standin_info.json": "{}"})),
    Case("trm-learning-rate-inf", "train_reward_model", (*TRAIN_DATA, "--learning_rate=inf"),
         "--learning_rate must be a finite number, got inf"),
    Case("trm-heldout-nan", "train_reward_model", (*TRAIN_DATA, "--heldout_fraction=nan"),
         "--heldout_fraction must be a finite number"),
    Case("trm-model-only-config", "train_reward_model", (*TRAIN_DATA, *MODEL_FLAG, "--output_dir", "rm"),
         "--model_name model: cannot load it", make(MODEL)),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)
