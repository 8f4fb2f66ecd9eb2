"""Every file and folder the project writes goes through here, so a killed or failed run leaves nothing half-done.

- `atomic_write`: a temporary file beside the target, renamed over it once complete (a reader sees the old
  file or the new one, never a torn one), with the permissions a plain `open(..., "w")` would give.
- `write_json`: valid JSON only: NaN and infinities become `null`, counted in one warning line.
- `atomic_dir`: a folder written under a hidden temporary name (`.partial-{name}`) and renamed into place; no
  glob of a checkpoint (`{prefix}_step_*`) matches the temporary name, and `clean_partials` removes those
  that a killed run left behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

PARTIAL_PREFIX = ".partial-"


def current_umask() -> int:
    """The process umask (reading it means setting it; it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{PARTIAL_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; a normal file is readable by the group
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_json(obj: Any) -> tuple[Any, int]:
    """(a copy of `obj` with non-finite floats replaced by None, how many were replaced)."""
    count = 0

    def walk(x: Any) -> Any:
        nonlocal count
        if isinstance(x, float) and not math.isfinite(x):
            count += 1
            return None
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(obj), count


def to_json(obj: Any, where: str = "output", indent: int | None = 2) -> str:
    """Strict JSON text of `obj`; non-finite numbers become null, with one warning naming `where`."""
    clean, count = finite_json(obj)
    if count:
        print(f"warning: {where}: {count} non-finite value(s) (NaN/inf) written as null", file=sys.stderr)
    return json.dumps(clean, indent=indent, ensure_ascii=False, allow_nan=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write(path, to_json(obj, str(path), indent) + "\n")


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """A matplotlib figure as PNG through `atomic_write` (a killed run leaves no torn plot); the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def partial_path(final: str | Path) -> Path:
    """The hidden temporary name a folder is built under before it is renamed to `final`."""
    final = Path(final)
    return final.with_name(f"{PARTIAL_PREFIX}{final.name}")


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder under its temporary name; on success it replaces `final`, on failure it is removed."""
    final, tmp = Path(final), partial_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder to `final`, replacing an older `final` (moved aside first)."""
    if final.exists():
        old = final.with_name(f"{PARTIAL_PREFIX}old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def clean_partials(folder: str | Path, *name_prefixes: str) -> list[Path]:
    """Tidy what a killed run left in `folder` for each of `name_prefixes`; returns what was removed.

    A replaced folder moved aside (`.partial-old-X`) whose `X` is missing was caught between replace_dir's two
    renames: it is the last complete version, so it is renamed back. Everything else (`.partial-X` being built,
    `.partial-old-X` beside a finished `X`) is removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for prefix in name_prefixes:
        for p in folder.glob(f"{PARTIAL_PREFIX}old-{prefix}*"):
            final = p.with_name(p.name[len(f"{PARTIAL_PREFIX}old-"):])
            if not final.exists():
                p.rename(final)
                print(f"restored {final} (a replacement of it was interrupted)", file=sys.stderr)
    patterns = [f"{PARTIAL_PREFIX}{old}{prefix}*" for prefix in name_prefixes for old in ("", "old-")]
    for pattern in patterns:
        for p in folder.glob(pattern):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed
