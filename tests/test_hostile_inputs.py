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
# The offline eval sets (the defaults are the paper's data/alpaca_eval.json and data/natural-instructions).
ALPACA_DATA = ("--eval_path", "{root}/data/eval.json")
EVAL_DATA = (*ALPACA_DATA, "--superni_dir", "{root}/data/superni-fixture")
MONO_EVAL = ("--eval_path", "{root}/data/eval.json")  # the default is the paper's data/alpaca_eval.json
MONO = ("--output_dir", ".", "--gold_model", "model", "--relevance_model=minilm", *MONO_EVAL)
TRAIN_DATA = ("--data_path", "{root}/data/train.json")
MONO_STEP = {"p_step_1/alpaca-eval-p_step_1.json": "[]"}
PPO = ("--dataset_path", "{root}/data/train.json", "--dev_prompt_path", "{root}/data/dev.json", "--output_dir", "run",
       "--relevance_model=minilm")
GRPO = ("--dataset_path", "{root}/data/train.json", "--output_dir", "run", "--relevance_model=minilm")


MONO_STEP_2 = {"p_step_2/alpaca-eval-p_step_2.json": "[]"}
TRM_MODEL = ("--model_name", "model")
PRESCREEN_CSV = ("--systems", "sa", "sb", "--gold_csv", "lb.csv")
PRESCREEN_SYSTEMS = {"sa/alpaca-eval-sa.json": "[]", "sb/alpaca-eval-sb.json": "[]"}


def ADAPTER_AT(folder: str) -> Fixture:  # noqa: N802  (a fixture table, named as the constants beside it)
    return {f"{folder}/adapter_config.json": '{"peft_type": "LORA"}',
            f"{folder}/adapter_model.safetensors": safetensors_bytes()}


def run_config(content: str | bytes) -> Fixture:
    return {"run/training_config.json": content}


def proxy_record(drop: str | None = None, **fields) -> str:
    """A training_config.json whose proxy record is whole except for `drop` and the given `fields`."""
    proxy = {"reward": {"relevance_scaling": False}, "prompt_format": "alpaca", "stop_strings": ["###"],
             "features_module": None, **fields}
    proxy.pop(drop, None)
    return json.dumps({"proxy": proxy})


def superni(tasks: dict[str, str | bytes]) -> Fixture:
    return {"sn/splits/default/test_tasks.txt": "\n".join(tasks) + "\n",
            **{f"sn/tasks/{name}.json": text for name, text in tasks.items()}}


def summary_run(mean_proxy=0.4, rouge=12.5, checkpoints=None) -> Fixture:
    """The three artefacts scripts/summarize_run.py reads, with one field planted."""
    rows = [{"step": 1, "mean_proxy": 0.3, "mean_gold": 0.1}, {"step": 2, "mean_proxy": mean_proxy, "mean_gold": 0.2}]
    mono = {"checkpoints": rows if checkpoints is None else checkpoints, "spearman": {"statistic": 1, "pvalue": 0},
            "kendall": {"statistic": 1, "pvalue": 0}}
    return {"run/monotonicity.json": json.dumps(mono),
            "run/policy_final/superni_eval.json": json.dumps({"rougeL": rouge, "n_instances": 1, "n_tasks": 1,
                                                                "superni_dir": "sn"}),
            "run/gold_standin/standin_info.json": json.dumps({"heldout": {"accuracy": 0.9}})}


def symlink_loop(root: Path) -> None:
    (root / "loop").symlink_to("loop2")
    (root / "loop2").symlink_to("loop")


@dataclass(frozen=True)
class Case:
    id: str
    module: str  # imported; its main(argv) is called
    argv: tuple[str, ...]  # "{root}" is the repository; other paths are relative to the case's folder
    expect: str  # in the error line
    setup: Callable[[Path], None] = field(default=make({}))
    usage: bool = False  # an argparse usage error ("unrecognized arguments"), not an `error:` line
    needs_non_root: bool = False  # a read-only folder stops only a non-root user
    after_progress: bool = False  # the failure comes after the script's progress lines (a model load): last line


