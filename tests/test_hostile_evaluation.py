"""Hostile inputs to evaluation.py: its model and adapter folders, the eval sets, its numbers and names, what a
failing or replaced run leaves. The runner and shared fixtures: hostile.py."""

from __future__ import annotations

import json

import pytest
from hostile import (
    ADAPTER,
    ALPACA_EVAL_SET,
    ANNOTATIONS,
    A_FILE,
    BOTH_EVAL_SETS,
    MODEL,
    Case,
    Fixture,
    assert_fails_in_one_line,
    case_ids,
    listing,
    make,
    safetensors_bytes,
    strict_json,
)


def superni_checkout(tasks: dict[str, str | bytes]) -> Fixture:
    return {"sn/splits/default/test_tasks.txt": "\n".join(tasks) + "\n",
            **{f"sn/tasks/{name}.json": text for name, text in tasks.items()}}


CASES = [
    Case("eval-base-missing", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "./no_model"),
         "--base_model_name ./no_model: no such folder"),
    Case("eval-base-no-config", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model"), "no config.json", make({"model": None})),
    Case("eval-base-is-file", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "afile"), "is a file", make(A_FILE)),
    Case("eval-base-unloadable", "evaluation", (*ALPACA_EVAL_SET, "--base_model_name", "model", "--evaluations", "alpaca",
                                                "--output_dir", "out"), "--base_model_name model: cannot load it",
         make(MODEL)),
    Case("eval-adapter-missing", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--peft_model_name", "nope"),
         "--peft_model_name nope: no such folder", make(MODEL)),
    Case("eval-adapter-no-weights", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--peft_model_name", "adapter"),
         "no adapter_model.safetensors", make({**MODEL, "adapter/adapter_config.json": "{}"})),
    Case("eval-adapter-truncated", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--peft_model_name", "adapter"),
         "adapter_model.safetensors: truncated",
         make({**ADAPTER, "adapter/adapter_model.safetensors": safetensors_bytes(truncate=5)})),
    Case("eval-adapter-corrupt-config", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--peft_model_name", "adapter"),
         "adapter_config.json: not valid JSON", make({**ADAPTER, "adapter/adapter_config.json": '{"peft_type": '})),
    Case("eval-batch-size-0", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--batch_size=0"),
         "--batch_size must be > 0"),
    Case("eval-max-new-tokens-0", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--max_new_tokens", "0"),
         "--max_new_tokens must be > 0"),
    Case("eval-bogus-evaluations", "evaluation", (*ALPACA_EVAL_SET, "--base_model_name", "model", "--evaluations", "alpaca", "mmlu"),
         "--evaluations must be one of alpaca, superni; got 'mmlu'"),
    Case("eval-bogus-prompt-format", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--prompt_format", "vicuna"),
         "--prompt_format must be one of"),
    Case("eval-bogus-precision", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--precision", "fp8"), "--precision=fp8"),
    Case("eval-eval-path-is-folder", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--eval_path", "eval.json"),
         "--eval_path eval.json: is a folder", make({**MODEL, "eval.json": None})),
    Case("eval-output-dir-under-file", "evaluation", (*ALPACA_EVAL_SET, "--base_model_name", "model", "--evaluations", "alpaca",
                                                      "--output_dir", "afile/out"), "--output_dir afile/out",
         make({**MODEL, **A_FILE})),
    Case("eval-unknown-flag", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--temprature", "0.5"), "", usage=True),
    Case("eval-superni-task-not-json", "evaluation", ("--base_model_name", "model", "--evaluations", "superni",
                                                       "--superni_dir", "sn"), "SuperNI task sn/tasks/t1.json: not valid JSON",
         make({**MODEL, **superni_checkout({"t1": '{"Definition": ['})})),
    Case("eval-superni-task-not-utf8", "evaluation", ("--base_model_name", "model", "--evaluations", "superni",
                                                       "--superni_dir", "sn"), "sn/tasks/t1.json: line 1: not valid UTF-8",
         make({**MODEL, **superni_checkout({"t1": b'{"Definition": ["caf\xe9"]}'})})),
    Case("eval-adapter-config-not-utf8", "evaluation", ("--base_model_name", "model", "--peft_model_name", "adapter"),
         "--peft_model_name adapter/adapter_config.json: line 1: not valid UTF-8",
         make({**ADAPTER, "adapter/adapter_config.json": b'{"peft_type": "\xff"}'})),
    Case("eval-temperature-nan", "evaluation", ("--base_model_name", "model", "--temperature=nan"),
         "--temperature must be a finite number, got nan", make(MODEL)),
    Case("eval-overwrite-base-unloadable", "evaluation", (*ALPACA_EVAL_SET, "--base_model_name", "model", "--evaluations", "alpaca",
                                                          "--output_dir", "out", "--overwrite=true"),
         "--base_model_name model: cannot load it", make({**MODEL, "out/alpaca-eval-model.json": "[]"})),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)


def test_evaluation_final_json_is_0644_and_leaves_no_partial(tmp_path, tiny_llama_dir, monkeypatch, umask_022):
    import evaluation

    (tmp_path / "eval.json").write_text(ANNOTATIONS)
    monkeypatch.chdir(tmp_path)
    evaluation.main(["--base_model_name", tiny_llama_dir, "--evaluations", "alpaca", "--eval_path", "eval.json",
                     "--output_dir", "out", "--max_new_tokens", "2", "--batch_size", "3", "--precision", "float32"])
    (final,) = (tmp_path / "out").iterdir()
    assert final.name.startswith("alpaca-eval-") and final.suffix == ".json"
    assert final.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    records = strict_json(final.read_text())
    assert len(records) == 3 and all(isinstance(r["output"], str) for r in records)


def test_evaluation_failing_mid_run_leaves_no_empty_folder_or_partial(tmp_path, tiny_llama_dir, monkeypatch):
    """The model loads, then the first batch fails (out of memory, a kill): nothing is left behind, so the next
    run does not find an empty folder or an empty partial file."""
    import evaluation

    def fail(*args, **kwargs):
        raise MemoryError("planted")

    (tmp_path / "eval.json").write_text(ANNOTATIONS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluation, "generate_responses", fail)
    with pytest.raises(MemoryError):
        evaluation.main(["--base_model_name", tiny_llama_dir, "--evaluations", "alpaca", "--eval_path", "eval.json",
                         "--output_dir", "runs/out", "--precision", "float32"])
    assert listing(tmp_path) == ["eval.json"]


def test_overwrite_keeps_the_old_result_when_the_replacement_fails(tmp_path, tiny_llama_dir, monkeypatch):
    """evaluation.py --overwrite: the finished alpaca-eval-*.json stays, byte for byte, until its replacement is
    complete; a run that fails between (the model loads, then generation raises) leaves it as it was."""
    import evaluation

    (tmp_path / "eval.json").write_text(ANNOTATIONS)
    monkeypatch.chdir(tmp_path)
    flags = ["--base_model_name", tiny_llama_dir, "--evaluations", "alpaca", "--eval_path", "eval.json",
             "--output_dir", "out", "--max_new_tokens", "2", "--batch_size", "2", "--precision", "float32"]
    evaluation.main(flags)
    (final,) = (tmp_path / "out").iterdir()
    old = final.read_bytes()

    def fail(*args, on_batch=None, **kwargs):
        on_batch([0, 1], ["half", "done"])  # one batch answered, then the run dies
        raise MemoryError("planted")

    monkeypatch.setattr(evaluation, "generate_responses", fail)
    with pytest.raises(MemoryError):
        evaluation.main([*flags, "--overwrite=true"])
    assert final.read_bytes() == old
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    evaluation.main([*flags, "--overwrite=true", "--seed", "7"])  # the replacement, once complete, replaces it
    assert [p.name for p in (tmp_path / "out").iterdir()] == [final.name]
    assert len(json.loads(final.read_text())) == 3


def test_overwrite_with_an_unloadable_base_keeps_the_old_result(tmp_path, monkeypatch, capsys):
    import evaluation

    make({**MODEL, "out/alpaca-eval-model.json": '[{"instruction": "x", "output": "kept"}]'})(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main(["--base_model_name", "model", "--evaluations", "alpaca", "--output_dir", "out",
                         "--overwrite=true"])
    assert exit_info.value.code == 2
    assert json.loads((tmp_path / "out" / "alpaca-eval-model.json").read_text())[0]["output"] == "kept"
