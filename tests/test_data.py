"""Data loading: the paper's formats are accepted, bad input gets one line naming file, record and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from rre.data import Example, join_outputs, load_examples
from rre.errors import DataError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def test_shipped_data_is_valid_and_covers_both_qtypes():
    total = 0
    for name in ("train", "dev", "eval"):
        examples = load_examples(ROOT / "data" / f"{name}.json", require_qtype=True)
        assert {e.qtype for e in examples} == {"OPENENDED", "CONSTRAINED"}
        assert all(e.instruction and e.reference for e in examples)
        total += len(examples)
    assert total >= 120


def test_formats_json_jsonl_and_instruction_fields(tmp_path):
    seed = {"input": "Translate to French.\n\n### Input:\nGood   morning", "output": "Bonjour", "qtype": "CONSTRAINED"}
    split = {"instruction": "Write a haiku.", "output": "Leaves fall...", "qtype": "OPENENDED"}
    a = load_examples(write(tmp_path, "a.json", json.dumps([seed, split])))
    b = load_examples(write(tmp_path, "b.jsonl", json.dumps(seed) + "\n\n" + json.dumps(split) + "\n"))
    assert a == b
    assert a[0] == Example("Translate to French.", "Good   morning", "Bonjour", "CONSTRAINED")
    assert a[0].query == "Translate to French. Good morning"
    assert a[0].seed_input == seed["input"]
    assert a[1].query == "Write a haiku." and a[1].input == ""
    # The gold models' user turn keeps the input's own whitespace after a blank line.
    assert a[0].user_turn == "Translate to French.\n\nGood   morning" and a[1].user_turn == "Write a haiku."


def test_local_dataset_folder_through_datasets(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"instruction": "Name a color.", "output": "Blue", "qtype": "CONSTRAINED"}) + "\n")
    (ex,) = load_examples(folder, require_qtype=True)
    assert ex.instruction == "Name a color." and ex.qtype == "CONSTRAINED"


BAD_INPUTS = {
    "malformed JSON": ('[{"input": "x", "output": "y",}]', ["bad.json", "line 1", "malformed JSON"]),
    "missing field": ('[{"input": "Say hi.", "qtype": "OPENENDED"}]', ["record 0", "'output'", "missing"]),
    "unknown qtype": ('[{"input": "a", "output": "b", "qtype": "OPEN"}]', ["record 0", "'qtype'", "'OPEN'"]),
    "empty instruction": ('[{"input": "a", "output": "b", "qtype": "OPENENDED"}, {"instruction": "  ", "output": "b", "qtype": "OPENENDED"}]',
                          ["record 1", "'instruction'", "empty instruction"]),
    "non-UTF-8 bytes": (b'[{"input": "caf\xe9", "output": "b", "qtype": "OPENENDED"}]', ["line 1", "not valid UTF-8"]),
    "empty file": ("", ["empty file"]),
    "missing qtype": ('[{"input": "a", "output": "b"}]', ["record 0", "'qtype'", "missing"]),
    "bad JSONL line": ('{"input": "a", "output": "b", "qtype": "OPENENDED"}\n{"input": \n', ["line 2", "malformed JSON"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_one_line_error_exit_2(tmp_path, case):
    content, expected = BAD_INPUTS[case]
    path = write(tmp_path, "bad.jsonl" if "JSONL" in case else "bad.json", content)
    with pytest.raises(DataError):
        load_examples(path, require_qtype=True)
    proc = subprocess.run([sys.executable, "score_outputs.py", "--annotations_path", str(path),
                           "--relevance_model", "minilm"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(path) in lines[0] and "Traceback" not in proc.stderr
    for word in expected:
        assert word in lines[0]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "nope.json")


def test_join_outputs_by_instruction(tmp_path):
    examples = load_examples(ROOT / "data" / "eval.json")
    outputs = [{"instruction": e.seed_input, "output": "x"} for e in reversed(examples)]
    assert join_outputs(outputs, examples, "o.json") == list(reversed(examples))
    with pytest.raises(DataError, match="record 0: field 'instruction': not found"):
        join_outputs([{"instruction": "unknown", "output": "x"}], examples, "o.json")
