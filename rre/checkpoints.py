"""The one function that says which checkpoints exist: complete `{prefix}_step_N` folders, ordered by N.

run_ppo.py and run_grpo.py (resume from the latest), eval_monotonicity.py, scripts/evaluate.sh and the
quickstart all list checkpoints through `list_checkpoints`, so none of them can take a killed save for one.
A folder counts when its name is exactly `{prefix}_step_N` and it holds a loadable LoRA adapter (config and
weights); saves are built under a hidden temporary name and renamed into place only when complete (files.py).

    python -m rre.checkpoints runs/quickstart/policy      # prints the complete checkpoints, one per line
                                                          # (none: one error line saying why, exit code 2)
    python -m rre.checkpoints ./alpaca_test --steps "500 1000"   # only these steps; a missing one: one error line
    python -m rre.checkpoints ./alpaca_test --steps last --outputs  # the last step's alpaca-eval-*.json

`--steps` is how the paper's chain scripts pick their checkpoints (their STEPS, ALPACA_EVAL_STEPS and SUPERNI_STEPS):
step numbers, `all` (every complete one) or `last` (the highest). PAPER_STEPS is the paper's protocol: its
README trains 10,000 steps saving every 500, and evaluates and checks monotonicity over steps 500 ... 5000.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from pathlib import Path
from typing import Callable

from rre.errors import DataError
from rre.files import OutputKind, read_json, replaceable, same_or_inside
from rre.validation import safetensors_file

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PAPER_STEPS = tuple(range(500, 5001, 500))  # the paper's eval_monotonicity.py: range(500, 5500, 500)
PAPER_FINAL_STEP = 5000  # the checkpoint its README runs AlpacaEval and SuperNI on


def is_complete(folder: Path) -> bool:
    """A folder whose adapter loads: both files there, the weights a safetensors file with a readable header and
    every tensor inside the file (a 0-byte or cut copy, as a full disk leaves, is not a checkpoint)."""
    if not (folder.is_dir() and all((folder / f).is_file() for f in ADAPTER_FILES)):
        return False
    try:
        safetensors_file("checkpoint", folder / ADAPTER_FILES[1])
    except DataError:
        return False
    return True


def list_checkpoints(prefix: str | Path, steps: list[int] | None = None,
                     accept: Callable[[Path], bool] = is_complete) -> list[tuple[int, Path]]:
    """(N, folder) of every complete `{prefix}_step_N`, sorted by N; `steps` keeps only those N. `accept` says
    what counts as complete (default: a loadable adapter; eval_monotonicity.py also takes a folder that holds
    the outputs evaluation.py wrote, since it reads only those)."""
    prefix = Path(str(prefix).rstrip("/"))
    parent = prefix.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(prefix.name)}_step_(\d+)")
    found = []
    for p in parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m and accept(p) and (steps is None or int(m.group(1)) in steps):
            found.append((int(m.group(1)), p))
    return sorted(found)


def checkpoint_path(output_dir: str, tag: str) -> Path:
    """`{output_dir}_{tag}`: where a run's checkpoint `step_N` or `final` goes, beside the run folder."""
    return Path(f"{output_dir.rstrip('/')}_{tag}")


def latest_checkpoint(prefix: str | Path, state_file: str) -> Path | None:
    """The highest complete `{prefix}_step_N` that also holds `state_file`, the trainer's resume state."""
    found = [p for _, p in list_checkpoints(prefix) if (p / state_file).is_file()]
    return found[-1] if found else None


def find_outputs_file(folder: Path) -> Path:
    """The folder's `alpaca-eval-*.json`; with several, the one named after the folder (evaluation.py's name)."""
    files = sorted(p for p in folder.glob("alpaca-eval-*.json"))
    own = folder / f"alpaca-eval-{folder.name}.json"
    if own in files:
        return own
    if len(files) == 1:
        return files[0]
    if not files:
        raise DataError(f"{folder}: no alpaca-eval-*.json (run evaluation.py --evaluations alpaca on it first)")
    raise DataError(f"{folder}: several outputs files ({', '.join(p.name for p in files)}); keep one")


def why_none(prefix: str | Path) -> str:
    """What `list_checkpoints(prefix)` looked for and why it found nothing, in one line."""
    prefix = Path(str(prefix).rstrip("/"))
    looked = f"no complete checkpoints {prefix}_step_N (folders with a LoRA adapter)"
    parent = prefix.parent
    try:
        parent.stat()
    except OSError as err:  # missing, under a file, a symlink loop, no permission: the system says which
        reason = {errno.ENOENT: "no such folder", errno.ENOTDIR: "a part of it is a file, not a folder",
                  errno.ELOOP: "a symlink loop"}.get(err.errno, err.strerror)
        return f"{looked}: {parent}: {reason}"
    if not parent.is_dir():
        return f"{looked}: {parent} is a file, not a folder"
    pattern = re.compile(rf"{re.escape(prefix.name)}_step_(\d+)")
    named = [p.name for p in parent.iterdir() if pattern.fullmatch(p.name)]
    if not named:
        return f"{looked}: {parent} holds no folder named {prefix.name}_step_N"
    return (f"{looked}: {len(named)} folder(s) named so ({', '.join(sorted(named)[:3])}) lack "
            f"{' or '.join(ADAPTER_FILES)}, or hold unreadable weights (unfinished saves, or not this run's)")


def has_outputs(folder: Path) -> bool:
    """A step folder that holds evaluation.py's AlpacaEval outputs (its adapter may be gone)."""
    return folder.is_dir() and any(p.suffix == ".json" for p in folder.glob("alpaca-eval-*.json"))


