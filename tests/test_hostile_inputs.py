"""Hostile inputs across the commands: the battery as a whole (one table per command, in test_hostile_<command>.py),
and what every command shares: a flag without effect says so, a byte-order mark is accepted, every float flag is
checked for finiteness, every load failure is one line. The runner and shared fixtures: hostile.py."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from hostile import ANNOTATIONS, MODEL, make

# The cases the per-command tables hold together: a change that drops one fails here (raise it with new cases).
BATTERY_SIZE = 142


def battery_tables() -> dict[str, list]:
    """Each test_hostile_<command>.py file's CASES (test_hostile_ranges.py is a battery of its own)."""
    modules = [importlib.import_module(path.stem) for path in sorted(Path(__file__).parent.glob("test_hostile_*.py"))
               if path.stem != "test_hostile_ranges"]
    return {module.__name__: module.CASES for module in modules if hasattr(module, "CASES")}


def test_the_table_is_large_and_names_are_unique():
    tables = battery_tables()
    cases = [case for table in tables.values() for case in table]
    assert len(tables) >= 10 and len(cases) >= BATTERY_SIZE and len({c.id for c in cases}) == len(cases)
    for name, table in tables.items():  # each file holds one command's cases
        assert len({c.module for c in table}) == 1, name


@pytest.mark.parametrize("module,argv,note", [
    ("evaluation", ("--base_model_name", "model", "--evaluations", "superni", "--temperature", "0.5",
                    "--batch_size=0"), "note: --temperature has no effect without --evaluations alpaca"),
    ("evaluation", ("--base_model_name", "model", "--evaluations", "alpaca", "--superni_max_instances", "5",
                    "--batch_size=0"), "note: --superni_max_instances has no effect without --evaluations superni"),
    ("train_reward_model", ("--pairs_path", "prefs.jsonl", "--pairs_per_example", "3"),
     "note: --pairs_per_example has no effect without an empty --pairs_path"),
])
def test_a_flag_without_effect_says_so_in_one_line(module, argv, note, tmp_path, monkeypatch, capsys):
    make(MODEL)(tmp_path)
    command = importlib.import_module(module)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        command.main(list(argv))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(note) and err[-1].startswith("error: "), err


def test_a_byte_order_mark_is_accepted_everywhere(tmp_path):
    """Files saved by an editor that writes a UTF-8 byte-order mark: JSON, JSONL, a gold CSV."""
    import prescreen
    from rre.data import load_examples
    from rre.files import read_json

    bom = "\ufeff"
    (tmp_path / "a.json").write_text(bom + ANNOTATIONS, encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(bom + "\n".join(json.dumps(r) for r in json.loads(ANNOTATIONS)), encoding="utf-8")
    (tmp_path / "c.json").write_text(bom + '{"proxy": null}', encoding="utf-8")
    (tmp_path / "lb.csv").write_text(bom + "system,score\nsa,1.5\nsb,2\n", encoding="utf-8")
    assert len(load_examples(tmp_path / "a.json")) == len(load_examples(tmp_path / "a.jsonl")) == 3
    assert read_json(tmp_path / "c.json") == {"proxy": None}
    assert prescreen.read_gold_csv(str(tmp_path / "lb.csv"), ["sa", "sb"]) == {"sa": 1.5, "sb": 2.0}


def test_every_float_flag_of_every_script_is_checked_for_finiteness():
    """By type, not by a list: each dataclass float field refuses NaN (a field added later is covered too)."""
    import dataclasses

    import train_reward_model

    import eval_monotonicity
    import evaluation
    import prescreen
    import run_grpo
    import run_ppo
    import score_outputs
    from reward_model import RewardConfig
    from rre import validation
    from rre.errors import DataError
    from rre.ppo import PPOConfig

    classes = [evaluation.EvalArguments, eval_monotonicity.MonotonicityArguments, prescreen.PrescreenArguments,
               run_grpo.ScriptArguments, run_grpo.TRLArguments, run_ppo.ScriptArguments, PPOConfig, RewardConfig,
               score_outputs.ScoreArguments, train_reward_model.TrainRewardModelConfig]
    checked = 0
    for cls in classes:
        for f in dataclasses.fields(cls):
            if "float" not in str(f.type):
                continue
            obj = cls.__new__(cls)
            for g in dataclasses.fields(cls):
                object.__setattr__(obj, g.name, None)
            object.__setattr__(obj, f.name, float("nan"))
            with pytest.raises(DataError, match=f"--{f.name} must be a finite number"):
                validation.finite_flags(obj)
            checked += 1
    assert checked >= 25


def test_any_load_failure_is_one_line_naming_the_flag():
    from rre.errors import DataError
    from rre.errors import load_errors

    for err in (ImportError("needs sentencepiece"), AttributeError("no attribute 'x'"), TypeError("bad"),
                KeyError("llama9"), OSError("no file")):
        with pytest.raises(DataError, match=rf"--model_name m: cannot load it \({type(err).__name__}: "):
            with load_errors("model_name", "m"):
                raise err
    with pytest.raises(MemoryError):  # not a bad folder
        with load_errors("model_name", "m"):
            raise MemoryError
