"""scripts/reproduce_paper.sh in tiny mode: the paper's whole chain (train under accelerate launch, evaluate every
checkpoint, monotonicity over every checkpoint, alpaca_eval commands, SuperNI of the final checkpoint), each stage
reading what the stage before wrote (issue 19 item 4). Tiny random models, data/train.json, CPU, zero2-cpu.yaml."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = (1, 2, 3)


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
    return out, proc


def test_train_wrote_the_checkpoints_the_evaluation_read(chain):
    out, proc = chain
    listed = subprocess.run(["python", "-m", "rre.checkpoints", str(out / "alpaca_test")], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed == [str(out / f"alpaca_test_step_{s}") for s in STEPS]
    for s in STEPS:  # evaluate.sh answered the eval set with every checkpoint train.sh wrote
        outputs = json.loads((out / f"alpaca_test_step_{s}" / f"alpaca-eval-alpaca_test_step_{s}.json").read_text())
        assert len(outputs) == 30 and outputs[0]["generator"] == f"alpaca_test_step_{s}"
    assert "accelerate launch" in proc.stderr  # train.sh's set -x line: the launch, not a plain python


def test_the_trained_proxy_records_the_resolved_rar_max_dot(chain):
    out, proc = chain
    proxy = json.loads((out / "alpaca_test" / "training_config.json").read_text())["proxy"]
    assert proxy["reward"]["relevance_model"] == "minilm" and proxy["reward"]["rar_max_dot"] == 1.0
    assert "rar_max_dot: auto -> 1.0" in proc.stderr


def test_monotonicity_covers_every_checkpoint(chain):
    out, proc = chain
    result = json.loads((out / "monotonicity.json").read_text())
    assert result["steps"] == list(STEPS)
    assert [row["outputs"] for row in result["checkpoints"]] == [
        str(out / f"alpaca_test_step_{s}" / f"alpaca-eval-alpaca_test_step_{s}.json") for s in STEPS]
    assert result["proxy"]["source"] and result["proxy"]["reward"]["rar_max_dot"] == 1.0  # the trained proxy


def test_alpaca_eval_commands_name_every_outputs_file(chain):
    out, proc = chain
    assert "OPENAI_API_KEY is not set" in proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("alpaca_eval ")]
    assert len(commands) == len(STEPS)
    for s, command in zip(STEPS, commands):
        assert f"--model_outputs {out}/alpaca_test_step_{s}/alpaca-eval-alpaca_test_step_{s}.json" in command


def test_superni_scored_the_final_checkpoint_on_the_named_source(chain):
    out, proc = chain
    result = json.loads((out / f"alpaca_test_step_{STEPS[-1]}" / "superni_eval.json").read_text())
    assert result["generator"] == f"alpaca_test_step_{STEPS[-1]}" and result["n_tasks"] == 3
    assert result["source"].startswith("fixture (3 tasks") and "SuperNI source: fixture" in proc.stdout
