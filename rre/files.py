"""Every file the project reads or writes goes through here: JSON, JSONL and CSV read with one-line errors, sha256
fingerprints, and every write and removal under one rule, so a killed or failed run leaves nothing half-done and
nothing that is not the project's own is ever replaced or deleted.

The write rule: a command replaces or deletes only what the project itself wrote.
- A folder the project writes carries a marker file (`MARKER`, naming the command) written before its first
  file; a folder without one is recognised by its known contents (`OutputKind`). Anything else at an
  output path (a folder of the user's notes, another command's output) is refused in one line.
- A file is the project's own by its name and content type (`check_output_file` with a recogniser).
- No command writes onto one of its inputs, nor replaces a folder that holds one (`refuse_inputs`).
`replace_dir`, `atomic_dir`, `clean_partials` and `remove_own` are the only places that rename or delete.

- `atomic_write`: a temporary file beside the target, renamed over it once complete (a reader sees the old
  file or the new one, never a torn one), with the permissions a plain `open(..., "w")` would give.
- `write_json`: valid JSON only: NaN and infinities become `null`, counted in one warning line.
- `atomic_dir`: a folder written under a hidden temporary name (`.partial-{name}`) and renamed into place; no
  glob of a checkpoint (`{prefix}_step_*`) matches the temporary name, and `clean_partials` removes those
  that a killed run left behind.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from rre.errors import DataError

PARTIAL_PREFIX = ".partial-"
MARKER = ".rre-written-by"  # {"written_by": "<command>"}: the folder is the project's own output


# --- reading: every JSON, JSONL and CSV file the project reads ------------------------------------------------
# Users' files and the project's own records (training_config.json, training_state.json, adapter_config.json, the
# gold stand-in's info, SuperNI task files, score caches, gold CSVs, progress logs). Text is decoded as `utf-8-sig`
# (a byte-order mark, as some editors save, is accepted); a file that is not UTF-8, not valid JSON, lacks a key or
# holds the wrong type raises DataError with one line naming the file, the record and the field. Numbers read from a
# user's file go through `finite_number`: NaN and infinities are refused.


def read_text(path: str | Path, what: str = "") -> str:
    """The text of any file the project reads (every reader here builds on it): UTF-8, a byte-order mark (as some editors
    save) dropped; `what` (a flag, or what the file is) opens the message. A file that cannot be read is one line."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{label}: is a folder, expected a file") from None
    except PermissionError:
        raise DataError(f"{label}: not readable") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{label}: line {line}: not valid UTF-8 (byte {err.start})") from None


def parse_json(text: str, label: str) -> Any:
    """Strict JSON (no bare NaN/Infinity, which are not JSON) or one line naming `label` and the line."""
    def refuse(name: str) -> Any:
        raise DataError(f"{label}: bare {name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as err:
        raise DataError(f"{label}: not valid JSON (line {err.lineno}: {err.msg})") from None


def read_json(path: str | Path, what: str = "", expect: type | None = dict) -> Any:
    """A whole JSON file; `expect` is the type its top level must have (None: any); `what` (a flag, or what the
    file is) opens any message."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    text = read_text(p, what)
    if not text.strip():
        raise DataError(f"{label}: empty file")
    value = parse_json(text, label)
    if expect is not None and not isinstance(value, expect):
        raise DataError(f"{label}: expected a JSON {_type_name(expect)}, got {_type_name(type(value))}")
    return value


def require_key(record: Any, key: str, where: str, expect: type | tuple[type, ...] | None = None) -> Any:
    """`record[key]`, or one line naming `where` (file and record) and the field that is missing or mistyped."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {_type_name(type(record))}")
    if key not in record:
        raise DataError(f"{where}: field '{key}': missing")
    value = record[key]
    if expect is not None:
        types = expect if isinstance(expect, tuple) else (expect,)
        is_bool_as_number = isinstance(value, bool) and bool not in types
        if not isinstance(value, types) or is_bool_as_number:
            names = " or ".join(_type_name(t) for t in types)
            raise DataError(f"{where}: field '{key}': expected {names}, got {_type_name(type(value))}")
    return value


def finite_number(value: Any, where: str) -> float:
    """A float from a user's file (a string or a JSON number): NaN and infinities are refused."""
    if isinstance(value, bool):
        raise DataError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {value!r} is not a finite number")
    return number


def read_csv_rows(path: str | Path, what: str = "") -> list[tuple[int, list[str]]]:
    """(row number from 1, cells) of every non-blank row of a CSV file."""
    text = read_text(path, what)
    return [(i, row) for i, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1)
            if row and "".join(row).strip()]


