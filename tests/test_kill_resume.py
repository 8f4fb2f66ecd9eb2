"""A run killed with SIGKILL at three moments (during a step, while a checkpoint is written, during the final
save) resumes to its final step, leaves only complete checkpoints, and scripts/evaluate.sh evaluates them all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV, ROOT

from rre.checkpoints import list_checkpoints

STEPS = 3


def flags(model_dir: str, out: Path, *extra: str) -> list[str]:
    # Relevance off: no encoder to load, so each run is a few seconds of the tiny model.
    return [sys.executable, "run_ppo.py", f"--model_name={model_dir}", f"--output_dir={out}",
            f"--overall_steps={STEPS}", "--save_freq=1", "--batch_size=4", "--mini_batch_size=2",
            "--gradient_accumulation_steps=1", "--output_max_length=8", "--max_prompt_length=256",
            "--dev_max_examples=2", "--eval_table_rows=0", "--seed=7", "--mixed_precision=no", "--log_with=none",
            "--relevance_scaling=false", "--reward_branching=false", *extra]


def kill_during_step(cmd: list[str]) -> int:
    """Start the run, wait for its first step line, then SIGKILL it: it is then inside step 2."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith(f"step 1/{STEPS}"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    return proc.wait(timeout=300)


def kill_during_save(cmd: list[str], name: str) -> int:
    """The same run through tests/kill_during_save.py, which SIGKILLs it after the checkpoint's files are written,
    before its rename."""
    assert cmd[1] == "run_ppo.py"
    killed = [cmd[0], "tests/kill_during_save.py", name, *cmd[2:]]
    return subprocess.run(killed, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300).returncode


@pytest.mark.parametrize("moment", ["during_step", "during_checkpoint_save", "during_final_save"])
def test_sigkill_then_resume(moment, tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    cmd = flags(tiny_llama_dir, out)
    if moment == "during_step":
        rc, survivors = kill_during_step(cmd), [1]
    elif moment == "during_checkpoint_save":
        rc, survivors = kill_during_save(cmd, "run_step_2"), [1]
    else:
        rc, survivors = kill_during_save(cmd, "run_final"), [1, 2, 3]
    assert rc == -signal.SIGKILL
    # Only complete checkpoints are listed; a killed save is a hidden temporary folder that no glob matches.
    assert [n for n, _ in list_checkpoints(out)] == survivors
    assert not list(tmp_path.glob("run_step_*.tmp*")) and not (tmp_path / "run_final").exists()
    if moment != "during_step":
        assert list(tmp_path.glob(".partial-run_*"))

    resumed = subprocess.run(cmd + ["--resume_from_checkpoint=latest"], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out}_step_{survivors[-1]} at step {survivors[-1]}" in resumed.stderr
    if moment != "during_step":
        assert "an unfinished save of a killed run" in resumed.stderr
    assert not list(tmp_path.glob(".partial-*"))
    assert [n for n, _ in list_checkpoints(out)] == [1, 2, 3]
    final = json.loads((tmp_path / "run_final" / "training_state.json").read_text())
    assert final["current_step"] == STEPS

    # scripts/evaluate.sh answers the eval set with every checkpoint, in step order.
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps([{"instruction": "Name a color.", "output": "Blue."},
                                     {"instruction": "Say hi.", "output": "Hi."}]))
    env = {**ENV, "BASE": tiny_llama_dir, "PREFIX": "run", "OUTPUT_DIR": str(tmp_path), "BATCH_SIZE": "2",
           "STEPS": "all"}
    proc = subprocess.run(["bash", "scripts/evaluate.sh", f"--eval_path={eval_file}", "--max_new_tokens=4",
                           "--precision=float32"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in (1, 2, 3):
        outputs = json.loads((tmp_path / f"run_step_{step}" / f"alpaca-eval-run_step_{step}.json").read_text())
        assert len(outputs) == 2


def test_cleanup_removes_only_this_runs_leftovers(tmp_path):
    """A start removes its own killed saves, never those of a run whose name merely begins the same way."""
    from rre.files import PPO_CHECKPOINT, clean_partials

    for name in (".partial-run_step_2", ".partial-run_final", ".partial-old-run_step_1", "run_step_1",
                 ".partial-run_b_step_3"):
        (tmp_path / name).mkdir()
    removed = clean_partials(tmp_path, PPO_CHECKPOINT, "run_step_", "run_final")
    assert sorted(p.name for p in removed) == [".partial-old-run_step_1", ".partial-run_final", ".partial-run_step_2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-run_b_step_3", "run_step_1"]


def test_a_kill_between_the_two_renames_of_a_replace_keeps_the_old_folder(tmp_path):
    """replace_dir moves the old folder aside, then renames the new one in: killed between the two, the next
    start finds no `X`, the old complete version as `.partial-old-X` and the new one as `.partial-X`. It keeps
    the old version (the new one may be incomplete) instead of deleting both."""
    from rre.files import PPO_CHECKPOINT, clean_partials

    (tmp_path / ".partial-old-run_final").mkdir()
    (tmp_path / ".partial-old-run_final" / "adapter_model.safetensors").write_bytes(b"old")
    (tmp_path / ".partial-run_final").mkdir()
    removed = clean_partials(tmp_path, PPO_CHECKPOINT, "run_final")
    assert [p.name for p in removed] == [".partial-run_final"]
    assert (tmp_path / "run_final" / "adapter_model.safetensors").read_bytes() == b"old"
