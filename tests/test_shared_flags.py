"""The flags run_ppo.py and run_grpo.py share are declared once (rre/training.py), and the setting the two spell
differently, --mixed_precision and --precision, takes both spellings in both scripts."""

from __future__ import annotations

import subprocess
import sys

import pytest

import run_grpo
import run_ppo
from rre.training import SharedTrainingFlags, mixed_precision_setting
from helpers import ENV, ROOT
from rre.validation import parse_flags


def test_no_script_declares_a_shared_flag_again():
    shared = set(SharedTrainingFlags.__annotations__)
    for script in (run_ppo, run_grpo):
        assert not shared & set(script.ScriptArguments.__annotations__), script.__name__
    assert {"mixed_precision", "attn_implementation"} <= shared


@pytest.mark.parametrize("spelling", ["--mixed_precision", "--precision"])
@pytest.mark.parametrize("value, setting", [("bf16", "bf16"), ("bfloat16", "bf16"), ("no", "no"), ("float32", "no"),
                                            ("auto", "auto")])
def test_both_spellings_reach_both_trainers(spelling, value, setting):
    ppo_args, *_ = parse_flags((run_ppo.ScriptArguments, run_ppo.PPOConfig, run_ppo.RewardConfig),
                               [f"{spelling}={value}"])
    grpo_args, *_ = parse_flags((run_grpo.ScriptArguments, run_grpo.TRLArguments, run_grpo.RewardConfig),
                                [f"{spelling}={value}"])
    assert mixed_precision_setting(ppo_args.mixed_precision) == setting
    assert mixed_precision_setting(grpo_args.mixed_precision) == setting
    assert run_grpo.POLICY_DTYPES[setting] in ("auto", "float32", "bfloat16")


def test_not_given_means_the_launch_config_or_the_hardware_rule():
    args, *_ = parse_flags((run_ppo.ScriptArguments, run_ppo.PPOConfig, run_ppo.RewardConfig), [])
    assert args.mixed_precision is None and mixed_precision_setting(None) is None


@pytest.mark.parametrize("script, argv, message", [
    ("run_grpo.py", ["--precision=fp16"], "--mixed_precision"),
    ("run_ppo.py", ["--precision=half"], "--mixed_precision"),
    ("run_grpo.py", ["--attn_implementation=fast"], "--attn_implementation"),
])
def test_bad_values_are_one_line(script, argv, message):
    proc = subprocess.run([sys.executable, script, *argv], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
