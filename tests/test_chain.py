"""scripts/reproduce_paper.sh in tiny mode: the paper's whole chain and its protocol scaled down (train 6 steps saving
every one, as the paper trains 10,000 saving every 500; evaluate and check monotonicity over steps 1-3, as it does
over 500-5000; alpaca_eval and SuperNI on step 3, as on step 5000), each stage reading what the stage before wrote.
Tiny random models, data/train.json, CPU, zero2-cpu.yaml."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import ENV, ROOT

SAVED = (1, 2, 3, 4, 5, 6)  # OVERALL_STEPS=6, SAVE_FREQ=1
STEPS = (1, 2, 3)  # STEPS: evaluation and monotonicity
FINAL = 3  # ALPACA_EVAL_STEPS and SUPERNI_STEPS


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_llama_dir, smollm2_dir):
    from tiny_reward_models import save_tiny_classifier

    work = tmp_path_factory.mktemp("chain")
    gold, _ = save_tiny_classifier(work / "gold", smollm2_dir)
    out = work / "runs"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_API_KEYS")}
    env.update(TINY="1", MODEL_NAME=tiny_llama_dir, GOLD_MODEL=gold, OUTPUT_DIR=str(out), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", NUM_PROCESSES="1")
    proc = subprocess.run(["bash", "scripts/reproduce_paper.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return out, proc, gold


def outputs_file(out: Path, step: int) -> Path:
    return out / f"alpaca_test_step_{step}" / f"alpaca-eval-alpaca_test_step_{step}.json"


def test_train_saved_every_step_and_evaluate_read_only_the_protocols(chain):
    out, proc, _ = chain
    listed = subprocess.run(["python", "-m", "rre.checkpoints", str(out / "alpaca_test")], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == [str(out / f"alpaca_test_step_{s}") for s in SAVED]
    for s in STEPS:  # evaluate.sh answered the eval set with the checkpoints of STEPS
        outputs = json.loads(outputs_file(out, s).read_text())
        assert len(outputs) == 30 and outputs[0]["generator"] == f"alpaca_test_step_{s}"
    assert [s for s in SAVED if list((out / f"alpaca_test_step_{s}").glob("alpaca-eval-*"))] == list(STEPS)
    assert "accelerate launch" in proc.stderr  # train.sh's set -x line: the launch, not a plain python


def test_the_trained_proxy_records_the_resolved_rar_max_dot(chain):
    out, proc, _ = chain
    proxy = json.loads((out / "alpaca_test" / "training_config.json").read_text())["proxy"]
    assert proxy["reward"]["relevance_model"] == "minilm" and proxy["reward"]["rar_max_dot"] == 1.0
    assert "rar_max_dot: auto -> 1.0" in proc.stderr


def test_monotonicity_covers_the_protocols_steps(chain):
    out, proc, _ = chain
    result = json.loads((out / "monotonicity.json").read_text())
    assert result["steps"] == list(STEPS)
    assert [row["outputs"] for row in result["checkpoints"]] == [str(outputs_file(out, s)) for s in STEPS]
    assert result["proxy"]["source"] and result["proxy"]["reward"]["rar_max_dot"] == 1.0  # the trained proxy
    scored = [s for s in SAVED if list((out / f"alpaca_test_step_{s}").glob("scores-gold-*"))]
    assert scored == list(STEPS)


def test_alpaca_eval_command_names_the_final_steps_outputs_only(chain):
    out, proc, _ = chain
    assert "OPENAI_API_KEY is not set" in proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("alpaca_eval ")]
    assert len(commands) == 1
    assert f"--model_outputs {outputs_file(out, FINAL)}" in commands[0]


def test_superni_scored_the_final_step_on_the_named_source(chain):
    out, proc, _ = chain
    assert [s for s in SAVED if (out / f"alpaca_test_step_{s}" / "superni_eval.json").exists()] == [FINAL]
    result = json.loads((out / f"alpaca_test_step_{FINAL}" / "superni_eval.json").read_text())
    assert result["generator"] == f"alpaca_test_step_{FINAL}" and result["n_tasks"] == 3
    assert result["source"].startswith("fixture (3 tasks") and "SuperNI source: fixture" in proc.stdout


def test_a_listed_step_the_run_did_not_save_is_one_line(chain):
    out, _, gold = chain
    env = {**ENV, "OUTPUT_DIR": str(out), "EVAL_PATH": "data/eval.json", "GOLD_MODEL": gold, "GOLD_TYPE": "classifier",
           "SUPERNI_DIR": "data/superni-fixture"}
    for script, variable in (("evaluate.sh", "STEPS"), ("monotonicity.sh", "STEPS"),
                             ("alpaca_eval.sh", "ALPACA_EVAL_STEPS"), ("superni.sh", "SUPERNI_STEPS")):
        proc = subprocess.run(["bash", f"scripts/{script}"], cwd=ROOT, env={**env, variable: "2 9"},
                              capture_output=True, text=True, timeout=300)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1, (script, proc.stderr[-2000:])
        assert err[0].startswith("error: ") and "alpaca_test_step_9" in err[0] and "step_2," not in err[0], err[0]
