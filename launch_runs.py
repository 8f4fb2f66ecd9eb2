"""Run independent commands side by side, one per GPU: the way to use a node of several GPUs for the paper's work.

The paper's PPO run is one process on one GPU, and so is the evaluation of one checkpoint; a node of eight GPUs
serves eight of them at once (seeds x reward designs, or the checkpoints of a run), never one run spread over
eight (which changes the run: docs/gpu.md). Each run gets its own GPU group through CUDA_VISIBLE_DEVICES (so a
command's GPU 0, evaluation.py's default --device, is that GPU) and its own free TCP port in MAIN_PROCESS_PORT
and MASTER_PORT (scripts/train.sh hands it to `accelerate launch`); its output goes to LOG_DIR/NAME.log. When a
GPU group finishes a run it takes the next one from the file. All runs are waited for; then one line names every
run that failed (exit 1), or all succeeded (exit 0).

    python launch_runs.py --gpus 0,1,2,3 runs.txt
    python launch_runs.py --gpus 0,1,2,3,4,5,6,7 --gpus_per_run 2 golds.txt   # 4 runs of 2 GPUs each

RUNS_FILE holds one run a line, `NAME: COMMAND` (COMMAND runs under bash from the current folder; blank lines and
lines starting with # are skipped), for instance:

    seed1: EXP_NAME=seed1 SEED=1 MODEL_NAME=/models/sft10k bash scripts/train.sh
    seed2: EXP_NAME=seed2 SEED=2 MODEL_NAME=/models/sft10k bash scripts/train.sh
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rre.errors import DataError, exit_on_data_error

ROOT = Path(__file__).resolve().parent  # the checkout: default paths are relative to it

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Run:
    name: str
    command: str
    line: int


@dataclass
class Started:
    run: Run
    gpus: str
    port: int
    process: subprocess.Popen
    log: Path


def read_runs(path: Path) -> list[Run]:
    """The runs of a RUNS_FILE; one line naming file, line and what is wrong otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    runs, seen = [], set()
    for lineno, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        name, sep, command = text.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not command:
            raise DataError(f"{path}: line {lineno}: expected 'NAME: COMMAND'")
        if not NAME.match(name):
            raise DataError(f"{path}: line {lineno}: run name {name!r}: letters, digits, '_', '.', '-' only "
                            "(it names the log file)")
        if name in seen:
            raise DataError(f"{path}: line {lineno}: run name {name!r} is used twice (it names the log file)")
        seen.add(name)
        runs.append(Run(name, command, lineno))
    if not runs:
        raise DataError(f"{path}: no runs (one 'NAME: COMMAND' a line)")
    return runs


def gpu_groups(gpus: str, per_run: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES value of each slot: `gpus` split into groups of `per_run`."""
    ids = [g.strip() for g in gpus.split(",")]
    if not gpus.strip() or any(not g for g in ids):
        raise DataError(f"--gpus {gpus!r}: expected a comma-separated list of GPU ids, e.g. 0,1,2,3")
    if len(set(ids)) != len(ids):
        raise DataError(f"--gpus {gpus}: a GPU is listed twice")
    if per_run < 1 or len(ids) % per_run:
        raise DataError(f"--gpus_per_run {per_run}: must divide the {len(ids)} GPUs of --gpus {gpus}")
    return [",".join(ids[i:i + per_run]) for i in range(0, len(ids), per_run)]


def default_gpus() -> str:
    """CUDA_VISIBLE_DEVICES when set, else every GPU nvidia-smi lists."""
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return os.environ["CUDA_VISIBLE_DEVICES"]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise DataError("--gpus: not given and no GPU found (no CUDA_VISIBLE_DEVICES, no nvidia-smi); "
                        "pass --gpus 0,1,...") from None
    return ",".join(str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU "))


def free_port(taken: set[int]) -> int:
    """A TCP port nothing listens on now, and not handed to another run of this launcher. (Another program may
    still take it before the run binds it; the window is a run's start-up.)"""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def start(run: Run, gpus: str, port: int, log_dir: Path) -> Started:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus, "MAIN_PROCESS_PORT": str(port), "MASTER_PORT": str(port),
           "RUN_NAME": run.name}
    log = log_dir / f"{run.name}.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(["bash", "-c", run.command], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    print(f"{run.name}: started on GPU {gpus}, port {port} (log {log})", flush=True)
    return Started(run, gpus, port, process, log)


def launch(runs: Sequence[Run], groups: Sequence[str], log_dir: Path, poll: float = 0.2) -> list[Started]:
    """Every run, at most one per GPU group at a time; returns them all once every one has ended."""
    log_dir.mkdir(parents=True, exist_ok=True)
    queue, free, taken = list(runs), list(groups), set()
    running: list[Started] = []
    done: list[Started] = []
    try:
        while queue or running:
            while queue and free:
                running.append(start(queue.pop(0), free.pop(0), free_port(taken), log_dir))
            time.sleep(poll)
            for item in [r for r in running if r.process.poll() is not None]:
                running.remove(item)
                done.append(item)
                free.append(item.gpus)
                code = item.process.returncode
                print(f"{item.run.name}: {'finished' if code == 0 else f'FAILED (exit code {code})'} "
                      f"on GPU {item.gpus}", flush=True)
    except KeyboardInterrupt:
        for item in running:  # each run is its own process group: its children stop with it
            os.killpg(item.process.pid, signal.SIGTERM)
        raise
    return done


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_file", help="one run a line: 'NAME: COMMAND'")
    parser.add_argument("--gpus", default=None,
                        help="GPU ids to use, comma-separated (default: CUDA_VISIBLE_DEVICES, else all of nvidia-smi -L)")
    parser.add_argument("--gpus_per_run", type=int, default=1,
                        help="GPUs each run sees (2 for Starling-RM-34B on 80 GB GPUs); default 1")
    parser.add_argument("--log_dir", default="launch_logs", help="where NAME.log of each run goes")
    args = parser.parse_args(argv)
    with exit_on_data_error():
        runs = read_runs(Path(args.runs_file))
        groups = gpu_groups(args.gpus if args.gpus is not None else default_gpus(), args.gpus_per_run)
    done = launch(runs, groups, Path(args.log_dir))
    failed = sorted((d for d in done if d.process.returncode != 0), key=lambda d: d.run.line)
    if failed:
        names = "; ".join(f"{d.run.name} (GPU {d.gpus}, exit code {d.process.returncode}, log {d.log})"
                          for d in failed)
        print(f"error: {len(failed)} of {len(done)} runs failed: {names}", file=sys.stderr)
        sys.exit(1)
    print(f"all {len(done)} runs finished")


if __name__ == "__main__":
    main()
