"""The one function that says which checkpoints exist: complete `{prefix}_step_N` folders, ordered by N.

run_ppo.py and run_grpo.py (resume from the latest), eval_monotonicity.py, scripts/evaluate.sh and the
quickstart all list checkpoints through `list_checkpoints`, so none of them can take a killed save for one.
A folder counts when its name is exactly `{prefix}_step_N` and it holds a loadable LoRA adapter (config and
weights); saves are built under a hidden temporary name and renamed into place only when complete (files.py).

    python -m rre.checkpoints runs/quickstart/policy      # prints the complete checkpoints, one per line
                                                          # (none: one error line saying why, exit code 2)
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from pathlib import Path
from typing import Callable

from rre.data import DataError
from rre.validation import safetensors_file

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


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


def main(argv: list[str] | None = None) -> None:
    """Print the complete checkpoints, one per line; none found is one `error:` line saying what was looked for,
    and exit code 2 (scripts/evaluate.sh and the quickstart stop on it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prefix", help="checkpoint prefix: the run's --output_dir (folders {prefix}_step_N)")
    args = parser.parse_args(argv)
    found = list_checkpoints(args.prefix)
    if not found:
        print(f"error: {why_none(args.prefix)}", file=sys.stderr)
        sys.exit(2)
    for _, path in found:
        print(path)


if __name__ == "__main__":
    main()
