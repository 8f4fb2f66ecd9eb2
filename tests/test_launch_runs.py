"""launch_runs.py: independent runs side by side, one per (stand-in) GPU, each with its own free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV, ROOT, paper_config_launch


# A run that proves what it was given: binds its port (free, or this fails), records its GPU and port, and waits
# for the other run's record, so both must have been running at the same time.
PROBE = """import json, os, socket, sys, time
from pathlib import Path
me, other = Path(sys.argv[1]), Path(sys.argv[2])
port = int(os.environ["MAIN_PROCESS_PORT"])
with socket.socket() as s:
    s.bind(("127.0.0.1", port))
    me.write_text(json.dumps({"gpu": os.environ["CUDA_VISIBLE_DEVICES"], "port": port,
                              "master": os.environ["MASTER_PORT"], "name": os.environ["RUN_NAME"]}))
    deadline = time.time() + 60
    while not other.exists():
        if time.time() > deadline:
            sys.exit("the other run never started")
        time.sleep(0.05)
"""


def launch(tmp_path: Path, runs: str, *flags: str) -> subprocess.CompletedProcess:
    (tmp_path / "runs.txt").write_text(runs)
    return subprocess.run([sys.executable, str(ROOT / "launch_runs.py"), "runs.txt",
                           "--log_dir", "logs", *flags], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=600)


def test_two_runs_two_devices_two_ports_at_once(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    runs = ("# seeds of one design\n"
            f"seed1: {sys.executable} probe.py one.json two.json\n\n"
            f"seed2: {sys.executable} probe.py two.json one.json\n")
    proc = launch(tmp_path, runs, "--gpus", "0,1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert {one["gpu"], two["gpu"]} == {"0", "1"} and one["port"] != two["port"]
    assert one["master"] == str(one["port"]) and (one["name"], two["name"]) == ("seed1", "seed2")
    assert "seed1: started on GPU 0, port " in proc.stdout and proc.stdout.rstrip().endswith("all 2 runs finished")


def test_a_failed_run_is_named_in_one_line_after_all_end(tmp_path):
    runs = ("ok1: echo first > ok1.txt\n"
            "bad: echo 'out of memory' >&2; exit 3\n"
            "ok2: sleep 1; echo $CUDA_VISIBLE_DEVICES > ok2.txt\n")
    proc = launch(tmp_path, runs, "--gpus", "4,5")
    assert proc.returncode == 1
    assert proc.stderr == ("error: 1 of 3 runs failed: bad (GPU 5, exit code 3, log logs/bad.log)\n")
    assert (tmp_path / "logs" / "bad.log").read_text() == "out of memory\n"
    assert (tmp_path / "ok1.txt").is_file() and (tmp_path / "ok2.txt").read_text().strip() in {"4", "5"}


def test_runs_of_several_gpus_each(tmp_path):
    runs = "".join(f"r{i}: echo $CUDA_VISIBLE_DEVICES > r{i}.txt\n" for i in range(3))
    proc = launch(tmp_path, runs, "--gpus", "0,1,2,3", "--gpus_per_run", "2")
    assert proc.returncode == 0, proc.stderr
    assert {(tmp_path / f"r{i}.txt").read_text().strip() for i in range(3)} <= {"0,1", "2,3"}


@pytest.mark.parametrize("runs,flags,message", [
    ("a: true\nno command here\n", ["--gpus", "0"], "runs.txt: line 2: expected 'NAME: COMMAND'"),
    ("a: true\na: false\n", ["--gpus", "0"], "runs.txt: line 2: run name 'a' is used twice"),
    ("a b: true\n", ["--gpus", "0"], "runs.txt: line 1: run name 'a b': letters, digits"),
    ("# nothing\n", ["--gpus", "0"], "runs.txt: no runs"),
    ("a: true\n", ["--gpus", "0,0"], "--gpus 0,0: a GPU is listed twice"),
    ("a: true\n", ["--gpus", "0,1,2", "--gpus_per_run", "2"], "--gpus_per_run 2: must divide the 3 GPUs"),
])
def test_bad_input_stops_in_one_line_before_any_run(tmp_path, runs, flags, message):
    proc = launch(tmp_path, runs, *flags)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {message}") and proc.stdout == ""
    assert not (tmp_path / "logs").exists()


def test_two_checkpoints_evaluated_side_by_side(tmp_path, tiny_llama_dir):
    """The use on a node: each evaluation.py loads its checkpoint on its own GPU (its --device 0 is the GPU in
    CUDA_VISIBLE_DEVICES); here two tiny runs on two stand-in devices, both writing their answers."""
    evaluate = (f"{sys.executable} {ROOT / 'evaluation.py'} --base_model_name={tiny_llama_dir} --evaluations alpaca "
                f"--eval_path {ROOT / 'data' / 'eval.json'} --max_new_tokens=4 --batch_size=8 --precision=float32")
    runs = "".join(f"seed{s}: {evaluate} --seed={s} --output_dir=out{s}\n" for s in (1, 2))
    proc = launch(tmp_path, runs, "--gpus", "0,1")
    assert proc.returncode == 0, proc.stderr + "".join(p.read_text()[-2000:] for p in (tmp_path / "logs").iterdir())
    for s in (1, 2):
        answers = json.loads(next((tmp_path / f"out{s}").glob("alpaca-eval-*.json")).read_text())
        assert len(answers) == 30


def test_two_launches_of_the_papers_config_at_once(tmp_path, tiny_llama_dir):
    """configs/zero2-bf16.yaml (DeepSpeed ZeRO-2) takes a free port for each launch: two tiny PPO runs started
    together while the default port 29500 is taken both finish on ports of their own. (Without the key, accelerate
    goes for 29500 and, finding it taken, falls back to a port of its own choosing with a warning; two launches
    checking at the same moment can still both pick 29500.)"""
    launch = paper_config_launch("run_ppo.py")
    flags = [f"--model_name={tiny_llama_dir}", "--overall_steps=1", "--save_freq=1", "--batch_size=2",
             "--mini_batch_size=2", "--gradient_accumulation_steps=1", "--output_max_length=4",
             "--max_prompt_length=128", "--dev_max_examples=1", "--mixed_precision=no", "--log_with=none",
             f"--dev_prompt_path={ROOT / 'data' / 'dev.json'}", "--relevance_scaling=false",
             "--reward_branching=false", f"--dataset_path={ROOT / 'data' / 'train.json'}"]
    with socket.socket() as default_port:
        try:
            default_port.bind(("", 29500))
            default_port.listen()
        except OSError:
            pass  # something else holds it: taken all the same
        procs = [subprocess.Popen(launch + [*flags, f"--output_dir={tmp_path / f'run{i}'}"], cwd=tmp_path, env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
        outs = [p.communicate(timeout=900)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs), 1):
        assert p.returncode == 0, out[-4000:]
        assert "already in use" not in out, out[-4000:]
        assert (tmp_path / f"run{i}_step_1" / "adapter_model.safetensors").is_file()


def test_train_sh_runs_get_their_gpu_and_port(tmp_path):
    """docs/gpu.md's training recipe: scripts/train.sh under the launcher hands each run's port to `accelerate
    launch` (a stand-in `accelerate` on PATH records what it was given)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "accelerate").write_text('#!/usr/bin/env bash\necho "$CUDA_VISIBLE_DEVICES $MAIN_PROCESS_PORT $*" '
                                     f'> {tmp_path}/"$RUN_NAME".args\n')
    (bin_ / "accelerate").chmod(0o755)
    runs = "".join(f"seed{s}: OUTPUT_DIR=runs/seed{s} SEED={s} DATASET_PATH=data/train.json DEV_PATH=data/dev.json "
                   f"ACCELERATE_CONFIG=configs/zero2-bf16.yaml bash scripts/train.sh\n" for s in (1, 2))
    (tmp_path / "runs.txt").write_text(runs)
    proc = subprocess.run([sys.executable, "launch_runs.py", str(tmp_path / "runs.txt"), "--gpus", "0,1",
                           "--log_dir", str(tmp_path / "logs")], cwd=ROOT, capture_output=True, text=True,
                          env={**ENV, "PATH": f"{bin_}:{os.environ['PATH']}"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = {}
    for s in (1, 2):
        gpu, port, *args = (tmp_path / f"seed{s}.args").read_text().split()
        assert args[:2] == ["launch", "--num_machines"] and args[args.index("--main_process_port") + 1] == port
        assert f"--output_dir=runs/seed{s}/alpaca_test" in args and f"--seed={s}" in args
        seen[gpu] = port
    assert set(seen) == {"0", "1"} and len(set(seen.values())) == 2
