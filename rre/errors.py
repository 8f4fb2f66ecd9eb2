"""The project's error type and how a failure becomes one line.

DataError is every fault a user can fix (a bad flag, file, record or field, a folder that does not load): its
message is one complete line naming the flag or file. Scripts wrap their work in `exit_on_data_error`, which prints
`error: ...` on stderr and exits with code 2, with no traceback.

Every model, tokenizer and adapter load goes through `load_errors`: a folder that passes the checks of
validation.py but does not load (only a config.json, an unknown architecture, a tokenizer that needs a package
that is not installed, an adapter for another base model) ends in one line naming the flag and the folder. Any
exception of the load becomes that line: the loaders (transformers, peft, tokenizers, sentencepiece, safetensors)
raise many kinds (OSError, ValueError, KeyError, ImportError, AttributeError, TypeError...), and a load has no
failure a user should read as a traceback. Interrupts and memory errors are not caught.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


class DataError(ValueError):
    """Bad input data; the message is a complete one-line explanation."""


@contextlib.contextmanager
def exit_on_data_error() -> Iterator[None]:
    """Turn a DataError into one line on stderr and exit code 2, with no traceback."""
    try:
        yield
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


@contextlib.contextmanager
def load_errors(flag: str, name: str, hint: str = "") -> Iterator[None]:
    """Turn any failure of the load inside into `--{flag} {name}: cannot load it (Kind: first line)[; hint]`. A
    `flag` with a space is a description of a source no flag named (`the policy tokenizer`), used as it is."""
    label = flag if " " in flag else f"--{flag}"
    try:
        yield
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # any load failure: one line naming the flag (see the module docstring)
        if type(err).__name__ == "OutOfMemoryError":  # torch.cuda: not a bad folder
            raise
        raise DataError(f"{label} {name}: cannot load it ({type(err).__name__}: {first_line(err)})"
                        + (f"; {hint}" if hint else "")) from None
