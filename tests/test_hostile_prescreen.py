"""Hostile inputs to prescreen.py: the gold CSV, its features module. The runner and shared fixtures: hostile.py."""

from __future__ import annotations

import pytest
from hostile import A_FILE, PRESCREEN_FLAGS, Case, assert_fails_in_one_line, case_ids, make


CASES = [
    Case("prescreen-no-gold", "prescreen", ("--systems", "a", "b"), "no gold: pass --gold_model"),
    Case("prescreen-gold-csv-missing", "prescreen", ("--systems", "a", "b", "--gold_csv", "lb.csv"),
         "--gold_csv lb.csv: no such file"),
    Case("prescreen-output-dir-under-file", "prescreen", ("--systems", "a", "b", "--gold_csv", "lb.csv",
                                                          "--output_dir", "afile/out"), "--output_dir afile/out",
         make({**A_FILE, "lb.csv": "a,1\nb,2\n"})),
    Case("prescreen-features-import-fails", "prescreen", ("--systems", "a", "b", "--gold_csv", "lb.csv",
                                                          "--features_module", "feat.py"),
         "--features_module feat.py: importing it failed: NameError",
         make({"lb.csv": "a,1\nb,2\n", "feat.py": "EXTRA_FEATURES = {'x': undefined_name}\n"})),
    Case("prescreen-unknown-flag", "prescreen", ("--systems", "a", "b", "--gold_cvs", "lb.csv"), "", usage=True),
    Case("prescreen-gold-csv-nan", "prescreen", (*PRESCREEN_FLAGS,), "row 2: score of 'b': 'nan' is not a finite number",
         make({"lb.csv": "a,1\nb,nan\n"})),
    Case("prescreen-gold-csv-inf", "prescreen", (*PRESCREEN_FLAGS,), "row 3: score of 'b': '-inf' is not a finite",
         make({"lb.csv": "system,score\na,1\nb,-inf\n"})),
    Case("prescreen-gold-csv-text-score", "prescreen", (*PRESCREEN_FLAGS,), "row 3: score of 'b': 'high' is not a number",
         make({"lb.csv": "system,score\na,1\nb,high\n"})),
    Case("prescreen-rar-max-dot-nan", "prescreen", (*PRESCREEN_FLAGS, "--rar_max_dot=nan"),
         "--rar_max_dot must be a finite number", make({"lb.csv": "a,1\nb,2\n"})),
    Case("prescreen-feature-named-QR", "prescreen", (*PRESCREEN_FLAGS, "--features_module", "feat.py"),
         "feature name 'QR' is taken by the built-in 'QR'",
         make({"lb.csv": "a,1\nb,2\n", "feat.py": "EXTRA_FEATURES = {'QR': len}\n"})),
    Case("prescreen-gold-csv-duplicate", "prescreen", (*PRESCREEN_FLAGS,),
         "row 3: system 'a' is listed twice (first on row 1)", make({"lb.csv": "a,1\nb,2\na,3\n"})),
    Case("prescreen-gold-csv-duplicate-spaced", "prescreen", (*PRESCREEN_FLAGS,),
         "row 2: system 'a' is listed twice", make({"lb.csv": "a,1\n a ,2\nb,3\n"})),
    Case("prescreen-gold-csv-not-utf8", "prescreen", (*PRESCREEN_FLAGS,), "lb.csv: line 2: not valid UTF-8",
         make({"lb.csv": b"a,1\nb\xe9,2\n"})),
    Case("prescreen-gold-csv-one-column", "prescreen", (*PRESCREEN_FLAGS,), "row 2: expected name,score",
         make({"lb.csv": "a,1\nb\n"})),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)
