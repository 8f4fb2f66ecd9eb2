"""Hostile inputs to python -m rre.offline_models: its cache folder. The runner and shared fixtures: hostile.py."""

from __future__ import annotations

import pytest
from hostile import A_FILE, Case, assert_fails_in_one_line, case_ids, make


CASES = [
    Case("offline-cache-under-file", "rre.offline_models", ("--cache_dir", "afile/cache"), "--cache_dir afile/cache",
         make(A_FILE)),
    Case("offline-unknown-flag", "rre.offline_models", ("--cachedir", "x"), "", usage=True),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)
