"""Hostile inputs to python -m rre.checkpoints: a prefix that names no complete checkpoint says why, in one line.
The runner and shared fixtures: hostile.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import A_FILE, Case, adapter_at, assert_fails_in_one_line, case_ids, make


def symlink_loop(root: Path) -> None:
    (root / "loop").symlink_to("loop2")
    (root / "loop2").symlink_to("loop")


CASES = [
    Case("checkpoints-prefix-missing", "rre.checkpoints", ("runs/policy",),
         "no complete checkpoints runs/policy_step_N (folders with a LoRA adapter): runs: no such folder"),
    Case("checkpoints-under-a-file", "rre.checkpoints", ("afile/run/policy",), "afile/run: a part of it is a file",
         make(A_FILE)),
    Case("checkpoints-parent-is-a-file", "rre.checkpoints", ("afile/policy",), "afile is a file, not a folder",
         make(A_FILE)),
    Case("checkpoints-symlink-loop", "rre.checkpoints", ("loop/policy",), "loop: a symlink loop", symlink_loop),
    Case("checkpoints-none-named-so", "rre.checkpoints", ("run/policy",), "run holds no folder named policy_step_N",
         make({"run/other_step_1": None})),
    Case("checkpoints-unfinished", "rre.checkpoints", ("run/policy",), "1 folder(s) named so (policy_step_3) lack",
         make({"run/policy_step_3/adapter_config.json": "{}"})),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)


def test_checkpoints_cli_still_lists_complete_checkpoints(tmp_path, capsys):
    from rre import checkpoints

    make({**adapter_at("run/p_step_2"), **adapter_at("run/p_step_10"),
          "run/p_step_5/adapter_config.json": "{}"})(tmp_path)
    checkpoints.main([str(tmp_path / "run" / "p")])
    assert capsys.readouterr().out.split() == [str(tmp_path / "run" / f"p_step_{n}") for n in (2, 10)]
