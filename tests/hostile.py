"""The hostile-input battery's runner and fixtures, shared by the test_hostile_<command>.py files (one table of
cases per command), test_hostile_ranges.py and test_nothing_lost.py.

A case runs a command's `main(argv)` in this process, with the working folder a fresh tmp_path holding only the
case's fixtures, and passes when: the exit code is 2; stderr is one line, `error: ...` naming the flag or file
(for an unknown flag: argparse's usage error, its last line "unrecognized arguments"); no traceback; and nothing
created (no folder, no partial file). To add a case, append a `Case` to the command's table: the command as a
module name, argv with `{root}` for the repository and paths relative to the case's folder, and the fixtures it
needs (`make({...})`).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from helpers import ROOT


Fixture = dict[str, str | bytes | None]  # relative path -> file content (None: a folder)


def make(spec: Fixture) -> Callable[[Path], None]:
    """Fixtures of a case: files (text or bytes) and folders (None), created in the case's folder."""
    def build(root: Path) -> None:
        for rel, content in spec.items():
            path = root / rel
            if content is None:
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return build


def safetensors_bytes(truncate: int = 0) -> bytes:
    """A one-tensor safetensors file (4 float32 values), optionally missing its last `truncate` bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    blob = len(header).to_bytes(8, "little") + header + bytes(16)
    return blob[:len(blob) - truncate]


def adapter_at(folder: str) -> Fixture:
    """A complete LoRA adapter (config and weights) in `folder`."""
    return {f"{folder}/adapter_config.json": '{"peft_type": "LORA"}',
            f"{folder}/adapter_model.safetensors": safetensors_bytes()}


# --- fixtures (files a case's folder holds) -------------------------------------------------------------
ANNOTATIONS = json.dumps([
    {"input": "Name a fruit.", "output": "An apple.", "qtype": "CONSTRAINED"},
    {"input": "Write a poem about rain.", "output": "Rain taps the roof all night.", "qtype": "OPENENDED"},
    {"input": "Suggest a weekend hobby.", "output": "Try hiking with friends.", "qtype": "OPENENDED"},
])
MODEL = {"model/config.json": "{}"}  # passes the folder check (config.json); nothing here loads it
ADAPTER = {**MODEL, **adapter_at("adapter")}
A_FILE = {"afile": "a regular file: nothing can be created under it, not even by root"}
SCORE_FIXTURES = {"ann.json": ANNOTATIONS}
EVALUATED_STEP_1 = {"p_step_1/alpaca-eval-p_step_1.json": "[]"}  # checkpoint 1 of prefix p, its answers only
EVALUATED_STEP_2 = {"p_step_2/alpaca-eval-p_step_2.json": "[]"}
PRESCREEN_SYSTEMS = {"sa/alpaca-eval-sa.json": "[]", "sb/alpaca-eval-sb.json": "[]"}

# --- flags every case of a command starts from ------------------------------------------------------------
# The offline eval sets (the defaults are the paper's data/alpaca_eval.json and data/natural-instructions).
ALPACA_EVAL_SET = ("--eval_path", "{root}/data/eval.json")
BOTH_EVAL_SETS = (*ALPACA_EVAL_SET, "--superni_dir", "{root}/data/superni-fixture")
SCORE_FLAGS = ("--annotations_path", "ann.json", "--relevance_scaling=false")  # no encoder loads
MONOTONICITY_FLAGS = ("--output_dir", ".", "--gold_model", "model", "--relevance_model=minilm", *ALPACA_EVAL_SET)
TRAIN_DATA = ("--data_path", "{root}/data/train.json")
MODEL_FLAG = ("--model_name", "model")
PRESCREEN_FLAGS = ("--systems", "sa", "sb", "--gold_csv", "lb.csv")
PPO_FLAGS = ("--dataset_path", "{root}/data/train.json", "--dev_prompt_path", "{root}/data/dev.json", "--output_dir",
             "run", "--relevance_model=minilm")
GRPO_FLAGS = ("--dataset_path", "{root}/data/train.json", "--output_dir", "run", "--relevance_model=minilm")


@dataclass(frozen=True)
class Case:
    id: str
    module: str  # imported; its main(argv) is called
    argv: tuple[str, ...]  # "{root}" is the repository; other paths are relative to the case's folder
    expect: str  # in the error line
    setup: Callable[[Path], None] = field(default=make({}))
    usage: bool = False  # an argparse usage error ("unrecognized arguments"), not an `error:` line
    needs_non_root: bool = False  # a read-only folder stops only a non-root user
    after_progress: bool = False  # the failure comes after the script's progress lines (a model load): last line


def case_ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def with_root(argv) -> list[str]:
    """argv with `{root}` replaced by the repository's path."""
    return [a.replace("{root}", str(ROOT)) for a in argv]


def run_case(case: Case, tmp_path: Path, monkeypatch, capsys) -> tuple[int, list[str]]:
    """Run the case's CLI in this process; returns (exit code, non-empty stderr lines). Asserts nothing changed
    in the case's folder."""
    module = importlib.import_module(case.module)  # import warnings, if any, are not the CLI's output
    case.setup(tmp_path)
    before = listing(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main(with_root(case.argv))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert listing(tmp_path) == before, "the failed run created or removed something"
    return exit_info.value.code, err


def assert_fails_in_one_line(case: Case, tmp_path: Path, monkeypatch, capsys) -> None:
    """The battery's check of one case (the module docstring says what passes)."""
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder; the case under a regular file covers root")
    code, err = run_case(case, tmp_path, monkeypatch, capsys)
    assert code == 2, err
    assert not any("Traceback" in line for line in err), err
    if case.usage:
        assert err[0].startswith("usage:") and "unrecognized arguments" in err[-1], err
    else:
        if case.after_progress:
            assert not any(line.startswith("error:") for line in err[:-1]), err
            err = err[-1:]
        assert len(err) == 1, err
        assert err[0].startswith("error: ") and case.expect in err[0], err


def strict_json(text: str):
    """json.loads that refuses a bare NaN or Infinity (not JSON, though Python's json writes them)."""
    def refuse(name: str):
        raise ValueError(f"bare {name} in the JSON output")

    return json.loads(text, parse_constant=refuse)
