"""Checks every CLI runs on its flags before any expensive work (a model load, scoring, training).

Each check raises DataError with one line naming the flag or file and what was expected; the scripts print
it as `error: ...` and exit with code 2 (`errors.exit_on_data_error`). A check leaves nothing behind: an output
folder that does not exist yet is fine when a probe file can be created (and is removed at once) in its nearest
existing parent. Trying beats asking: `os.access` says yes for root on /proc, /sys and read-only mounts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from rre.errors import DataError
from rre.files import read_json, safetensors_header, write_probe

# A hub name: `name` or `owner/name`, no path syntax. Anything else that does not exist is a missing folder.
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def parse_flags(dataclass_types: Sequence[type], argv: Sequence[str] | None, description: str | None = None):
    """HfArgumentParser, except that unknown flags give argparse's one-line usage error (exit 2), not a
    ValueError traceback."""
    from transformers import HfArgumentParser

    # No abbreviations: a mistyped prefix such as --num_generation would silently set --num_generations.
    parser = HfArgumentParser(tuple(dataclass_types), description=description, allow_abbrev=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(parsed)


# --- numbers and choices ---------------------------------------------------------------------------------


# Float flags where +infinity means "off", as in the libraries they come from (TRL's ratio_threshold, target_kl).
INFINITY_MEANS_OFF = ("ratio_threshold", "target_kl")


def finite_flags(*parsed: Any) -> None:
    """Every float flag of the parsed dataclasses is a finite number: `--learning_rate=nan` or `--rar_max_dot=inf`
    passes every comparison a check makes (NaN compares false), so it is refused here, by type, for every flag of
    every script. Only the flags of INFINITY_MEANS_OFF may be +inf."""
    for obj in parsed:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, float) and not math.isfinite(v):
                    if v == math.inf and f.name in INFINITY_MEANS_OFF:
                        continue
                    raise DataError(f"--{f.name} must be a finite number, got {v}")


SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; torch takes more, but a run seeds both from one flag


def seed(flag: str, value: int | None, processes: int = 1) -> None:
    """A seed numpy and torch both accept: 0 to 2**32-1 (a negative one crashes only after the model loads). With
    several `processes`, each seeding `value + rank`, the last one's seed must be accepted too."""
    if value is None:
        return
    if not 0 <= value <= SEED_MAX:
        raise DataError(f"--{flag} {value}: a seed must be within 0..{SEED_MAX} (what numpy and torch accept)")
    if value + processes - 1 > SEED_MAX:
        raise DataError(f"--{flag} {value}: with {processes} processes, each seeding --{flag} + its rank, the seeds "
                        f"reach {value + processes - 1}; a seed must be within 0..{SEED_MAX}")


def range_flags(*parsed: Any) -> None:
    """By name, for every flag of the parsed dataclasses (a field added later is covered too): every `*seed` is a
    seed numpy and torch accept, every `*batch_size` is positive (None: its default)."""
    for obj in parsed:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            if f.name.endswith("seed"):
                seed(f.name, value)
            elif f.name.endswith("batch_size"):
                positive(f.name, value)