CASES = [
    # --- evaluation.py ------------------------------------------------------------------------------------
    Case("eval-base-missing", "evaluation", (*EVAL_DATA, "--base_model_name", "./no_model"),
         "--base_model_name ./no_model: no such folder"),
    Case("eval-base-no-config", "evaluation", (*EVAL_DATA, "--base_model_name", "model"), "no config.json", make({"model": None})),
    Case("eval-base-is-file", "evaluation", (*EVAL_DATA, "--base_model_name", "afile"), "is a file", make(A_FILE)),
    Case("eval-base-unloadable", "evaluation", (*ALPACA_DATA, "--base_model_name", "model", "--evaluations", "alpaca",
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
    Case("eval-bogus-evaluations", "evaluation", (*ALPACA_DATA, "--base_model_name", "model", "--evaluations", "alpaca", "mmlu"),
         "--evaluations must be one of alpaca, superni; got 'mmlu'"),
    Case("eval-bogus-prompt-format", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--prompt_format", "vicuna"),
         "--prompt_format must be one of"),
    Case("eval-bogus-precision", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--precision", "fp8"), "--precision=fp8"),
    Case("eval-eval-path-is-folder", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--eval_path", "eval.json"),
         "--eval_path eval.json: is a folder", make({**MODEL, "eval.json": None})),
    Case("eval-output-dir-under-file", "evaluation", (*ALPACA_DATA, "--base_model_name", "model", "--evaluations", "alpaca",
                                                      "--output_dir", "afile/out"), "--output_dir afile/out",
         make({**MODEL, **A_FILE})),
    Case("eval-unknown-flag", "evaluation", (*EVAL_DATA, "--base_model_name", "model", "--temprature", "0.5"), "", usage=True),
    # --- score_outputs.py ---------------------------------------------------------------------------------
    Case("score-batch-size-0", "score_outputs", (*SCORE, "--batch_size", "0"), "--batch_size must be > 0",
         make(SCORE_FIXTURES)),
    Case("score-bogus-prompt-format", "score_outputs", (*SCORE, "--prompt_format", "vicuna"),
         "--prompt_format must be one of alpaca, chat, vicuna_v1.1, llama-2, tulu, zephyr, almost; got 'vicuna'",
         make(SCORE_FIXTURES)),
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
    Case("mono-one-checkpoint", "eval_monotonicity", (*MONO, "--model_prefix", "p", "--all_steps"),
         "a correlation needs at least 2",
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
    # A pseudo-filesystem: os.access says yes for root there; the write probe fails.
    Case("trm-output-dir-on-proc", "train_reward_model", (*TRAIN_DATA, "--output_dir", "/proc/rre-test/rm"),
         "--output_dir /proc/rre-test/rm: cannot be created (/proc is not writable"),
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
    Case("ppo-output-dir-on-proc", "run_ppo", (*PPO, "--output_dir", "/proc/rre-test/run"),
         "--output_dir /proc/rre-test/run: cannot be created (/proc is not writable"),
    Case("ppo-output-dir-on-sys", "run_ppo", (*PPO, "--output_dir", "/sys/rre-test"),
         "--output_dir /sys/rre-test: cannot be created (/sys is not writable"),
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
    # =====================================================================================================
    # Round 2 (issue 24): the run's own files, numbers that are not numbers, names that clash, models that do
    # not load, silence.
    # --- the project's own records, read by rre/records.py ------------------------------------------------
    Case("score-run-config-not-utf8", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: line 1: not valid UTF-8", make({**SCORE_FIXTURES, **run_config(b'{"proxy": "\xff"}')})),
    Case("score-run-config-not-json", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: not valid JSON (line 1", make({**SCORE_FIXTURES, **run_config('{"proxy": ')})),
    Case("score-run-config-bare-nan", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: bare NaN is not valid JSON",
         make({**SCORE_FIXTURES, **run_config('{"proxy": {"reward": {"rar_max_dot": NaN}}}')})),
    Case("score-run-config-a-list", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: expected a JSON object, got array", make({**SCORE_FIXTURES, **run_config("[]")})),
    Case("score-run-proxy-no-reward", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: proxy: field 'reward': missing",
         make({**SCORE_FIXTURES, **run_config(proxy_record(drop="reward"))})),
    Case("score-run-proxy-stops-not-list", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: proxy: field 'stop_strings': expected array, got string",
         make({**SCORE_FIXTURES, **run_config(proxy_record(stop_strings="###"))})),
    Case("score-run-proxy-not-object", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: field 'proxy': expected object, got integer",
         make({**SCORE_FIXTURES, **run_config('{"proxy": 3}')})),
    Case("score-run-features-module-gone", "score_outputs", (*SCORE, "--run_dir", "run"),
         "run/training_config.json: the run's features module /nonexistent/feat.py no longer exists",
         make({**SCORE_FIXTURES, **run_config(proxy_record(features_module="/nonexistent/feat.py"))})),
    Case("ppo-resume-state-not-json", "run_ppo", (*PPO, "--resume_from_checkpoint", "old"),
         "--resume_from_checkpoint old/training_state.json: not valid JSON",
         make({"old/training_state.json": "{", "old/state": None})),
    Case("ppo-resume-state-not-utf8", "run_ppo", (*PPO, "--resume_from_checkpoint", "old"),
         "old/training_state.json: line 1: not valid UTF-8", make({"old/training_state.json": b"\xfe{}", "old/state": None})),
    Case("trm-info-not-json", "train_reward_model", (*TRAIN_DATA, *TRM_MODEL, "--output_dir", "rm"),
         "rm/standin_info.json: not valid JSON", make({**MODEL, "rm/standin_info.json": '{"settings": {'})),
    Case("trm-info-no-settings", "train_reward_model", (*TRAIN_DATA, *TRM_MODEL, "--output_dir", "rm"),
         "rm/standin_info.json: field 'settings': missing", make({**MODEL, "rm/standin_info.json": "{}"})),
    Case("eval-superni-task-not-json", "evaluation", ("--base_model_name", "model", "--evaluations", "superni",
                                                       "--superni_dir", "sn"), "SuperNI task sn/tasks/t1.json: not valid JSON",
         make({**MODEL, **superni({"t1": '{"Definition": ['})})),
    Case("eval-superni-task-not-utf8", "evaluation", ("--base_model_name", "model", "--evaluations", "superni",
                                                       "--superni_dir", "sn"), "sn/tasks/t1.json: line 1: not valid UTF-8",
         make({**MODEL, **superni({"t1": b'{"Definition": ["caf\xe9"]}'})})),
    Case("eval-adapter-config-not-utf8", "evaluation", ("--base_model_name", "model", "--peft_model_name", "adapter"),
         "--peft_model_name adapter/adapter_config.json: line 1: not valid UTF-8",
         make({**ADAPTER, "adapter/adapter_config.json": b'{"peft_type": "\xff"}'})),
    Case("summary-number-is-a-string", "summarize_run", ("--run_dir", "run"),
         "checkpoints[1].mean_proxy: expected a number or null, got str", make(summary_run(mean_proxy="0.41"))),
    Case("summary-rouge-is-a-list", "summarize_run", ("--run_dir", "run"), "rougeL: expected a number or null, got list",
         make(summary_run(rouge=[1, 2]))),
    Case("summary-checkpoints-not-a-list", "summarize_run", ("--run_dir", "run"),
         "run/monotonicity.json: field 'checkpoints': expected array, got object", make(summary_run(checkpoints={}))),
    Case("summary-standin-info-not-utf8", "summarize_run", ("--run_dir", "run"),
         "standin_info.json: line 1: not valid UTF-8",
         make({**summary_run(), "run/gold_standin/standin_info.json": b"\xff\xfe"})),
    # --- numbers that are not numbers: every float flag, every number of a user file ----------------------
    Case("score-rar-max-dot-nan", "score_outputs", (*SCORE, "--rar_max_dot=nan"),
         "--rar_max_dot must be a finite number, got nan", make(SCORE_FIXTURES)),
    Case("score-rar-max-dot-inf", "score_outputs", (*SCORE, "--rar_max_dot=inf"),
         "--rar_max_dot must be a finite number, got inf", make(SCORE_FIXTURES)),
    Case("ppo-learning-rate-nan", "run_ppo", (*PPO, "--learning_rate=nan"), "--learning_rate must be a finite number"),
    Case("ppo-kl-coef-minus-inf", "run_ppo", (*PPO, "--init_kl_coef=-inf"), "--init_kl_coef must be a finite number"),
    Case("grpo-beta-nan", "run_grpo", (*GRPO, "--beta=nan"), "--beta must be a finite number, got nan"),
    Case("grpo-lora-dropout-inf", "run_grpo", (*GRPO, "--lora_dropout=inf"), "--lora_dropout must be a finite number"),
    Case("eval-temperature-nan", "evaluation", ("--base_model_name", "model", "--temperature=nan"),
         "--temperature must be a finite number, got nan", make(MODEL)),
    Case("trm-learning-rate-inf", "train_reward_model", (*TRAIN_DATA, "--learning_rate=inf"),
         "--learning_rate must be a finite number, got inf"),
    Case("trm-heldout-nan", "train_reward_model", (*TRAIN_DATA, "--heldout_fraction=nan"),
         "--heldout_fraction must be a finite number"),
    Case("mono-rar-max-dot-nan", "eval_monotonicity", (*MONO, "--rar_max_dot=nan"), "--rar_max_dot must be a finite",
         make(MODEL)),
    Case("prescreen-gold-csv-nan", "prescreen", (*PRESCREEN_CSV,), "row 2: score of 'b': 'nan' is not a finite number",
         make({"lb.csv": "a,1\nb,nan\n"})),
    Case("prescreen-gold-csv-inf", "prescreen", (*PRESCREEN_CSV,), "row 3: score of 'b': '-inf' is not a finite",
         make({"lb.csv": "system,score\na,1\nb,-inf\n"})),
    Case("prescreen-gold-csv-text-score", "prescreen", (*PRESCREEN_CSV,), "row 3: score of 'b': 'high' is not a number",
         make({"lb.csv": "system,score\na,1\nb,high\n"})),
    Case("prescreen-rar-max-dot-nan", "prescreen", (*PRESCREEN_CSV, "--rar_max_dot=nan"),
         "--rar_max_dot must be a finite number", make({"lb.csv": "a,1\nb,2\n"})),
    # --- names and duplicates -----------------------------------------------------------------------------
    Case("score-feature-named-LI", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "--features_module feat.py: feature name 'LI' is taken by the built-in 'LI'",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'LI': lambda s: 1.0}\n"})),
    Case("score-feature-named-reward-other-case", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "feature name 'Reward' is taken by the built-in 'reward'",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'Reward': lambda s: 1.0}\n"})),
    Case("score-feature-named-output", "score_outputs", (*SCORE, "--features_module", "feat.py"),
         "feature name 'output' is taken by the built-in 'output'",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'output': len}\n"})),
    Case("ppo-features-differ-in-case", "run_ppo", (*PPO, "--features_module", "feat.py"),
         "feature names 'words' and 'Words' differ only in case",
         make({"feat.py": "EXTRA_FEATURES = {'words': len, 'Words': len}\n"})),
    Case("grpo-feature-empty-name", "run_grpo", (*GRPO, "--features_module", "feat.py"),
         "EXTRA_FEATURES has an empty name", make({"feat.py": "EXTRA_FEATURES = {' ': len}\n"})),
    Case("prescreen-feature-named-QR", "prescreen", (*PRESCREEN_CSV, "--features_module", "feat.py"),
         "feature name 'QR' is taken by the built-in 'QR'",
         make({"lb.csv": "a,1\nb,2\n", "feat.py": "EXTRA_FEATURES = {'QR': len}\n"})),
    Case("prescreen-gold-csv-duplicate", "prescreen", (*PRESCREEN_CSV,),
         "row 3: system 'a' is listed twice (first on row 1)", make({"lb.csv": "a,1\nb,2\na,3\n"})),
    Case("prescreen-gold-csv-duplicate-spaced", "prescreen", (*PRESCREEN_CSV,),
         "row 2: system 'a' is listed twice", make({"lb.csv": "a,1\n a ,2\nb,3\n"})),
    Case("prescreen-gold-csv-not-utf8", "prescreen", (*PRESCREEN_CSV,), "lb.csv: line 2: not valid UTF-8",
         make({"lb.csv": b"a,1\nb\xe9,2\n"})),
    Case("prescreen-gold-csv-one-column", "prescreen", (*PRESCREEN_CSV,), "row 2: expected name,score",
         make({"lb.csv": "a,1\nb\n"})),
    # --- models that pass the folder check but do not load (rre/loading.py) -------------------------------
    Case("ppo-model-only-config", "run_ppo", (*PPO, "--model_name", "model"), "--model_name model: cannot load it",
         make(MODEL), after_progress=True),
    Case("grpo-model-only-config", "run_grpo", (*GRPO, "--model_name", "model"), "--model_name model: cannot load it",
         make(MODEL)),
    Case("trm-model-only-config", "train_reward_model", (*TRAIN_DATA, *TRM_MODEL, "--output_dir", "rm"),
         "--model_name model: cannot load it", make(MODEL)),
    Case("mono-policy-tokenizer-unloadable", "eval_monotonicity", (*MONO, "--model_prefix", "p", "--steps", "1", "2"),
         "the policy tokenizer model: cannot load it", make({**MODEL, **MONO_STEP, **MONO_STEP_2,
                                                           "p_step_1/adapter_config.json": '{"base_model_name_or_path": "model"}'})),
    Case("eval-overwrite-base-unloadable", "evaluation", (*ALPACA_DATA, "--base_model_name", "model", "--evaluations", "alpaca",
                                                          "--output_dir", "out", "--overwrite=true"),
         "--base_model_name model: cannot load it", make({**MODEL, "out/alpaca-eval-model.json": "[]"})),
    # --- silence: python -m rre.checkpoints finds nothing -------------------------------------------------
    Case("checkpoints-prefix-missing", "rre.checkpoints", ("runs/policy",),
         "no complete checkpoints runs/policy_step_N (folders with a LoRA adapter): runs: no such folder"),
    Case("checkpoints-under-a-file", "rre.checkpoints", ("afile/run/policy",), "afile/run: a part of it is a file",
         make(A_FILE)),
    Case("checkpoints-parent-is-a-file", "rre.checkpoints", ("afile/policy",), "afile is a file, not a folder",
         make(A_FILE)),
    Case("checkpoints-symlink-loop", "rre.checkpoints", ("loop/policy",), "loop: a symlink loop", symlink_loop),
    Case("checkpoints-none-named-so", "rre.checkpoints", ("run/policy",), "run holds no folder named policy_step_N",
         make({"run/other_step_1": None})),
    Case("checkpoints-unfinished", "rre.checkpoints", ("run/policy",), "1 folder(s) named so (policy_step_3) lack",
         make({"run/policy_step_3/adapter_config.json": "{}"})),
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
        if case.after_progress:
            assert not any(line.startswith("error:") for line in err[:-1]), err
            err = err[-1:]
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



# ---------------------------------------------------------------------------------------------------------
# Round 2 (issue 24): what the table above cannot say (a replacement that fails, notes, accepted BOMs, scripts).


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


def test_base_outputs_without_include_base_says_it_has_no_effect(tmp_path, monkeypatch, capsys):
    import eval_monotonicity

    make({**MODEL, **MONO_STEP, "base": None})(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        eval_monotonicity.main([*(a.replace("{root}", str(ROOT)) for a in MONO), "--model_prefix", "p",
                                "--base_outputs", "base", "--all_steps"])
    err = capsys.readouterr().err.splitlines()
    assert "note: --base_outputs has no effect without --include_base" in err
    assert err[-1].startswith("error: ") and "a correlation needs at least 2" in err[-1]


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
    mod = importlib.import_module(module)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        mod.main(list(argv))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(note) and err[-1].startswith("error: "), err


def test_a_byte_order_mark_is_accepted_everywhere(tmp_path):
    """Files saved by an editor that writes a UTF-8 byte-order mark: JSON, JSONL, a gold CSV."""
    import prescreen
    from rre.data import load_examples
    from rre.records import read_json

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
    from rre.data import DataError
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
    from rre.data import DataError
    from rre.loading import load_errors

    for err in (ImportError("needs sentencepiece"), AttributeError("no attribute 'x'"), TypeError("bad"),
                KeyError("llama9"), OSError("no file")):
        with pytest.raises(DataError, match=rf"--model_name m: cannot load it \({type(err).__name__}: "):
            with load_errors("model_name", "m"):
                raise err
    with pytest.raises(MemoryError):  # not a bad folder
        with load_errors("model_name", "m"):
            raise MemoryError


def test_checkpoints_cli_still_lists_complete_checkpoints(tmp_path, capsys):
    from rre import checkpoints

    make({**ADAPTER_AT("run/p_step_2"), **ADAPTER_AT("run/p_step_10"),
          "run/p_step_5/adapter_config.json": "{}"})(tmp_path)
    checkpoints.main([str(tmp_path / "run" / "p")])
    assert capsys.readouterr().out.split() == [str(tmp_path / "run" / f"p_step_{n}") for n in (2, 10)]


# --- scripts/evaluate.sh: answers before any model loads --------------------------------------------------

EVALUATE_CASES = {
    "no-checkpoints": ({"run": None}, "no complete checkpoints run/p_step_N (folders with a LoRA adapter): run holds no"),
    "output-dir-missing": ({}, "no complete checkpoints nowhere/p_step_N"),
    "adapter-config-no-base": ({**ADAPTER_AT("run/p_step_1"), "run/p_step_1/adapter_config.json": "{}"},
                               "run/p_step_1/adapter_config.json: field 'base_model_name_or_path': missing"),
    "adapter-base-not-a-string": ({**ADAPTER_AT("run/p_step_1"),
                                   "run/p_step_1/adapter_config.json": '{"base_model_name_or_path": 3}'},
                                  "field 'base_model_name_or_path': expected string, got integer"),
    "adapter-config-bom-and-empty-base": ({**ADAPTER_AT("run/p_step_1"),
                                           "run/p_step_1/adapter_config.json": '\ufeff{"base_model_name_or_path": " "}'},
                                          "field 'base_model_name_or_path': empty"),
}


@pytest.mark.parametrize("name", list(EVALUATE_CASES))
def test_evaluate_sh_fails_in_one_line(name, tmp_path):
    import subprocess

    fixtures, expect = EVALUATE_CASES[name]
    make(fixtures)(tmp_path)
    before = listing(tmp_path)
    env = {**os.environ, "PREFIX": "p", "OUTPUT_DIR": "nowhere" if name == "output-dir-missing" else "run",
           "HF_HUB_OFFLINE": "1", "STEPS": "all"}
    env.pop("BASE", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "evaluate.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and expect in err[0], proc.stderr
    assert listing(tmp_path) == before
