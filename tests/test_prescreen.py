"""prescreen.py on planted systems whose gold order is known (a gold CSV, and a tiny gold model on disk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from test_monotonicity import EVAL, gold_dir  # noqa: F401

import prescreen
from reward_model import ReversedEngineeredRewardForInference, RewardConfig
from rre.data import load_examples

# System k's answers carry k "gem" words (what the planted gold rewards); their lengths do not follow k.
GEMS = {"sys_a": 0, "sys_b": 1, "sys_c": 2, "sys_d": 3, "sys_e": 4}
PAD = {"sys_a": 9, "sys_b": 2, "sys_c": 12, "sys_d": 1, "sys_e": 6}
PERFECT = "EXTRA_FEATURES = {'gems': lambda s: float(s.response.split().count('gem'))}\n" \
          "def combine(f):\n    return f['gems']\n"
ANTI = "EXTRA_FEATURES = {'gems': lambda s: float(s.response.split().count('gem'))}\n" \
       "def combine(f):\n    return -f['gems']\n"


def answer(name: str, j: int) -> str:
    return " ".join(["gem"] * GEMS[name] + [f"w{name}{j}x{k}" for k in range(PAD[name] + j)]) or "ok"


@pytest.fixture
def planted(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps(EVAL))
    results = tmp_path / "results"  # AlpacaEval's layout: results/{model}/model_outputs.json
    for name in GEMS:
        (results / name).mkdir(parents=True)
        (results / name / "model_outputs.json").write_text(json.dumps(
            [{"instruction": ex["input"], "output": answer(name, j), "generator": name} for j, ex in enumerate(EVAL)]))
    (tmp_path / "leaderboard.csv").write_text("name,win_rate\n" + "".join(f"{n},{10.0 * g}\n" for n, g in GEMS.items()))
    (tmp_path / "perfect.py").write_text(PERFECT)
    (tmp_path / "anti.py").write_text(ANTI)
    return tmp_path


def args_for(root: Path, *extra: str) -> list[str]:
    return ["--systems", str(root / "results"), "--annotations_path", str(root / "eval.json"),
            "--gold_csv", str(root / "leaderboard.csv"), "--output_dir", str(root / "out"), "--relevance_model=minilm", "--rar_max_dot=1.0",
            "--bootstrap_samples", "100", *extra]


def test_ranks_perfect_first_and_anti_last_and_caches_per_design(planted, minilm_encoder, monkeypatch, capsys):
    computed = []
    real = prescreen.score_design
    monkeypatch.setattr(prescreen, "score_design",
                        lambda d, *a: computed.append(d.name) or real(d, *a))
    feature_calls = []
    real_score = ReversedEngineeredRewardForInference.score_examples
    monkeypatch.setattr(ReversedEngineeredRewardForInference, "score_examples",
                        lambda self, ex, resp, *a, **k: feature_calls.append(len(resp)) or real_score(self, ex, resp, *a, **k))

    def run(*extra):
        args, config = prescreen.parse_args(args_for(planted, *extra))
        return prescreen.run(args, config, encoder=minilm_encoder)

    first = run("--designs", "LI", "LI+RP", "--features_module", str(planted / "perfect.py"))
    assert computed == ["LI"] * 5 + ["LI+RP"] * 5 + ["perfect"] * 5
    assert feature_calls == [6] * 5  # the encoder's work: once per file
    ranking = [r["design"] for r in first["ranking"]]
    assert ranking[0] == "perfect"
    assert first["ranking"][0]["golds"]["leaderboard"]["spearman"]["statistic"] == pytest.approx(1.0)

    # One more design (repeating --features_module): only it is scored, nothing else is recomputed.
    computed.clear()
    feature_calls.clear()
    second = run("--designs", "LI", "LI+RP", "--features_module", str(planted / "perfect.py"),
                 "--features_module", str(planted / "anti.py"))
    assert computed == ["anti"] * 5 and feature_calls == []
    ranking = [r["design"] for r in second["ranking"]]
    assert ranking[0] == "perfect" and ranking[-1] == "anti"
    assert second["ranking"][-1]["golds"]["leaderboard"]["spearman"]["statistic"] == pytest.approx(-1.0)
    out = capsys.readouterr().out
    assert "best design for gold leaderboard: perfect; worst: anti" in out
    assert (planted / "out" / "prescreen.png").read_bytes()[:4] == b"\x89PNG"
    # The per-feature view across systems: the module's own feature tracks the gold.
    assert second["feature_tracking_best"]["leaderboard"] == "gems"


def test_design_rewards_equal_the_reward_class(planted, minilm_encoder):
    """Designs scored from the once-per-file features equal the reward class run with each design's flags."""
    args, config = prescreen.parse_args(args_for(planted, "--designs", "LI", "LI+RP", "LI+RP+QR", "RER"))
    result = prescreen.run(args, config, encoder=minilm_encoder)
    examples = load_examples(planted / "eval.json")
    for design in ("LI", "LI+RP", "LI+RP+QR", "RER"):
        cfg = prescreen.parse_design(design, RewardConfig(rar_max_dot=1.0)).config
        rer = ReversedEngineeredRewardForInference(cfg, encoder=minilm_encoder)
        (row,) = [r for r in result["ranking"] if r["design"] == design]
        for name in GEMS:
            direct = rer([e.query for e in examples], [answer(name, j) for j in range(len(EVAL))],
                         [e.reference for e in examples], [e.qtype for e in examples])
            assert row["system_means"][name] == pytest.approx(sum(direct) / len(direct), abs=1e-6)


