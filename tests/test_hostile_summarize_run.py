"""Hostile inputs to summarize_run.py: the run's artefacts, missing, corrupt or holding the wrong types. The
runner and shared fixtures: hostile.py."""

from __future__ import annotations

import json

import pytest
from hostile import Case, Fixture, assert_fails_in_one_line, case_ids, make


def summary_run(mean_proxy=0.4, rouge=12.5, checkpoints=None) -> Fixture:
    """The three artefacts summarize_run.py reads, with one field planted."""
    rows = [{"step": 1, "mean_proxy": 0.3, "mean_gold": 0.1}, {"step": 2, "mean_proxy": mean_proxy, "mean_gold": 0.2}]
    mono = {"checkpoints": rows if checkpoints is None else checkpoints, "spearman": {"statistic": 1, "pvalue": 0},
            "kendall": {"statistic": 1, "pvalue": 0}}
    return {"run/monotonicity.json": json.dumps(mono),
            "run/policy_final/superni_eval.json": json.dumps({"rougeL": rouge, "n_instances": 1, "n_tasks": 1,
                                                                "superni_dir": "sn"}),
            "run/gold_standin/standin_info.json": json.dumps({"heldout": {"accuracy": 0.9}})}


CASES = [
    Case("summary-run-dir-missing", "summarize_run", ("--run_dir", "runs/q"), "--run_dir runs/q: no such folder"),
    Case("summary-artefact-missing", "summarize_run", ("--run_dir", "run"), "run/monotonicity.json is missing",
         make({"run": None})),
    Case("summary-artefact-corrupt", "summarize_run", ("--run_dir", "run"), "run/monotonicity.json: not valid JSON",
         make({"run/monotonicity.json": '{"steps": [1, 2'})),
    Case("summary-number-is-a-string", "summarize_run", ("--run_dir", "run"),
         "checkpoints[1].mean_proxy: expected a number or null, got str", make(summary_run(mean_proxy="0.41"))),
    Case("summary-rouge-is-a-list", "summarize_run", ("--run_dir", "run"), "rougeL: expected a number or null, got list",
         make(summary_run(rouge=[1, 2]))),
    Case("summary-checkpoints-not-a-list", "summarize_run", ("--run_dir", "run"),
         "run/monotonicity.json: field 'checkpoints': expected array, got object", make(summary_run(checkpoints={}))),
    Case("summary-standin-info-not-utf8", "summarize_run", ("--run_dir", "run"),
         "standin_info.json: line 1: not valid UTF-8",
         make({**summary_run(), "run/gold_standin/standin_info.json": b"\xff\xfe"})),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)