def adapter_base_model(folder: str | Path, required: bool = True) -> str | None:
    """The base model a LoRA adapter folder names (adapter_config.json's `base_model_name_or_path`)."""
    path = Path(folder) / "adapter_config.json"
    config = read_json(path)
    if not required and config.get("base_model_name_or_path") is None:
        return None
    base = require_key(config, "base_model_name_or_path", str(path), str)
    if not base.strip():
        raise DataError(f"{path}: field 'base_model_name_or_path': empty")
    return base


def _type_name(t: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(t, t.__name__)


def read_json_records(path: Path) -> list[tuple[str, Any]]:
    """The records of a JSON array or JSONL file, each with its location (`file: record i` or `file: line n`)."""
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty file")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
        return [(f"{path}: record {i}", rec) for i, rec in enumerate(records)]
    if text.lstrip().startswith("{") and "\n" in text.strip():  # one pretty-printed object is not JSONL
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            raise DataError(f"{path}: holds a single JSON object; expected a JSON array of records or JSONL "
                            "(one object per line)")
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path}: line {lineno} (record {len(out)})", json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {lineno}: malformed JSON ({err.msg})") from None
    return out


def jsonl_entries(text: str) -> tuple[list[tuple[int, Any]], int]:
    """A progress log of JSON lines (one record per line, appended as work finishes): (line number, value) of each
    readable line, and how many lines were torn (a write cut short by a kill), which the caller redoes."""
    entries, torn = [], 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append((lineno, json.loads(line)))
        except json.JSONDecodeError:
            torn += 1
    return entries, torn


def jsonl_line(value: Any) -> str:
    """One record of a JSON-lines progress log, newline included."""
    return json.dumps(value, ensure_ascii=False) + "\n"


def safetensors_header(path: Path) -> tuple[int, dict | None]:
    """(header length, header) of a safetensors file: its first 8 bytes give the length of the JSON header that
    follows. The header is None when it cannot be read (a cut or foreign file)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        raw = f.read(n) if 0 < n <= size - 8 else b""
    try:
        meta = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    return n, meta if isinstance(meta, dict) else None


# --- fingerprints ---------------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (read in blocks): which training file, features module or classifier a result
    came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(obj: Any) -> str:
    """The sha256 of a JSON value, keys sorted: what was scored or annotated, as a cache key."""
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


# --- writing -------------------------------------------------------------------------------------------------


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


# --- the write rule --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputKind:
    """One kind of folder a command writes: the command named in its marker, and, for a folder without a
    marker, a file only this kind holds (`signature`) and name patterns covering everything it holds."""

    command: str
    what: str
    signature: str = ""
    known: tuple[str, ...] = ()

    def owns(self, folder: Path) -> bool:
        """`folder` is this kind's own: its marker names the command, or (no marker) it holds the signature file
        and nothing but the kind's known names."""
        mark = written_by(folder)
        if mark is not None:
            return mark == self.command
        if not self.signature or not (folder / self.signature).exists():
            return False
        return all(any(fnmatch.fnmatch(p.name, k) for k in self.known) for p in folder.iterdir())


