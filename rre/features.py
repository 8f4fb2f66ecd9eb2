"""The contract of a researcher's own white-box features: `EXTRA_FEATURES = {name: fn(sample)}` and an
optional `combine(features) -> reward` in a Python file given by `--features_module`.

Their code is called through `user_number`, so whatever it raises or returns instead of a number becomes one
line naming the feature and the sample, in training as in scoring.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rre.errors import DataError

# A white-box feature: a function of one sample's cleaned response and its context.
FeatureFn = Callable[["Sample"], float]
# Names the reward itself gives its features (and score_outputs.py's --save_path its columns): a researcher's
# feature of the same name would replace one silently, so such a name is refused at load.
BUILTIN_FEATURES = ("LI", "RP", "QR", "RAR", "qtype", "branch", "paper_reward", "reward")
RESERVED_NAMES = (*BUILTIN_FEATURES, "instruction", "output")
# A combination rule: the sample's feature values (LI, RP, QR, RAR, qtype, paper_reward, your features) -> reward.
CombineFn = Callable[[dict], float]


@dataclass(frozen=True)
class Sample:
    query: str
    response: str  # cleaned when do_strip is on
    reference: str
    qtype: str | None
    tokens: tuple[str, ...]


def user_number(fn: Callable, arg: Any, what: str, index: int) -> float:
    """Call a researcher's feature (or `combine`): what it raises or returns instead of a number becomes one
    line naming it and the sample's index in the batch."""
    try:
        value = fn(arg)
    except Exception as err:  # their code: report it as theirs, then stop
        raise DataError(f"{what} raised on sample {index}: {type(err).__name__}: {err}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy / torch scalars
        except (TypeError, ValueError):
            raise DataError(f"{what} returned {type(value).__name__} on sample {index}, expected a number") from None
    return float(value)


def load_features_module(path: str, flag: str = "features_module") -> tuple[dict[str, FeatureFn], CombineFn | None]:
    """Import a researcher's feature file: `EXTRA_FEATURES = {name: fn(sample)}` and optionally `combine(f)`.
    It is their own code, run as any script they write would be; a file that breaks the contract stops here,
    in one line, before any model loads."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--{flag} {path}: " + ("is a folder, expected a Python file" if p.is_dir() else "no such file"))
    spec = importlib.util.spec_from_file_location(p.stem, p)
    if spec is None or spec.loader is None:
        raise DataError(f"--{flag} {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ beside their file: it is edited between runs, and a run writes nothing it was not asked to.
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's module: report where it broke, in one line
        raise DataError(f"--{flag} {path}: importing it failed: {type(err).__name__}: {err}") from None
    finally:
        sys.dont_write_bytecode = write_bytecode
    if not hasattr(module, "EXTRA_FEATURES"):
        raise DataError(f"--{flag} {path}: defines no EXTRA_FEATURES (a dict of name -> function(sample))")
    features = module.EXTRA_FEATURES
    if not isinstance(features, dict) or not features:
        raise DataError(f"--{flag} {path}: EXTRA_FEATURES must be a non-empty dict of name -> function(sample), "
                        f"got {type(features).__name__}")
    for name, fn in features.items():
        if not isinstance(name, str) or not callable(fn):
            raise DataError(f"--{flag} {path}: EXTRA_FEATURES[{name!r}] must be a function of one sample")
    check_feature_names(features, f"--{flag} {path}")
    combine = getattr(module, "combine", None)
    if combine is not None and not callable(combine):
        raise DataError(f"--{flag} {path}: combine must be a function of the feature dict")
    return features, combine


def check_feature_names(names: Any, where: str) -> None:
    """User feature names: not empty, not a built-in name (LI, reward...), not equal to one another when folded
    to one case (columns and plots would mix them up). Two prescreen designs may share a feature name: that is
    one feature, combined two ways."""
    seen: dict[str, str] = {}
    for name in names:
        if not name.strip():
            raise DataError(f"{where}: EXTRA_FEATURES has an empty name")
        clash = [b for b in RESERVED_NAMES if b.casefold() == name.casefold()]
        if clash:
            raise DataError(f"{where}: feature name {name!r} is taken by the built-in {clash[0]!r}; rename it")
        if name.casefold() in seen:
            raise DataError(f"{where}: feature names {seen[name.casefold()]!r} and {name!r} differ only in case")
        seen[name.casefold()] = name


def check_features_module(flag: str, path: str | None) -> None:
    """Import the researcher's feature file now, so a broken one stops the run before any model loads."""
    if path:
        load_features_module(path, flag)


