"""The proxy a run trained with, written once at training time and read back by every check.

Training (run_ppo.py, and any trainer that writes the same `training_config.json`) records under "proxy"
everything that changes a proxy score: the reward flags, the response-cleaning stop strings of its prompt
format, and the features module. eval_monotonicity.py and score_outputs.py rebuild exactly that proxy from it,
so no setting has to be typed twice; a flag given explicitly there overrides it and is printed as an override.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from rre.files import file_sha256, read_json, require_key, write_json
from rre.errors import DataError

TRAINING_CONFIG = "training_config.json"
# RewardConfig fields that change a score (batch size and device do not).
PROXY_FIELDS = ("length_incentive", "repetition_penalty", "relevance_scaling", "reward_branching", "do_strip",
                "response_postprocess", "max_sequence_length", "rar_max_dot", "relevance_model",
                "relevance_model_type", "reward_dtype")
# Flags that select the proxy; when given, they override what the run's training_config.json records.
PROXY_FLAGS = (*PROXY_FIELDS, "prompt_format", "tokenizer_name", "features_module")




def proxy_settings(config: Any, prompt_format: str, stop_strings: Sequence[str],
                   features_module: str | None) -> dict[str, Any]:
    """The "proxy" record of a training config; `config` is reward_model.RewardConfig."""
    return {"reward": {k: getattr(config, k) for k in PROXY_FIELDS}, "prompt_format": prompt_format,
            "stop_strings": list(stop_strings),
            "features_module": str(Path(features_module).resolve()) if features_module else None,
            "features_module_sha256": file_sha256(features_module) if features_module else None}


def write_training_config(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` (which should carry a "proxy" entry) as folder/training_config.json, atomically."""
    path = Path(folder) / TRAINING_CONFIG
    write_json(path, record)
    return path


def read_proxy(path: Path) -> dict[str, Any] | None:
    """The "proxy" entry of a training_config.json, None when the file has none. A record that is
    there but broken (a missing or mistyped field) is one line naming the file and the field."""
    record = read_json(path)
    if record.get("proxy") is None:
        return None
    where = f"{path}: proxy"
    proxy = require_key(record, "proxy", str(path), dict)
    require_key(proxy, "reward", where, dict)
    require_key(proxy, "prompt_format", where, str)
    stops = require_key(proxy, "stop_strings", where, list)
    if not all(isinstance(s, str) for s in stops):
        raise DataError(f"{where}: field 'stop_strings': expected a list of strings")
    if proxy.get("features_module") is not None:
        require_key(proxy, "features_module", where, str)
    return proxy


def recorded_features_module(proxy: dict[str, Any], source: Path) -> str | None:
    """The features module a run trained with, which must still exist: said as the run's record, not as a flag."""
    module = proxy.get("features_module")
    if module and not Path(module).is_file():
        raise DataError(f"{source}: the run's features module {module} no longer exists; restore it or pass "
                        "--features_module")
    return module


def find_run_proxy(run_folder: Path, checkpoint_folders: Sequence[Path]) -> tuple[dict[str, Any] | None, Path | None]:
    """The proxy the checkpoints were trained with: every checkpoint's copy (and the run folder's file) must
    agree; a disagreement is an error naming both files. (None, None) when no file records one."""
    found = [(p, read_proxy(p)) for p in [*(f / TRAINING_CONFIG for f in checkpoint_folders),
                                          run_folder / TRAINING_CONFIG] if p.is_file()]
    found = [(p, s) for p, s in found if s is not None]
    if not found:
        return None, None
    first_path, first = found[0]
    for path, settings in found[1:]:
        if settings != first:
            diff = sorted(k for k in set(first["reward"]) | set(settings["reward"])
                          if first["reward"].get(k) != settings["reward"].get(k))
            diff += [k for k in ("prompt_format", "stop_strings", "features_module", "features_module_sha256")
                     if first.get(k) != settings.get(k)]
            raise DataError(f"{first_path} and {path} record different proxy settings ({', '.join(diff)}): "
                            "these checkpoints were not trained with one reward; pass --steps to pick one run")
    return first, first_path


def apply_proxy(settings: dict[str, Any], config: Any, explicit: set[str]) -> tuple[Any, list[str]]:
    """The trained RewardConfig, with the explicitly given flags kept from `config`. Returns it and one
    'name: trained -> given' line per override."""
    trained = {k: v for k, v in settings["reward"].items() if k in PROXY_FIELDS}
    if "relevance_model" in trained and trained["relevance_model"] is None:
        trained["relevance_model"] = "minilm"  # runs before the Contriever default recorded the offline MiniLM as None
    given = asdict(config)
    overrides = [f"{k}: {trained[k]!r} (trained) -> {given[k]!r}" for k in sorted(explicit & set(trained))
                 if trained[k] != given[k]]
    return replace(config, **{k: v for k, v in trained.items() if k not in explicit}), overrides


@dataclass
class ScoringProxy:
    """The proxy a check scores with: the run's recorded one (or the flags' when none is recorded), explicit flags
    overriding it. The caller builds `ReversedEngineeredRewardForInference` from it (reward_model.trained_proxy)."""

    config: Any  # reward_model.RewardConfig
    prompt_format: str
    stop_strings: tuple[str, ...]
    features_module: str | None
    source: Path | None  # the training_config.json it came from
    overrides: list[str]  # 'name: trained -> given' per override
    notes: list[str]  # what the caller should know (the features module changed since training)

    def record(self) -> dict[str, Any]:
        """Where each setting came from, for the check's JSON."""
        return {"source": str(self.source) if self.source else None, "overrides": self.overrides,
                "reward": {k: getattr(self.config, k) for k in PROXY_FIELDS}, "prompt_format": self.prompt_format,
                "stop_strings": list(self.stop_strings), "features_module": self.features_module,
                "features_module_sha256": file_sha256(self.features_module) if self.features_module else None}


def scoring_proxy(settings: dict[str, Any] | None, source: Path | None, config: Any, explicit: set[str],
                  features_module: str | None, format_from_flags: Callable[[], tuple[str, tuple[str, ...]]]
                  ) -> ScoringProxy:
    """The recorded proxy `settings` (from `source`), with the `explicit` flags kept from `config`,
    `features_module` (the flag) and `format_from_flags()` (prompt format name and stop strings the flags give,
    called only when needed). The run's features module must still exist; its sha256 is compared with the
    recorded one, and a change is a note (scored with its current content)."""
    if settings is None:
        name, stops = format_from_flags()
        return ScoringProxy(config, name, tuple(stops), features_module, None, [], [])
    config, overrides = apply_proxy(settings, config, explicit)
    if explicit & {"prompt_format", "tokenizer_name"}:
        name, stops = format_from_flags()
        if tuple(stops) != tuple(settings["stop_strings"]):
            overrides.append(f"stop_strings: {settings['stop_strings']!r} (trained) -> {list(stops)!r}")
    else:
        name, stops = settings["prompt_format"], tuple(settings["stop_strings"])
    trained_module, notes = settings.get("features_module"), []
    if "features_module" in explicit:
        if features_module != trained_module:
            overrides.append(f"features_module: {trained_module!r} (trained) -> {features_module!r}")
    else:
        features_module = recorded_features_module(settings, source)
        if features_module and file_sha256(features_module) != settings.get("features_module_sha256"):
            notes.append(f"note: {features_module} changed since training; scoring with its current content")
    return ScoringProxy(config, name, tuple(stops), features_module, source, overrides, notes)