TOKENIZER_FILES = ("tokenizer*.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "chat_template.jinja")
EVAL_FILES = ("alpaca-eval-*.json", "superni_eval.json")  # evaluation.py adds these to a checkpoint folder
# The project's output folders. A folder of one of these kinds without a marker is recognised by
# its signature file and its known names; everything listed is what the command (or evaluation.py) puts there.
PPO_CHECKPOINT = OutputKind("run_ppo.py", "a run_ppo.py checkpoint", "training_state.json",
                            ("adapter_config.json", "adapter_model.safetensors", "value_head.safetensors", "state",
                             "training_config.json", "training_state.json", "README.md", MARKER, *TOKENIZER_FILES,
                             *EVAL_FILES))
GRPO_CHECKPOINT = OutputKind("run_grpo.py", "a run_grpo.py checkpoint", "trainer_state.json",
                             ("adapter_config.json", "adapter_model.safetensors", "training_config.json",
                              "trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*",
                              "README.md", "model.safetensors", "config.json", "generation_config.json", MARKER,
                              *TOKENIZER_FILES, *EVAL_FILES))
QTYPE_CLASSIFIER = OutputKind("annotate.py", "a qtype classifier folder", "qtype_classifier.json",
                              ("head.safetensors", "qtype_classifier.json", MARKER))
GOLD_STANDIN = OutputKind("train_reward_model.py", "a gold stand-in folder", "standin_info.json",
                          ("config.json", "model.safetensors", "standin_info.json", "generation_config.json", MARKER,
                           *TOKENIZER_FILES))
# A ladder folder holds one sub-folder per design besides its own files: its eval set marks it.
LADDER = OutputKind("design_ladder.py", "a design-ladder folder", "eval_set.json", ("*",))
CONVERTED_MODEL = OutputKind("offline_models", "a converted offline model", "config.json",
                             ("config.json", "model.safetensors", "generation_config.json", MARKER, *TOKENIZER_FILES))


def written_by(folder: str | Path) -> str | None:
    """The command named in `folder`'s marker; None without one (or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("written_by") if isinstance(record, dict) else None


def mark_dir(folder: str | Path, command: str) -> None:
    """Claim a folder for `command`: the marker goes in before its first file."""
    atomic_write(Path(folder) / MARKER, json.dumps({"written_by": command}) + "\n")


def describe(folder: Path) -> str:
    """What a folder holds, in a few words, for a refusal."""
    mark = written_by(folder)
    if mark is not None:
        return f"a folder written by {mark}"
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} not written by this project ({shown})"


def replaceable(flag: str | None, path: str | Path, kind: OutputKind) -> None:
    """`path` may be (re)written as `kind`: absent, an empty folder, or a folder `kind` wrote. Anything else is
    refused in one line that says what is there (naming `--flag` when a flag gave the path)."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return
    label = f"--{flag} {p}" if flag else str(p)
    if not p.is_dir():
        raise DataError(f"{label}: is a file, expected a folder for {kind.what}")
    if not any(p.iterdir()) or kind.owns(p):
        return
    raise DataError(f"{label}: holds {describe(p)}; it is not {kind.what}, so it is never replaced"
                    + (f": choose another --{flag}" if flag else ""))


def same_or_inside(inner: Path, outer: Path) -> bool:
    """`inner` is `outer` or lies inside it, after resolving links."""
    a, b = inner.resolve(), outer.resolve()
    return a == b or b in a.parents


def refuse_inputs(flag: str, path: str | Path | None, inputs: Mapping[str, str | Path | None],
                  folder: bool = False) -> None:
    """No output onto an input: the output file `path` is none of `inputs` ({flag: path}); an output folder that
    may be replaced or deleted (`folder`) holds none of them. Adding a new, named file inside an input folder
    (a checkpoint's outputs file) stays allowed."""
    if path is None:
        return
    out = Path(path)
    for in_flag, value in inputs.items():
        if value is None or not Path(value).exists():
            continue  # a hub name, or nothing there yet
        inp = Path(value)
        if out.resolve() == inp.resolve():
            raise DataError(f"--{flag} {out}: is also --{in_flag}; a command never writes onto its own input: "
                            f"choose another --{flag}")
        if folder and same_or_inside(inp, out):
            raise DataError(f"--{flag} {out}: holds --{in_flag} {inp}, which replacing it would delete: "
                            f"choose another --{flag}")


def check_output_file(flag: str, path: str | Path, owns: Callable[[Path], bool], what: str) -> None:
    """An output file may replace only a file of its own kind (`owns`: by name and content); anything else at
    `path` is refused in one line."""
    p = Path(path)
    if p.is_file() and not owns(p):
        raise DataError(f"--{flag} {p}: holds a file that is not {what}; it is never replaced: choose another --{flag}")


def check_outputs_in(flag: str, folder: str | Path, outputs: Mapping[str, tuple[Callable[[Path], bool], str]],
                     inputs: Mapping[str, str | Path | None]) -> None:
    """The named files a command writes into `folder` ({name: (recogniser, what it is)}): none is one of
    `inputs`, and each replaces only a file of its own kind."""
    for name, (owns, what) in outputs.items():
        path = Path(folder) / name
        refuse_inputs(flag, path, inputs)
        check_output_file(flag, path, owns, what)


def json_rows_with(*keys: str) -> Callable[[Path], bool]:
    """A recogniser for `check_output_file`: the file is a JSON list of objects that each hold `keys` (the
    content type of a command's per-row output)."""
    def owns(path: Path) -> bool:
        try:
            rows = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            return False
        return isinstance(rows, list) and all(isinstance(r, dict) and all(k in r for k in keys) for r in rows)
    return owns


def json_object_with(*keys: str) -> Callable[[Path], bool]:
    """A recogniser for `check_output_file`: the file is a JSON object holding `keys`."""
    def owns(path: Path) -> bool:
        try:
            obj = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            return False
        return isinstance(obj, dict) and all(k in obj for k in keys)
    return owns


def png_file(path: Path) -> bool:
    """A recogniser for `check_output_file`: the file is a PNG image (a figure the project saved)."""
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def remove_own(path: Path, kind: OutputKind) -> None:
    """Delete a folder `kind` wrote (and only such a folder)."""
    if path.exists():
        replaceable(None, path, kind)
        shutil.rmtree(path)


@contextlib.contextmanager
def atomic_dir(final: str | Path, kind: OutputKind) -> Iterator[Path]:
    """Build a folder of `kind` under its temporary name; on success it replaces `final` (only when `final` is
    absent, empty or `kind`'s own), on failure it is removed."""
    final, tmp = Path(final), partial_path(final)
    replaceable(None, final, kind)
    if tmp.exists():
        remove_own(tmp, kind)
    tmp.mkdir(parents=True)
    mark_dir(tmp, kind.command)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final, kind)


