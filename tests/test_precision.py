"""precision.py: one rule for the compute dtype (bf16 only where native), explicit values win, an env override."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT

from rre import precision
from rre.errors import DataError


def test_explicit_values_win_and_auto_follows_the_hardware(monkeypatch):
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    for name in ("bfloat16", "bf16", "BF16"):
        assert precision.resolve_dtype(name, "cpu") == torch.bfloat16
    for name in ("float32", "fp32", "no"):
        assert precision.resolve_dtype(name, "cpu") == torch.float32
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert precision.native_bf16("cpu") == native
    assert precision.resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert precision.mixed_precision_for("auto", "cpu") == ("bf16" if native else "no")


def test_force_env_means_float32_for_auto_only(monkeypatch):
    monkeypatch.setenv(precision.FORCE_ENV, "1")
    assert not precision.native_bf16("cpu") and not precision.native_bf16("cuda")
    assert precision.resolve_dtype("auto", "cpu") == torch.float32
    assert precision.resolve_dtype("bfloat16", "cpu") == torch.bfloat16  # an explicit choice still wins
    assert precision.FORCE_ENV in precision.describe(torch.float32, "auto", "cpu")
    monkeypatch.setenv(precision.FORCE_ENV, "0")  # "0" and "" mean off
    assert precision.native_bf16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_run_ppo_flag_then_accelerate_config_then_the_rule(monkeypatch):
    from run_ppo import choose_mixed_precision

    monkeypatch.setenv(precision.FORCE_ENV, "1")
    assert choose_mixed_precision("bf16", {}) == ("bf16", "requested")
    assert choose_mixed_precision(None, {"ACCELERATE_MIXED_PRECISION": "no"}) == (None, "accelerate config")
    assert choose_mixed_precision(None, {}) == ("no", "precision.py rule")
    assert choose_mixed_precision("auto", {"ACCELERATE_MIXED_PRECISION": "bf16"}) == ("no", "precision.py rule")
    monkeypatch.delenv(precision.FORCE_ENV)
    native = precision.native_bf16("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_mixed_precision(None, {}) == ("bf16" if native else "no", "precision.py rule")


def test_bad_value_names_the_flag():
    with pytest.raises(DataError, match=r"--gold_dtype=half: expected one of auto, bfloat16, float32"):
        precision.resolve_dtype("half", "cpu", flag="--gold_dtype")


def test_announce_prints_once(capsys):
    precision.announce("test thing:", torch.float32, "float32", "cpu")
    precision.announce("test thing:", torch.float32, "float32", "cpu")
    assert capsys.readouterr().out == "test thing: precision: float32 on cpu (requested)\n"


def test_entry_points_say_their_choice_and_reject_bad_values(tmp_path):
    """evaluation.py's --precision goes through the same rule: a bad value is one error line, exit code 2."""
    result = subprocess.run([sys.executable, "evaluation.py", "--base_model_name", "x", "--precision", "half",
                             "--output_dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: --precision=half: expected one of auto, bfloat16, float32 (or bf16/fp32)"
