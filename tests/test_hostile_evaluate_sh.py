"""Hostile inputs to scripts/evaluate.sh: a run folder without complete checkpoints, or an adapter that does not
name its base model, stops in one line before any model loads. The shared fixtures: hostile.py."""

from __future__ import annotations

import subprocess

import pytest
from helpers import ENV, ROOT
from hostile import adapter_at, listing, make

EVALUATE_CASES = {
    "no-checkpoints": ({"run": None}, "no complete checkpoints run/p_step_N (folders with a LoRA adapter): run holds no"),
    "output-dir-missing": ({}, "no complete checkpoints nowhere/p_step_N"),
    "adapter-config-no-base": ({**adapter_at("run/p_step_1"), "run/p_step_1/adapter_config.json": "{}"},
                               "run/p_step_1/adapter_config.json: field 'base_model_name_or_path': missing"),
    "adapter-base-not-a-string": ({**adapter_at("run/p_step_1"),
                                   "run/p_step_1/adapter_config.json": '{"base_model_name_or_path": 3}'},
                                  "field 'base_model_name_or_path': expected string, got integer"),
    "adapter-config-bom-and-empty-base": ({**adapter_at("run/p_step_1"),
                                           "run/p_step_1/adapter_config.json": '\ufeff{"base_model_name_or_path": " "}'},
                                          "field 'base_model_name_or_path': empty"),
}


@pytest.mark.parametrize("name", list(EVALUATE_CASES))
def test_evaluate_sh_fails_in_one_line(name, tmp_path):
    fixtures, expect = EVALUATE_CASES[name]
    make(fixtures)(tmp_path)
    before = listing(tmp_path)
    env = {**ENV, "PREFIX": "p", "OUTPUT_DIR": "nowhere" if name == "output-dir-missing" else "run", "STEPS": "all"}
    env.pop("BASE", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and expect in err[0], proc.stderr
    assert listing(tmp_path) == before
