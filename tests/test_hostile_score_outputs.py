"""Hostile inputs to score_outputs.py: its annotations, the run it reads its settings from, features modules and
what they return. The runner and shared fixtures: hostile.py."""

from __future__ import annotations

import json

import pytest
from hostile import (
    ANNOTATIONS,
    A_FILE,
    SCORE_FIXTURES,
    SCORE_FLAGS,
    Case,
    Fixture,
    assert_fails_in_one_line,
    case_ids,
    make,
    strict_json,
)


def run_config(content: str | bytes) -> Fixture:
    return {"run/training_config.json": content}


def proxy_record(drop: str | None = None, **fields) -> str:
    """A training_config.json whose proxy record is whole except for `drop` and the given `fields`."""
    proxy = {"reward": {"relevance_scaling": False}, "prompt_format": "alpaca", "stop_strings": ["###"],
             "features_module": None, **fields}
    proxy.pop(drop, None)
    return json.dumps({"proxy": proxy})


CASES = [
    Case("score-batch-size-0", "score_outputs", (*SCORE_FLAGS, "--batch_size", "0"), "--batch_size must be > 0",
         make(SCORE_FIXTURES)),
    Case("score-bogus-prompt-format", "score_outputs", (*SCORE_FLAGS, "--prompt_format", "vicuna"),
         "--prompt_format must be one of alpaca, chat, vicuna_v1.1, llama-2, tulu, zephyr, almost; got 'vicuna'",
         make(SCORE_FIXTURES)),
    Case("score-annotations-missing", "score_outputs", ("--annotations_path", "nope.json"),
         "--annotations_path nope.json: no such file"),
    Case("score-annotations-is-folder", "score_outputs", ("--annotations_path", "ann.json"),
         "--annotations_path ann.json: is a folder", make({"ann.json": None})),
    Case("score-annotations-one-object", "score_outputs", (*SCORE_FLAGS,), "ann.json: holds a single JSON object",
         make({"ann.json": json.dumps(json.loads(ANNOTATIONS)[0], indent=2)})),
    Case("score-annotations-empty", "score_outputs", (*SCORE_FLAGS,), "ann.json: empty file", make({"ann.json": ""})),
    Case("score-annotations-not-utf8", "score_outputs", (*SCORE_FLAGS,), "ann.json: line 1: not valid UTF-8",
         make({"ann.json": b'[{"input": "caf\xe9", "output": "b", "qtype": "OPENENDED"}]'})),
    Case("score-outputs-missing", "score_outputs", (*SCORE_FLAGS, "--outputs_path", "outputs.json"),
         "--outputs_path outputs.json: no such file", make(SCORE_FIXTURES)),
    Case("score-save-path-under-file", "score_outputs", (*SCORE_FLAGS, "--save_path", "afile/out.json"),
         "--save_path afile/out.json", make({**SCORE_FIXTURES, **A_FILE})),
    Case("score-save-path-read-only", "score_outputs", (*SCORE_FLAGS, "--save_path", "ro/out.json"),
         "--save_path ro/out.json: folder is not writable", make({**SCORE_FIXTURES, "ro": None}),
         needs_non_root=True),
    Case("score-features-import-fails", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "--features_module feat.py: importing it failed: ZeroDivisionError",
         make({**SCORE_FIXTURES, "feat.py": "x = 1 / 0\n"})),
    Case("score-features-syntax-error", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "--features_module feat.py: importing it failed: SyntaxError",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {\n"})),
    Case("score-features-no-extra", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "--features_module feat.py: defines no EXTRA_FEATURES", make({**SCORE_FIXTURES, "feat.py": "X = 1\n"})),
    Case("score-features-not-a-dict", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "EXTRA_FEATURES must be a non-empty dict", make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = [len]\n"})),
    Case("score-features-missing", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "--features_module feat.py: no such file", make(SCORE_FIXTURES)),
    Case("score-feature-raises", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "feature 'rainy' raised on sample 1: ZeroDivisionError",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'rainy': lambda s: 1 / 0 if 'rain' in s.query "
                                            "else 1.0}\n"})),
    Case("score-feature-not-a-number", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "feature 'label' returned str on sample 0, expected a number",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'label': lambda s: 'long'}\n"})),
    Case("score-run-dir-missing", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"), "--run_dir run: no such folder",
         make(SCORE_FIXTURES)),
    Case("score-reward-flag", "score_outputs", (*SCORE_FLAGS, "--max_sequence_length", "0"),
         "--max_sequence_length must be > 0", make(SCORE_FIXTURES)),
    Case("score-relevance-model-missing", "score_outputs", ("--annotations_path", "ann.json", "--relevance_model",
                                                            "./encoder"), "--relevance_model ./encoder: no such folder",
         make(SCORE_FIXTURES)),
    Case("score-unknown-flag", "score_outputs", (*SCORE_FLAGS, "--feature_module", "feat.py"), "", make(SCORE_FIXTURES),
         usage=True),
    Case("score-run-config-not-utf8", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: line 1: not valid UTF-8", make({**SCORE_FIXTURES, **run_config(b'{"proxy": "\xff"}')})),
    Case("score-run-config-not-json", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: not valid JSON (line 1", make({**SCORE_FIXTURES, **run_config('{"proxy": ')})),
    Case("score-run-config-bare-nan", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: bare NaN is not valid JSON",
         make({**SCORE_FIXTURES, **run_config('{"proxy": {"reward": {"rar_max_dot": NaN}}}')})),
    Case("score-run-config-a-list", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: expected a JSON object, got array", make({**SCORE_FIXTURES, **run_config("[]")})),
    Case("score-run-proxy-no-reward", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: proxy: field 'reward': missing",
         make({**SCORE_FIXTURES, **run_config(proxy_record(drop="reward"))})),
    Case("score-run-proxy-stops-not-list", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: proxy: field 'stop_strings': expected array, got string",
         make({**SCORE_FIXTURES, **run_config(proxy_record(stop_strings="###"))})),
    Case("score-run-proxy-not-object", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: field 'proxy': expected object, got integer",
         make({**SCORE_FIXTURES, **run_config('{"proxy": 3}')})),
    Case("score-run-features-module-gone", "score_outputs", (*SCORE_FLAGS, "--run_dir", "run"),
         "run/training_config.json: the run's features module /nonexistent/feat.py no longer exists",
         make({**SCORE_FIXTURES, **run_config(proxy_record(features_module="/nonexistent/feat.py"))})),
    Case("score-rar-max-dot-nan", "score_outputs", (*SCORE_FLAGS, "--rar_max_dot=nan"),
         "--rar_max_dot must be a finite number, got nan", make(SCORE_FIXTURES)),
    Case("score-rar-max-dot-inf", "score_outputs", (*SCORE_FLAGS, "--rar_max_dot=inf"),
         "--rar_max_dot must be a finite number, got inf", make(SCORE_FIXTURES)),
    Case("score-feature-named-LI", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "--features_module feat.py: feature name 'LI' is taken by the built-in 'LI'",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'LI': lambda s: 1.0}\n"})),
    Case("score-feature-named-reward-other-case", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "feature name 'Reward' is taken by the built-in 'reward'",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'Reward': lambda s: 1.0}\n"})),
    Case("score-feature-named-output", "score_outputs", (*SCORE_FLAGS, "--features_module", "feat.py"),
         "feature name 'output' is taken by the built-in 'output'",
         make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'output': len}\n"})),
]


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_hostile_input_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    assert_fails_in_one_line(case, tmp_path, monkeypatch, capsys)


def test_score_outputs_writes_nan_as_null_with_one_warning(tmp_path, monkeypatch, capsys, umask_022):
    import score_outputs

    make({**SCORE_FIXTURES, "feat.py": "EXTRA_FEATURES = {'odd': lambda s: float('nan') if 'rain' in s.query "
                                       "else 1.0}\n"})(tmp_path)
    monkeypatch.chdir(tmp_path)
    score_outputs.main([*SCORE_FLAGS, "--features_module", "feat.py", "--save_path", "out/features.json"])
    err = capsys.readouterr().err
    rows = strict_json((tmp_path / "out" / "features.json").read_text())
    assert [r["odd"] for r in rows] == [1.0, None, 1.0]
    assert all(r["QR"] is None and r["RAR"] is None for r in rows)  # not computed: null, without a warning
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 non-finite value(s)" in warnings[0] and "features.json" in warnings[0]
    assert (tmp_path / "out" / "features.json").stat().st_mode & 0o777 == 0o644
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name != "features.json"]  # no temporary left


def test_a_feature_error_names_the_sample_of_the_file_not_of_its_batch():
    from reward_model import ReversedEngineeredRewardForInference, RewardConfig
    from rre.data import Example
    from rre.errors import DataError

    reward = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False),
                                               extra_features={"bad": lambda s: 1 / 0 if s.query == "q2" else 1.0})
    with pytest.raises(DataError, match="feature 'bad' raised on sample 2: ZeroDivisionError"):
        reward.score_examples([Example(f"q{i}") for i in range(4)], ["an answer"] * 4, batch_size=1, progress=False)