def new_partial_dir(final: str | Path, kind: OutputKind) -> Path:
    """The temporary folder a collective save (several processes write into it) is built in, marked for `kind`;
    `replace_dir` renames it into place."""
    tmp = partial_path(final)
    if tmp.exists():
        remove_own(tmp, kind)
    tmp.mkdir(parents=True)
    mark_dir(tmp, kind.command)
    return tmp


def replace_dir(tmp: Path, final: Path, kind: OutputKind) -> None:
    """Rename a finished temporary folder to `final`, replacing an older `final` of the same kind (moved aside
    first, so a kill between the two renames leaves the old one to `clean_partials`)."""
    if written_by(tmp) is None:
        mark_dir(tmp, kind.command)
    if final.exists():
        replaceable(None, final, kind)
        old = final.with_name(f"{PARTIAL_PREFIX}old-{final.name}")
        if old.exists():
            remove_own(old, kind)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def clean_partials(folder: str | Path, kind: OutputKind, *name_prefixes: str) -> list[Path]:
    """Tidy what a killed run left in `folder` for each of `name_prefixes`; returns what was removed.

    A replaced folder moved aside (`.partial-old-X`) whose `X` is missing was caught between replace_dir's two
    renames: it is the last complete version, so it is renamed back. Everything else (`.partial-X` being built,
    `.partial-old-X` beside a finished `X`) is removed when it is `kind`'s own (or empty); anything else under
    such a name is left where it is, with a note."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for prefix in name_prefixes:
        for p in folder.glob(f"{PARTIAL_PREFIX}old-{prefix}*"):
            final = p.with_name(p.name[len(f"{PARTIAL_PREFIX}old-"):])
            if not final.exists() and p.is_dir():
                p.rename(final)
                print(f"restored {final} (a replacement of it was interrupted)", file=sys.stderr)
    patterns = [f"{PARTIAL_PREFIX}{old}{prefix}*" for prefix in name_prefixes for old in ("", "old-")]
    for pattern in patterns:
        for p in folder.glob(pattern):
            if p.is_dir() and (not any(p.iterdir()) or kind.owns(p)):
                shutil.rmtree(p)
            elif p.is_dir():
                print(f"note: left {p}: {describe(p)}", file=sys.stderr)
                continue
            else:
                p.unlink()  # atomic_write's temporary file: ours by its name
            removed.append(p)
    return removed


def remove_trainer_leftovers(trl_dir: Path) -> list[Path]:
    """TRL's `checkpoint-N` folders inside a run's own `trl` folder: a save killed before run_grpo.py renamed it
    (the project's by their name and place). Returns what was removed."""
    leftovers = sorted(trl_dir.glob("checkpoint-*")) if trl_dir.is_dir() else []
    for p in leftovers:
        shutil.rmtree(p)
    return leftovers


def remove_file(path: str | Path) -> None:
    """Delete one of the project's own temporary files (a `.partial` work file), if it is there."""
    Path(path).unlink(missing_ok=True)


def move_file(tmp: str | Path, final: str | Path) -> None:
    """A finished temporary file the project wrote, renamed over `final` (a file of the project's own, by name)."""
    os.replace(tmp, final)


def write_probe(folder: Path) -> str | None:
    """Create and remove a probe file in `folder`; the system's reason when that fails, else None."""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(name)
    return None


@contextlib.contextmanager
def created_folder(out_dir: Path) -> Iterator[None]:
    """Create `out_dir` for the run; if the run fails and this run created it, an empty folder is not left behind
    (a folder that holds a partial file stays, so the next run resumes)."""
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in created:  # innermost first; stops at the first that is not empty
            if any(p.iterdir()):
                break
            p.rmdir()
        raise

