"""Hostile inputs: every CLI checks its flags and files before any expensive work, and fails in one line.

Each case runs a CLI's `main(argv)` in this process, with the working folder a fresh tmp_path holding only the
case's fixtures, and asserts: exit code 2; stderr is one line, `error: ...` naming the flag or file (for an unknown
flag: argparse's usage error, its last line "unrecognized arguments"); no traceback; and nothing created (no
folder, no partial file). To add a case, append a `Case` to CASES: the CLI as a module name, argv with `{root}`
for the repository and paths relative to the case's folder, and the fixtures it needs (`make({...})`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # train_reward_model, summarize_run

Fixture = dict[str, str | bytes | None]  # relative path -> file content (None: a folder)


def make(spec: Fixture) -> Callable[[Path], None]:
    """Fixtures of a case: files (text or bytes) and folders (None), created in the case's folder."""
    def build(root: Path) -> None:
        for rel, content in spec.items():
            p = root / rel
            if content is None:
                p.mkdir(parents=True, exist_ok=True)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
    return build


def safetensors_bytes(truncate: int = 0) -> bytes:
    """A one-tensor safetensors file (4 float32 values), optionally missing its last `truncate` bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    blob = len(header).to_bytes(8, "little") + header + bytes(16)
    return blob[:len(blob) - truncate]


ANNOTATIONS = json.dumps([
    {"input": "Name a fruit.", "output": "An apple.", "qtype": "CONSTRAINED"},
    {"input": "Write a poem about rain.", "output": "Rain taps the roof all night.", "qtype": "OPENENDED"},
    {"input": "Suggest a weekend hobby.", "output": "Try hiking with friends.", "qtype": "OPENENDED"},
])
MODEL = {"model/config.json": "{}"}  # passes the folder check (config.json); nothing here loads it
ADAPTER = {**MODEL, "adapter/adapter_config.json": '{"peft_type": "LORA"}',
           "adapter/adapter_model.safetensors": safetensors_bytes()}
A_FILE = {"afile": "a regular file: nothing can be created under it, not even by root"}
SCORE = ("--annotations_path", "ann.json", "--relevance_scaling=false")  # no encoder loads
SCORE_FIXTURES = {"ann.json": ANNOTATIONS}
EVAL_DATA = ("--eval_path", "{root}/data/eval.json", "--superni_dir", "{root}/data/superni-fixture")  # not the paper's
MONO_EVAL = ("--eval_path", "{root}/data/eval.json")  # the default is the paper's data/alpaca_eval.json
MONO = ("--output_dir", ".", "--gold_model", "model", "--relevance_model=minilm", *MONO_EVAL)
TRAIN_DATA = ("--data_path", "{root}/data/train.json")
MONO_STEP = {"p_step_1/alpaca-eval-p_step_1.json": "[]"}
PPO = ("--dataset_path", "{root}/data/train.json", "--dev_prompt_path", "{root}/data/dev.json", "--output_dir", "run",
       "--relevance_model=minilm")
GRPO = ("--dataset_path", "{root}/data/train.json", "--output_dir", "run", "--relevance_model=minilm")


@dataclass(frozen=True)
class Case:
    id: str
    module: str  # imported; its main(argv) is called
    argv: tuple[str, ...]  # "{root}" is the repository; other paths are relative to the case's folder
    expect: str  # in the error line
    setup: Callable[[Path], None] = field(default=make({}))
    usage: bool = False  # an argparse usage error ("unrecognized arguments"), not an `error:` line
    needs_non_root: bool = False  # a read-only folder stops only a non-root user


CASES = [
    # --- evaluation.py ------------------------------------------------------------------------------------
    Case("eval-base-missing", "evaluation", (*EVAL_DATA, "--base_model_name", "./no_model"),
         "--base_model_name ./no_model: no such folder"),
    Case("eval-base-no-config", "evaluation", (*EVAL_DATA, "--base_model_name", "model"), "no config.json", make({"model": None})),
    Case("eval-base-is-file", "evaluation", (*EVAL_DATA, "--base_model_name", "afile"), "is a file", make(A_FILE)),
    Case("eval-base-unloadable", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--evaluations", "alpaca",
                                                "--output_dir", "out"), "--base_model_name model: cannot load it",
         make(MODEL)),
    Case("eval-adapter-missing", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--peft_model_name", "nope"),
         "--peft_model_name nope: no such folder", make(MODEL)),
    Case("eval-adapter-no-weights", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--peft_model_name", "adapter"),
         "no adapter_model.safetensors", make({**MODEL, "adapter/adapter_config.json": "{}"})),
    Case("eval-adapter-truncated", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--peft_model_name", "adapter"),
         "adapter_model.safetensors: truncated",
         make({**ADAPTER, "adapter/adapter_model.safetensors": safetensors_bytes(truncate=5)})),
    Case("eval-adapter-corrupt-config", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--peft_model_name", "adapter"),
         "adapter_config.json: not valid JSON", make({**ADAPTER, "adapter/adapter_config.json": '{"peft_type": '})),
    Case("eval-batch-size-0", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--batch_size=0"),
         "--batch_size must be > 0"),
    Case("eval-max-new-tokens-0", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--max_new_tokens", "0"),
         "--max_new_tokens must be > 0"),
    Case("eval-bogus-evaluations", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--evaluations", "alpaca", "mmlu"),
         "--evaluations must be one of alpaca, superni; got 'mmlu'"),
    Case("eval-bogus-prompt-format", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--prompt_format", "vicuna"),
         "--prompt_format must be one of"),
    Case("eval-bogus-precision", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--precision", "fp8"), "--precision=fp8"),
    Case("eval-eval-path-is-folder", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--eval_path", "eval.json"),
         "--eval_path eval.json: is a folder", make({**MODEL, "eval.json": None})),
    Case("eval-output-dir-under-file", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--evaluations", "alpaca",
                                                      "--output_dir", "afile/out"), "--output_dir afile/out",
         make({**MODEL, **A_FILE})),
    Case("eval-unknown-flag", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--temprature", "0.5"), "", usage=True),
    # --- score_outputs.py ---------------------------------------------------------------------------------
    Case("score-batch-size-0", "score_outputs", (*SCORE, "--batch_size", "0"), "--batch_size must be > 0",
         make(SCORE_FIXTURES)),
    Case("score-bogus-prompt-format", "score_outputs", (*SCORE, "--prompt_format", "vicuna"),
         "--prompt_format must be one of alpaca, chat; got 'vicuna'", make(SCORE_FIXTURES)),
    Case("score-annotations-missing", "score_outputs", ("--annotations_path", "nope.json"),
         "--annotations_path nope.json: no such file"),
    Case("score-annotations-is-folder", "score_outputs", ("--annotations_path", "ann.json"),
         "--annotations_path ann.json: is a folder", make({"ann.json": None})),
    Case("score-annotations-one-object", "score_outputs", (*SCORE,), "ann.json: holds a single JSON object",
         make({"ann.json": json.dumps(json.loads(ANNOTATIONS)[0], indent=2)})),
    Case("score-annotations-empty", "score_outputs", (*SCORE,), "ann.json: empty file", make({"ann.json": ""})),
    Case("score-annotations-not-utf8", "score_outputs", (*SCORE,), "ann.json: line 1: not valid UTF-8",
         make({"ann.json": b'[{"input": "caf\xe9", "output": "b", "qtype": "OPENENDED"}]'})),
    Case("score-outputs-missing", "score_outputs", (*SCORE, "--outputs_path", "outputs.json"),
         "--outputs_path outputs.json: no such file", make(SCORE_FIXTURES)),
    Case("score-save-path-under-file", "score_outputs", (*SCORE, "--save_path", "afile/out.json"),
         "--save_path afile/out.json", make({**SCORE_FIXTURES, **A_FILE})),
    Case("score-save-path-read-only", "score_outputs", (*SCORE, "--save_path", "ro/out.json"),
         "--save_path ro/out.json: folder is not writable", make({**SCORE_FIXTURES, "ro": None}),
         needs_non_root=True),
    Case("score-features-import-fails", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "--features_module feat.py: importing it failed: ZeroDivisionError",
         make({**SCORE_FIXTURES, "feat.py": "x = 1 / 0\n"})),
    Case("score-features-syntax-error", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "--features_module feat.py: importing it failed: SyntaxError",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {\n"})),
    Case("score-features-no-extra", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "--features_module feat.py: defines no EXTRA_FEATURES", make({**SCORE_FIXTURES, "feat.py": "X = 1\n"})),
    Case("score-features-not-a-dict", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "EXTRA_FEATURES must be a non-empty dict", make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = [len]\n"})),
    Case("score-features-missing", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "--features_module feat.py: no such file", make(SCORE_FIXTURES)),
    Case("score-feature-raises", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "feature 'rainy' raised on sample 1: ZeroDivisionError",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'rainy': lambda s: 1 / 0 if 'rain' in s.query "
                                            "else 1.0}\n"})),
    Case("score-feature-not-a-number", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "feature 'label' returned str on sample 0, expected a number",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'label': lambda s: 'long'}\n"})),
    Case("score-run-dir-missing", "score_outputs", (*SCORE, "--run_dir", "run"), "--run_dir run: no such folder",
         make(SCORE_FIXTURES)),
    Case("score-reward-flag", "score_outputs", (*SCORE, "--max_sequence_length", "0"),
         "--max_sequence_length must be > 0", make(SCORE_FIXTURES)),
    Case("score-relevance-model-missing", "score_outputs", ("--annotations_path", "ann.json", "--relevance_model",
                                                            "./encoder"), "--relevance_model ./encoder: no such folder",
         make(SCORE_FIXTURES)),
    Case("score-unknown-flag", "score_outputs", (*SCORE, "--feature_module", "feat.py"), "", make(SCORE_FIXTURES),
         usage=True),
    # --- eval_monotonicity.py -----------------------------------------------------------------------------
    Case("mono-output-dir-missing", "eval_monotonicity", (*MONO_EVAL, "--output_dir", "runs/x", "--gold_model", "model"),
         "--output_dir runs/x: no such folder", make(MODEL)),
    Case("mono-output-dir-is-file", "eval_monotonicity", (*MONO_EVAL, "--output_dir", "afile", "--gold_model", "model"),
         "--output_dir afile: is a file, expected a folder", make({**MODEL, **A_FILE})),
    Case("mono-gold-missing", "eval_monotonicity", (*MONO_EVAL, "--output_dir", ".", "--gold_model", "./gold"),
         "--gold_model ./gold: no such folder"),
    Case("mono-gold-no-config", "eval_monotonicity", (*MONO_EVAL, "--output_dir", ".", "--gold_model", "gold"),
         "--gold_model gold: folder has no config.json", make({"gold": None})),
    Case("mono-gold-tokenizer-missing", "eval_monotonicity", (*MONO, "--gold_tokenizer", "./tok"),
         "--gold_tokenizer ./tok: no such folder", make(MODEL)),
    Case("mono-bogus-gold-type", "eval_monotonicity", (*MONO, "--gold_type", "oracle"),
         "--gold_type must be one of starling, classifier; got 'oracle'", make(MODEL)),
    Case("mono-one-checkpoint", "eval_monotonicity", (*MONO, "--model_prefix", "p"), "a correlation needs at least 2",
         make({**MODEL, **MONO_STEP})),
    Case("mono-missing-step", "eval_monotonicity", (*MONO, "--model_prefix", "p", "--steps", "1", "7"),
         "--steps: checkpoint folder(s) not found", make({**MODEL, **MONO_STEP})),
    Case("mono-features-not-a-dict", "eval_monotonicity", (*MONO, "--features_module", "feat.py"),
         "--features_module feat.py: EXTRA_FEATURES must be", make({**MODEL, "feat.py": "EXTRA_FEATURES = 3\n"})),
    Case("mono-unknown-flag", "eval_monotonicity", (*MONO, "--gold_modle", "x"), "", make(MODEL), usage=True),
    # --- prescreen.py -------------------------------------------------------------------------------------
    Case("prescreen-no-gold", "prescreen", ("--systems", "a", "b"), "no gold: pass --gold_model"),
    Case("prescreen-gold-csv-missing", "prescreen", ("--systems", "a", "b", "--gold_csv", "lb.csv"),
         "--gold_csv lb.csv: no such file"),
    Case("prescreen-output-dir-under-file", "prescreen", ("--systems", "a", "b", "--gold_csv", "lb.csv",
                                                          "--output_dir", "afile/out"), "--output_dir afile/out",
         make({**A_FILE, "lb.csv": "a,1\nb,2\n"})),
    Case("prescreen-features-import-fails", "prescreen", ("--systems", "a", "b", "--gold_csv", "lb.csv",
                                                          "--features_module", "feat.py"),
         "--features_module feat.py: importing it failed: NameError",
         make({"lb.csv": "a,1\nb,2\n", "feat.py": "EXTRA_FEATURES = {'x': undefined_name}\n"})),
    Case("prescreen-unknown-flag", "prescreen", ("--systems", "a", "b", "--gold_cvs", "lb.csv"), "", usage=True),
    # --- scripts/train_reward_model.py --------------------------------------------------------------------
    Case("trm-output-under-file", "train_reward_model", (*TRAIN_DATA, "--output_dir", "afile/rm"),
         "--output_dir afile/rm", make(A_FILE)),
    Case("trm-model-missing", "train_reward_model", (*TRAIN_DATA, "--model_name", "./base"),
         "--model_name ./base: no such folder"),
    Case("trm-pairs-missing", "train_reward_model", ("--pairs_path", "prefs.jsonl"),
         "--pairs_path prefs.jsonl: no such file"),
    Case("trm-batch-size-0", "train_reward_model", (*TRAIN_DATA, "--batch_size", "0"), "--batch_size=0"),
    Case("trm-unknown-flag", "train_reward_model", (*TRAIN_DATA, "--epochz", "2"), "", usage=True),
    # --- offline_models.py --------------------------------------------------------------------------------
    Case("offline-cache-under-file", "rre.offline_models", ("--cache_dir", "afile/cache"), "--cache_dir afile/cache",
         make(A_FILE)),
    Case("offline-unknown-flag", "rre.offline_models", ("--cachedir", "x"), "", usage=True),
    # --- scripts/summarize_run.py -------------------------------------------------------------------------
    Case("summary-run-dir-missing", "summarize_run", ("--run_dir", "runs/q"), "--run_dir runs/q: no such folder"),
    Case("summary-artefact-missing", "summarize_run", ("--run_dir", "run"), "run/monotonicity.json is missing",
         make({"run": None})),
    Case("summary-artefact-corrupt", "summarize_run", ("--run_dir", "run"), "run/monotonicity.json: not valid JSON",
         make({"run/monotonicity.json": '{"steps": [1, 2'})),
    # --- run_ppo.py -----------------------------------------------------------------------------------------
    Case("ppo-model-missing", "run_ppo", (*PPO, "--model_name", "./no_model"), "--model_name ./no_model: no such folder"),
    Case("ppo-model-no-config", "run_ppo", (*PPO, "--model_name", "empty"), "--model_name empty: folder has no config.json",
         make({"empty": None})),
    Case("ppo-dataset-missing", "run_ppo", (*PPO, "--dataset_path", "nope.json"), "--dataset_path nope.json: no such file"),
    Case("ppo-dataset-is-folder", "run_ppo", (*PPO, "--dataset_path", "d.json"), "--dataset_path d.json: is a folder",
         make({"d.json": None})),
    Case("ppo-dev-missing", "run_ppo", (*PPO, "--dev_prompt_path", "dev.json"), "--dev_prompt_path dev.json: no such file"),
    Case("ppo-save-freq-negative", "run_ppo", (*PPO, "--save_freq=-1"), "--save_freq must be >= 0, got -1"),
    Case("ppo-steps-negative", "run_ppo", (*PPO, "--overall_steps=-5"), "--overall_steps must be >= 0"),
    Case("ppo-lora-r-0", "run_ppo", (*PPO, "--lora_r=0"), "--lora_r must be > 0"),
    Case("ppo-batch-not-multiple", "run_ppo", (*PPO, "--batch_size=5", "--mini_batch_size=2"), "batch_size (5)"),
    Case("ppo-bogus-log-with", "run_ppo", (*PPO, "--log_with=mlflow"), "--log_with must be one of tensorboard, wandb, none"),
    Case("ppo-bogus-precision", "run_ppo", (*PPO, "--mixed_precision=fp8"), "--mixed_precision must be one of"),
    Case("ppo-output-dir-under-file", "run_ppo", (*PPO, "--output_dir", "afile/run"), "afile is a file", make(A_FILE)),
    Case("ppo-resume-not-a-checkpoint", "run_ppo", (*PPO, "--resume_from_checkpoint", "old"),
         "--resume_from_checkpoint old: not a complete checkpoint", make({"old/adapter_config.json": "{}"})),
    Case("ppo-features-no-extra", "run_ppo", (*PPO, "--features_module", "feat.py"), "defines no EXTRA_FEATURES",
         make({"feat.py": "FEATURES = {}\n"})),
    Case("ppo-relevance-model-missing", "run_ppo", (*PPO, "--relevance_model", "./enc"), "--relevance_model ./enc: no such"),
    Case("ppo-unknown-flag", "run_ppo", (*PPO, "--overal_steps=3"), "", usage=True),
    # --- run_grpo.py ----------------------------------------------------------------------------------------
    Case("grpo-model-missing", "run_grpo", (*GRPO, "--model_name", "./no_model"), "--model_name ./no_model: no such folder"),
    Case("grpo-dataset-missing", "run_grpo", (*GRPO, "--dataset_path", "nope.json"), "--dataset_path nope.json: no such"),
    Case("grpo-one-generation", "run_grpo", (*GRPO, "--num_generations=1"), "--num_generations must be >= 2"),
    Case("grpo-save-freq-negative", "run_grpo", (*GRPO, "--save_freq=-1"), "--save_freq must be >= 0"),
    Case("grpo-output-dir-under-file", "run_grpo", (*GRPO, "--output_dir", "afile/g"), "afile is a file", make(A_FILE)),
    Case("grpo-resume-not-a-checkpoint", "run_grpo", (*GRPO, "--resume_from_checkpoint", "old"),
         "--resume_from_checkpoint old: not a", make({"old": None})),
    Case("grpo-unknown-flag", "run_grpo", (*GRPO, "--num_generation=4"), "", usage=True),
]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def run_case(case: Case, tmp_path: Path, monkeypatch, capsys) -> tuple[int, list[str]]:
    """Run the case's CLI in this process; returns (exit code, non-empty stderr lines). Asserts nothing changed
    in the case's folder."""
    module = importlib.import_module(case.module)  # import warnings, if any, are not the CLI's output
    case.setup(tmp_path)
    before = listing(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    argv = [a.replace("{root}", str(ROOT)) for a in case.argv]
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert listing(tmp_path) == before, "the failed run created or removed something"
    return exit_info.value.code, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder; the case under a regular file covers root")
    code, err = run_case(case, tmp_path, monkeypatch, capsys)
    assert code == 2, err
    assert not any("Traceback" in line for line in err), err
    if case.usage:
        assert err[0].startswith("usage:") and "unrecognized arguments" in err[-1], err
    else:
        assert len(err) == 1, err
        assert err[0].startswith("error: ") and case.expect in err[0], err


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------------------------------------
# Outputs: valid JSON, normal permissions.


def strict_json(text: str):
    def refuse(name: str):
        raise ValueError(f"bare {name} in the JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_score_outputs_writes_nan_as_null_with_one_warning(tmp_path, monkeypatch, capsys, umask_022):
    import score_outputs

    make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'odd': lambda s: float('nan') if 'rain' in s.query "
                                       "else 1.0}\n"})(tmp_path)
    monkeypatch.chdir(tmp_path)
    score_outputs.main([*SCORE, "--features_module", "feat.py", "--save_path", "out/features.json"])
    err = capsys.readouterr().err
    rows = strict_json((tmp_path / "out" / "features.json").read_text())
    assert [r["odd"] for r in rows] == [1.0, None, 1.0]
    assert all(r["QR"] is None and r["RAR"] is None for r in rows)  # not computed: null, without a warning
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 non-finite value(s)" in warnings[0] and "features.json" in warnings[0]
    assert (tmp_path / "out" / "features.json").stat().st_mode & 0o777 == 0o644
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name != "features.json"]  # no temporary left


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


def test_a_feature_error_names_the_sample_of_the_file_not_of_its_batch():
    from reward_model import ReversedEngineeredRewardForInference, RewardConfig
    from rre.data import DataError, Example

    rer = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False),
                                               extra_features={"bad": lambda s: 1 / 0 if s.query == "q2" else 1.0})
    with pytest.raises(DataError, match="feature 'bad' raised on sample 2: ZeroDivisionError"):
        rer.score_examples([Example(f"q{i}") for i in range(4)], ["an answer"] * 4, batch_size=1, progress=False)


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