def positive(flag: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise DataError(f"--{flag} must be > 0, got {value}")


def non_negative(flag: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0:
        raise DataError(f"--{flag} must be >= 0, got {value}")


def one_of(flag: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise DataError(f"--{flag} must be one of {', '.join(map(str, choices))}; got {value!r}")


def note_without(given: Iterable[str], needed: str, active: bool) -> None:
    """One note per flag in `given` (the flags the user typed) that has no effect unless `needed` is on."""
    if not active:
        for flag in sorted(given):
            print(f"note: --{flag} has no effect without {needed}", file=sys.stderr)


# --- files and folders -----------------------------------------------------------------------------------


NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems


def name_lengths(flag: str, path: str | os.PathLike) -> None:
    """Every component of `path` fits a file system's name limit (255 bytes): a longer one fails only when the
    file is opened, after the work that was to go into it, with an OSError naming no flag."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise DataError(f"--{flag} {path}: the name {part[:40]}... is {size} bytes; a file system allows "
                            f"{NAME_MAX} bytes per name")


def input_file(flag: str, path: str | os.PathLike) -> Path:
    """An existing, readable file."""
    name_lengths(flag, path)
    p = Path(path)
    if not p.exists():
        raise DataError(f"--{flag} {p}: no such file")
    if p.is_dir():
        raise DataError(f"--{flag} {p}: is a folder, expected a file")
    if not os.access(p, os.R_OK):
        raise DataError(f"--{flag} {p}: not readable")
    return p


def input_data(flag: str, path: str | os.PathLike) -> None:
    """A data file (JSON/JSONL), or anything else `datasets.load_dataset` reads (a dataset folder, a hub name)."""
    name_lengths(flag, path)
    p = Path(path)
    if p.suffix.lower() in (".json", ".jsonl"):
        input_file(flag, p)
    elif not p.exists() and not HUB_NAME.fullmatch(str(path)):
        raise DataError(f"--{flag} {p}: no such file or folder")


def input_folder(flag: str, path: str | os.PathLike) -> Path:
    name_lengths(flag, path)
    p = Path(path)
    if not p.exists():
        raise DataError(f"--{flag} {p}: no such folder")
    if not p.is_dir():
        raise DataError(f"--{flag} {p}: is a file, expected a folder")
    return p


def _nearest_existing(p: Path) -> Path:
    """The path itself or its nearest existing parent, as given (relative paths stay relative: messages read as
    the flag was typed; "." always exists)."""
    while not p.exists():
        p = p.parent
    return p


def output_folder(flag: str, path: str | os.PathLike, must_exist: bool = False) -> Path:
    """A folder the script may create or write into."""
    name_lengths(flag, path)
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise DataError(f"--{flag} {p}: is a file, expected a folder")
        reason = write_probe(p)
        if reason:
            raise DataError(f"--{flag} {p}: folder is not writable ({reason})")
        return p
    if must_exist:
        raise DataError(f"--{flag} {p}: no such folder")
    _creatable(flag, p, p, "folder")
    return p


def _creatable(flag: str, p: Path, below: Path, what: str) -> None:
    """`p` can be created: the nearest existing folder above `below` is a writable folder."""
    base = _nearest_existing(below)
    if not base.is_dir():
        raise DataError(f"--{flag} {p}: {base} is a file, so the {what} cannot be created")
    reason = write_probe(base)
    if reason:
        raise DataError(f"--{flag} {p}: cannot be created ({base} is not writable: {reason})")



def output_file(flag: str, path: str | os.PathLike) -> Path:
    """A file the script may create or replace."""
    name_lengths(flag, path)
    p = Path(path)
    if p.is_dir():
        raise DataError(f"--{flag} {p}: is a folder, expected a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise DataError(f"--{flag} {p}: file is not writable")
    _creatable(flag, p, p.parent, "file")
    return p


def output_prefix(flag: str, prefix: str | os.PathLike) -> None:
    """A checkpoint prefix `{prefix}_step_N`: its parent folder must be creatable, and the checkpoints' names fit."""
    run = Path(str(prefix).rstrip("/"))
    output_folder(flag, run)  # the run folder; its checkpoints go beside it
    size = len(os.fsencode(f"{run.name}_step_")) + 10  # a step number of up to 10 digits
    if size > NAME_MAX:
        raise DataError(f"--{flag} {prefix}: its checkpoint folders {run.name[:40]}..._step_N would be names of up "
                        f"to {size} bytes; a file system allows {NAME_MAX} bytes per name")


# --- models ----------------------------------------------------------------------------------------------


def model(flag: str, name: str, cache_dir: str | None = None, marker: str = "config.json",
          offline_cache: bool = True) -> None:
    """A local model folder holding `marker`, or a hub name (which, offline, must be in the hub cache unless
    `offline_cache` is False: for a model loaded only when needed, such as a gold whose scores are cached)."""
    name_lengths(flag, name)
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise DataError(f"--{flag} {name}: is a file, expected a model folder")
        if not (p / marker).is_file():
            raise DataError(f"--{flag} {name}: folder has no {marker}, so it is not a saved model")
        return
    if not HUB_NAME.fullmatch(name) or name.startswith(".") or "/." in name:
        raise DataError(f"--{flag} {name}: no such folder")
    if offline_cache and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, marker, cache_dir=cache_dir), str):
            raise DataError(f"--{flag} {name}: no such folder, and not in the hub cache (HF_HUB_OFFLINE=1)")


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")  # where configs state the context


def model_context(name: str | os.PathLike | None) -> tuple[int, str] | None:
    """(context length in tokens, where it is stated) from a local model folder's config.json, read before any
    weights load; None for a hub name, a folder not there yet, or a config that states none (the load checks
    apply to those)."""
    if not name:
        return None
    config_path = Path(name).expanduser() / "config.json"
    if not config_path.is_file():
        return None
    config = read_json(config_path)
    for key in CONTEXT_KEYS:
        n = config.get(key)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n, f"{key} in {config_path}"
    return None


Length = int | tuple[int, str] | None


def fits_context(model_flag: str, model_name: str | os.PathLike | None, lengths: dict[str, Length],
                 prompt_room: int = 0) -> None:
    """The token lengths (flag -> value, or (value, how it was set)) together fit the model's context, plus
    `prompt_room` tokens for a prompt whose length no flag bounds. A longer setting does not fail: it allocates
    caches and position tables for tokens the model has no positions for, until the machine runs out of memory."""
    found = model_context(model_name)
    if found is None:
        return
    context, source = found
    given = {k: v if isinstance(v, tuple) else (v, "") for k, v in lengths.items() if v is not None}
    total = sum(v for v, _ in given.values()) + prompt_room
    if total <= context:
        return
    what = " + ".join(f"--{k} {v}{f' ({how})' if how else ''}" for k, (v, how) in given.items())
    if prompt_room:
        what += f" + at least {prompt_room} prompt token"
    raise DataError(f"{what}: {total} tokens, beyond the context of --{model_flag} {model_name} ({context} tokens: "
                    f"{source})")


def adapter(flag: str, path: str) -> None:
    """A LoRA adapter folder: a readable adapter_config.json and a complete adapter_model.safetensors."""
    p = input_folder(flag, path)
    cfg = p / "adapter_config.json"
    if not cfg.is_file():
        raise DataError(f"--{flag} {p}: no adapter_config.json, so it is not a LoRA adapter folder")
    read_json(cfg, f"--{flag}")
    safetensors_file(flag, p / "adapter_model.safetensors")


def safetensors_file(flag: str, path: Path) -> None:
    """A safetensors file whose header is intact and whose tensors all lie inside the file (a truncated copy
    fails here, before any model is loaded)."""
    if not path.is_file():
        raise DataError(f"--{flag} {path.parent}: no {path.name}")
    size = path.stat().st_size
    n, meta = safetensors_header(path)
    tensors = [t for k, t in meta.items() if k != "__metadata__"] if meta is not None else None
    if tensors is None or not all(isinstance(t, dict) and isinstance(t.get("data_offsets"), list)
                                  and len(t["data_offsets"]) == 2 and all(type(o) is int for o in t["data_offsets"])
                                  for t in tensors):
        raise DataError(f"--{flag} {path}: not a safetensors file (unreadable header)")
    end = max((t["data_offsets"][1] for t in tensors), default=0)
    if 8 + n + end > size:
        raise DataError(f"--{flag} {path}: truncated ({size} bytes; its header needs {8 + n + end})")


# --- the reward's flags ----------------------------------------------------------------------------------


def training_paths(args: Any) -> None:
    """The model, data and output flags run_ppo.py and run_grpo.py share (same names, the paper's)."""
    if args.model_name:
        model("model_name", args.model_name, args.cache_dir)
    if args.tokenizer_name:
        model("tokenizer_name", args.tokenizer_name, args.cache_dir, marker="tokenizer_config.json")
    if args.cache_dir:
        output_folder("cache_dir", args.cache_dir)
    input_data("dataset_path", args.dataset_path)
    output_prefix("output_dir", args.output_dir)
    if args.logging_dir:
        output_folder("logging_dir", args.logging_dir)


# --- which flags were given ------------------------------------------------------------------------------
# The one reading of a command line's flags. HfArgumentParser accepts, for a field `x_y`: `--x_y`, `--x-y`,
# each as `--x_y v` or `--x_y=v`, and for a bool that defaults to True also `--no_x_y` / `--no-x-y`.
# Every "was this flag given?" question in the project is answered here, so no spelling is missed.


def flag_name(token: str) -> str | None:
    """The field a command-line token names (`--rar-max-dot=1.0` -> `rar_max_dot`); None for a value."""
    if not token.startswith("--") or token == "--":
        return None
    return token[2:].split("=", 1)[0].replace("-", "_")


def given_flags(argv: Sequence[str], names: Iterable[str]) -> set[str]:
    """Which of `names` appear in argv, in any spelling the parsers accept (`--no_x` counts as giving `x`)."""
    names = set(names)
    found: set[str] = set()
    for token in argv:
        name = flag_name(token)
        if name is None:
            continue
        if name in names:
            found.add(name)
        elif name.startswith("no_") and name[3:] in names:
            found.add(name[3:])
    return found


def flag_given(argv: Sequence[str], name: str) -> bool:
    return bool(given_flags(argv, [name]))


def merge_repeated_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """`--gold_model a --gold-model b` -> `--gold_model a b`: argparse's nargs='+' would keep only the last one.
    `flags` are field names (`gold_model`; a leading `--` is ignored); any spelling of them is merged."""
    names = {f.lstrip("-").replace("-", "_") for f in flags}
    merged: dict[str, list[str]] = {}
    rest: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        name = flag_name(argv[i])
        if name in names:
            _, eq, value = argv[i].partition("=")
            values = [value] if eq else []
            i += 1
            while not eq and i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            merged.setdefault(name, []).extend(values)
            continue
        rest.append(argv[i])
        i += 1
    for name, values in merged.items():
        rest += [f"--{name}", *values]
    return rest