def test_gold_model_gives_per_sample_correlation(planted, gold_dir, smollm2_dir, minilm_encoder):
    args, config = prescreen.parse_args(args_for(
        planted, "--designs", "LI", "--gold_model", gold_dir, "--gold_tokenizer", smollm2_dir, "--gold_device", "cpu",
        "--gold_batch_size", "4"))
    result = prescreen.run(args, config, encoder=minilm_encoder)
    (row,) = result["ranking"]
    assert set(row["golds"]) == {"starling", "leaderboard"}
    assert -1 <= row["golds"]["starling"]["per_sample_spearman"] <= 1
    assert row["golds"]["leaderboard"]["per_sample_spearman"] is None
    assert "starling vs leaderboard" in result["gold_agreement"]


def one_line_error(root: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "prescreen.py"), *args_for(root, *extra)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: ") and proc.stderr.strip().count("error: ") == 1
    return err


def test_gold_csv_missing_a_system_is_one_line(planted):
    (planted / "leaderboard.csv").write_text("name,win_rate\nsys_a,1\nsys_b,2\nsys_c,3\nsys_e,5\n")
    err = one_line_error(planted)
    assert "leaderboard.csv" in err and "sys_d" in err


def test_system_missing_outputs_is_one_line(planted):
    path = planted / "results" / "sys_c" / "model_outputs.json"
    path.write_text(json.dumps(json.loads(path.read_text())[:4]))
    err = one_line_error(planted)
    assert "'sys_c'" in err and "2 of 6" in err


BRANCHY = "EXTRA_FEATURES = {'gems': lambda s: float(s.response.split().count('gem'))}\n" \
          "def combine(f):\n    return f['paper_reward'] * (2.0 if f['branch'] == 'RAR' else 1.0) + f['gems']\n"
BOOM = "def boom(s):\n    if 'wsys_c3x0' in s.response.split():\n        raise RuntimeError('no gems here')\n" \
       "    return 1.0\nEXTRA_FEATURES = {'boom': boom}\n"


def run_main(monkeypatch, encoder, argv: list[str]):
    """prescreen's main in this process, with the session's encoder instead of a fresh load."""
    import reward_model

    monkeypatch.setattr(reward_model, "RelevanceEncoder", lambda *a, **k: encoder)
    return prescreen.main(argv)


def test_combine_reads_branch_as_in_training(planted, minilm_encoder, monkeypatch):
    """A `combine` rule reading f["branch"] works in prescreen, and scores as the reward class does in training."""
    (planted / "branchy.py").write_text(BRANCHY)
    result = run_main(monkeypatch, minilm_encoder,
                      args_for(planted, "--designs", "LI", "--features_module", str(planted / "branchy.py")))
    (row,) = [r for r in result["ranking"] if r["design"] == "branchy"]
    design = prescreen.module_design(str(planted / "branchy.py"), RewardConfig(rar_max_dot=1.0))
    rer = ReversedEngineeredRewardForInference(design.config, extra_features=design.extra_features,
                                               combine=design.reward.combine, encoder=minilm_encoder)
    examples = load_examples(planted / "eval.json")
    assert {e.qtype for e in examples} == {"OPENENDED", "CONSTRAINED"}  # both branches are taken
    for name in GEMS:
        direct = rer([e.query for e in examples], [answer(name, j) for j in range(len(EVAL))],
                     [e.reference for e in examples], [e.qtype for e in examples])
        assert row["system_means"][name] == pytest.approx(sum(direct) / len(direct), abs=1e-6)


def test_a_feature_that_raises_is_one_line_naming_it_and_the_sample(planted, minilm_encoder, monkeypatch, capsys):
    (planted / "boom.py").write_text(BOOM)
    with pytest.raises(SystemExit) as exit_info:
        run_main(monkeypatch, minilm_encoder,
                 args_for(planted, "--designs", "LI", "--features_module", str(planted / "boom.py")))
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err  # progress bars, then one error line
    assert stderr.count("error: ") == 1 and "Traceback" not in stderr, stderr
    err = stderr.strip().splitlines()[-1]
    assert err.startswith("error: system 'sys_c', design boom: "), err
    assert "feature 'boom' raised on sample 3: RuntimeError: no gems here" in err, err
    assert not (planted / "out" / "prescreen.json").exists()