def select_steps(prefix: str | Path, spec: str, accept: Callable[[Path], bool] = is_complete,
                 name: str = "--steps") -> list[tuple[int, Path]]:
    """The checkpoints `spec` names: step numbers (spaces or commas between them), `all` or `last`. A listed step
    without its folder, a word that is not a step, or nothing found raises DataError naming `name`."""
    words = spec.replace(",", " ").split()
    if words in (["all"], ["last"]):
        found = list_checkpoints(prefix, accept=accept)
        if not found:
            raise DataError(f"{name}={spec}: {why_none(prefix)}")
        return found if words == ["all"] else found[-1:]
    bad = [w for w in words if not w.isdigit()]
    if bad or not words:
        raise DataError(f"{name}={spec!r}: expected step numbers, all or last")
    steps = sorted({int(w) for w in words})
    found = list_checkpoints(prefix, steps, accept=accept)
    missing = [f"{str(prefix).rstrip('/')}_step_{n}" for n in steps if n not in {k for k, _ in found}]
    if missing:
        what = "folder with alpaca-eval-*.json" if accept is has_outputs else "complete checkpoint"
        raise DataError(f"{name}: no {what} {', '.join(missing)} (steps listed: {' '.join(map(str, steps))})")
    return found


# --- a run at a prefix ------------------------------------------------------------------------------------
# A run at --output_dir (a prefix) is its folder's training_config.json and every sibling {prefix}_step_N or
# {prefix}_final folder. A fresh training run never lands on one: it resumes when asked, or starts again with
# --overwrite (which removes that run's own checkpoint folders first, so a longer old run's later checkpoints are
# never taken for the new run's).


def run_folders(prefix: str | Path) -> list[Path]:
    """Every `{prefix}_step_N` (complete or not) and `{prefix}_final` folder, in step order, final last."""
    prefix = Path(str(prefix).rstrip("/"))
    if not prefix.parent.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(prefix.name)}_(step_(\d+)|final)")
    found = [(m.group(2) is None, int(m.group(2) or 0), p) for p in prefix.parent.iterdir()
             if (m := pattern.fullmatch(p.name)) and p.is_dir()]
    return [p for *_, p in sorted(found)]


def existing_run(prefix: str | Path, config_name: str = "training_config.json") -> list[Path]:
    """What of a run is already at `prefix`: its training_config.json and its checkpoint folders."""
    config = Path(str(prefix).rstrip("/")) / config_name
    return ([config] if config.is_file() else []) + run_folders(prefix)


def finished_run(prefix: str | Path, overall_steps: int) -> Path | None:
    """`{prefix}_final` when it is a complete checkpoint of a run of at least `overall_steps` steps (as its
    training_config.json records), else None."""
    final = Path(f"{str(prefix).rstrip('/')}_final")
    config = final / "training_config.json"
    if not is_complete(final) or not config.is_file():
        return None
    record = read_json(config)
    script = record.get("script") if isinstance(record, dict) else None
    steps = script.get("overall_steps") if isinstance(script, dict) else None
    return final if isinstance(steps, int) and steps >= overall_steps else None


def check_run_target(prefix: str, resume: str | None, overwrite: bool, kind: OutputKind,
                     inputs: dict[str, str | None]) -> list[Path]:
    """The run guard of run_ppo.py and run_grpo.py, before anything loads: returns the folders `--overwrite` will
    remove (all of them `kind`'s own and holding no input); a run found without a way on is one line."""
    found = existing_run(prefix)
    if overwrite and resume:
        raise DataError("--overwrite starts the run again; it cannot be combined with --resume_from_checkpoint")
    if not found or resume:
        return []
    if not overwrite:
        folders = [p for p in found if p.is_dir()]
        what = ", ".join([*(str(p) for p in found if p.is_file()), *(str(p) for p in folders[-2:])])
        more = f" ({len(folders)} checkpoint folders)" if len(folders) > 2 else ""
        raise DataError(f"--output_dir {prefix}: a run is already there ({what}{more}); resume it with "
                        "--resume_from_checkpoint=latest, or pass --overwrite=true to start it again")
    folders = [p for p in found if p.is_dir()]
    for folder in folders:
        replaceable("output_dir", folder, kind)
        for flag, value in inputs.items():
            if value is not None and Path(value).exists() and same_or_inside(Path(value), folder):
                raise DataError(f"--output_dir {prefix}: --overwrite would remove {folder}, which holds --{flag} "
                                f"{value}; choose another --output_dir")
    return folders


def main(argv: list[str] | None = None) -> None:
    """Print the complete checkpoints (or with --steps the ones named), one per line; none found, or a listed step
    missing, is one `error:` line saying what was looked for, and exit code 2 (scripts/evaluate.sh, superni.sh,
    alpaca_eval.sh and the quickstart stop on it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prefix", help="checkpoint prefix: the run's --output_dir (folders {prefix}_step_N)")
    parser.add_argument("--steps", default="all", help="step numbers, all (default) or last")
    parser.add_argument("--name", default="--steps", help="what to call the steps in an error line (a variable)")
    parser.add_argument("--outputs", action="store_true",
                        help="print each step's alpaca-eval-*.json instead (folders that hold one count)")
    args = parser.parse_args(argv)
    try:
        found = select_steps(args.prefix, args.steps, has_outputs if args.outputs else is_complete, args.name)
        lines = [find_outputs_file(path) if args.outputs else path for _, path in found]
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
