"""scripts/design_ladder.py: a tiny ladder through the real commands (run_ppo.py, evaluation.py,
eval_monotonicity.py) on tiny random models, CPU; a rerun with one more design and a run killed after a
checkpoint, computing only what is missing; the intervals against scipy on planted numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from scipy import stats

from rre import ladder
from rre.errors import DataError

SEEDS = (1, 2)
STEPS = [0, 1, 2, 3]


def run_ladder(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "scripts/design_ladder.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def load_script():
    """scripts/design_ladder.py as a module (it is a script, not a package member)."""
    spec = importlib.util.spec_from_file_location("design_ladder", ROOT / "scripts/design_ladder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mtimes(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_llama_dir, smollm2_dir):
    """2 designs x 2 seeds x 3 checkpoints (+ the base policy), 6 eval instructions, 8-token answers."""
    from tiny_reward_models import save_tiny_classifier

    work = tmp_path_factory.mktemp("ladder")
    gold, _ = save_tiny_classifier(work / "gold", smollm2_dir)
    records = json.loads((ROOT / "data/eval.json").read_text())
    by_type = {q: [r for r in records if r["qtype"] == q][:3] for q in ("OPENENDED", "CONSTRAINED")}
    (work / "eval.json").write_text(json.dumps(by_type["OPENENDED"] + by_type["CONSTRAINED"]))
    shutil.copy(ROOT / "examples/my_features.py", work / "hedge.py")
    base = ["--ladder_dir", str(work / "lad"), "--seeds", "1,2", "--checkpoints", "3", "--save_every", "1",
            "--batch_size", "4", "--mini_batch_size", "2", "--gradient_accumulation_steps", "1", "--new_tokens", "8",
            "--eval_path", str(work / "eval.json"), "--eval_size", "6", "--eval_tokens", "8",
            "--model_name", tiny_llama_dir, "--gold", gold, "--relevance_model", "minilm", "--gold_device", "cpu"]
    proc = run_ladder([*base, "--designs", "li,li_rp"])
    lad = work / "lad"
    return {"work": work, "lad": lad, "base": base, "proc": proc, "mtimes": mtimes(lad),
            "json": json.loads((lad / "ladder.json").read_text()), "md": (lad / "ladder.md").read_text(),
            "png": (lad / "ladder.png").read_bytes()}


@pytest.fixture(scope="module")
def second(first):
    """The same ladder again, with one more design (a features module on LI), after li seed 1 was killed after
    its step-2 checkpoint: step 3 and the final save gone, with step 3's answers and the run's scores stale."""
    lad = first["lad"]
    for name in ("policy_step_3", "policy_final"):
        shutil.rmtree(lad / "li/seed1" / name)
    before = mtimes(lad)
    proc = run_ladder([*first["base"], "--designs", "li,li_rp", "--features_module",
                       str(first["work"] / "hedge.py"), "--features_base", "li"])
    return {"proc": proc, "before": before, "after": mtimes(lad),
            "json": json.loads((lad / "ladder.json").read_text())}


def test_tiny_ladder_writes_the_report_the_json_and_the_figure(first):
    out, result = first["proc"].stdout, first["json"]
    assert ("whole ladder: 4 training run(s), 12 PPO steps (48 rollouts); 14 checkpoint(s) to answer (84 answers)"
            in out)
    assert "expected wall time:" in out and "interval half-widths reached" in out
    assert list(result["designs"]) == ["li", "li_rp"] and result["seeds"] == list(SEEDS)
    assert result["designs"]["li_rp"]["flags"] == {"length_incentive": True, "repetition_penalty": True,
                                                   "relevance_scaling": False, "reward_branching": False}
    for design in ("li", "li_rp"):
        s = result["summary"][design]["gold"]
        curves = result["curves"][design]
        gold_changes = [curves[str(seed)]["golds"]["gold"][-1] - curves[str(seed)]["golds"]["gold"][0]
                        for seed in SEEDS]
        assert [curves[str(seed)]["steps"] for seed in SEEDS] == [STEPS, STEPS]
        lo, hi = stats.t.interval(0.95, df=1, loc=sum(gold_changes) / 2, scale=stats.sem(gold_changes))
        assert s["gold_change"]["ci"] == pytest.approx([lo, hi])
        assert s["spearman"]["n"] + s["spearman"]["n_undefined"] == 2
        assert f"| {design} | gold | 2 |" in first["md"]
    assert first["png"].startswith(b"\x89PNG")
    assert result["cost"]["runs"] == 4 and result["cost"]["answers"] == 84


def test_rerun_with_one_more_design_trains_only_that_design(second):
    out, before, after = second["proc"].stdout, second["before"], second["after"]
    for run in ("li seed 2", "li_rp seed 1", "li_rp seed 2"):
        assert f"  {run}: complete (skipped)" in out
    assert "  hedge seed 1: train 3 steps, answer 3 checkpoint(s), score" in out
    trained = [line for line in out.splitlines() if line.startswith("  train ") and ": done in" in line]
    assert sorted(trained_name.split(":")[0] for trained_name in trained) == [
        "  train hedge seed 1", "  train hedge seed 2", "  train li seed 1"]
    for run in ("li_rp/seed1", "li_rp/seed2", "li/seed2", "base/"):  # untouched: not retrained, not re-answered, not rescored
        files = {k: v for k, v in before.items() if k.startswith(run)}
        assert files and all(after[k] == v for k, v in files.items())
    assert list(second["json"]["designs"]) == ["li", "li_rp", "hedge"]
    assert second["json"]["designs"]["hedge"]["features_module"].endswith("hedge.py")


def test_killed_run_resumes_from_its_latest_checkpoint(first, second):
    out, before, after = second["proc"].stdout, second["before"], second["after"]
    assert "  li seed 1: train 1 steps (resume at step 2), answer 1 checkpoint(s), score" in out
    assert "resumed from" in (first["lad"] / "logs/train_li_seed1.log").read_text()
    for step in (1, 2):  # the answers of the checkpoints that survived are kept
        key = f"li/seed1/policy_step_{step}/alpaca-eval-policy_step_{step}.json"
        assert after[key] == before[key]
    assert "li/seed1/policy_step_3/alpaca-eval-policy_step_3.json" in after  # answered anew, then scored anew
    assert "answer li seed 1 step 3: done" in out and "answer li seed 1 step 2:" not in out
    assert after["li/seed1/monotonicity.json"] > before["li/seed1/monotonicity.json"]
    assert second["json"]["curves"]["li"]["1"]["steps"] == STEPS


def test_a_complete_ladder_plans_nothing(first, second):
    proc = run_ladder([*first["base"], "--designs", "li,li_rp", "--features_module",
                       str(first["work"] / "hedge.py"), "--features_base", "li", "--plan_only"])
    assert "still to run: 0 training run(s), 0 PPO steps (0 rollouts); 0 checkpoint(s) to answer" in proc.stdout
    assert "$ " not in proc.stdout


# ---------------------------------------------------------------------------------------------------------
# Pure functions on planted numbers.


def test_seed_interval_is_scipys_t_interval():
    values = [0.3, 0.5, 0.9, 0.4]
    got = ladder.seed_interval(values)
    lo, hi = stats.t.interval(0.95, df=3, loc=sum(values) / 4, scale=stats.sem(values))
    assert got["ci"] == pytest.approx([lo, hi]) and got["mean"] == pytest.approx(0.525) and got["n"] == 4
    by_hand = stats.t.ppf(0.975, 3) * stats.tstd(values) / math.sqrt(4)
    assert got["half_width"] == pytest.approx(by_hand)
    one = ladder.seed_interval([0.7, None, float("nan")])
    assert one["mean"] == 0.7 and one["ci"] == [None, None] and one["n_undefined"] == 2
    clipped = ladder.seed_interval([0.9, 1.0], bounds=(-1, 1))
    assert clipped["ci"][1] == 1.0 and clipped["half_width"] > 0.1


def test_hacking_needs_both_intervals_to_exclude_zero():
    up, down = {"ci": [0.1, 0.3]}, {"ci": [-0.4, -0.05]}
    assert ladder.hacking(up, down)
    assert not ladder.hacking(up, {"ci": [-0.4, 0.01]})
    assert not ladder.hacking({"ci": [-0.01, 0.3]}, down)
    assert not ladder.hacking({"ci": [None, None]}, down)


def test_design_summary_on_planted_curves():
    runs = {seed: {"proxy": [0.1, 0.2 + d, 0.4 + d], "golds": {"g": [1.0, 0.8 - d, 0.5 - d]}}
            for seed, d in ((1, 0.0), (2, 0.02), (3, 0.05))}
    s = ladder.design_summary(runs, "g")
    assert [v["proxy_change"] for v in s["per_seed"].values()] == pytest.approx([0.3, 0.32, 0.35])
    assert s["gold_change"]["mean"] == pytest.approx(-(0.5 + 0.52 + 0.55) / 3)
    assert s["spearman"]["mean"] == pytest.approx(-1.0) and s["kendall"]["mean"] == pytest.approx(-1.0)
    assert s["hacking"]
    table = ladder.markdown_table({"li": {"g": s}})
    assert "| li | g | 3 | +0.323 [" in table and "| YES |" in table


def test_laptop_defaults_are_estimated_under_three_hours():
    """The laptop defaults (4 designs x 2 seeds, 8 checkpoints every 2 steps, batch 8, 48-token rollouts and
    answers, 200 instructions, one gold) by the 2-core CPU figures the laptop ladder measured."""
    work, n_eval = ladder.Work(), 200
    for _ in range(2):
        work.add_answers(n_eval)  # the base policy, per seed
    for _ in range(4 * 2):
        work.add_training(16, 8)
        for _ in range(8):
            work.add_answers(n_eval)
        work.add_scoring(9 * n_eval, 1)
    timing = ladder.default_timing(8, 48, n_eval, 48, 8, 1)
    total = sum(work.seconds(timing).values())
    assert 1.5 * 3600 < total < 3 * 3600, ladder.describe_work(work, timing, "laptop defaults")


def test_bad_input_is_one_line(tmp_path, capsys):
    module = load_script()
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--designs", "li,nope", "--ladder_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: --designs: unknown design 'nope' (built-in: li, li_rp, "
                                               "li_qr_rp, full; your own features: --features_module FILE)")
    (tmp_path / "bad.json").write_text(json.dumps([{"input": "Say hi.", "output": "hi"}]))
    with pytest.raises(SystemExit):
        module.main(["--designs", "li", "--ladder_dir", str(tmp_path / "l"), "--eval_path", str(tmp_path / "bad.json"),
                     "--model_name", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bad.json" in err and "qtype" in err and "\n" not in err
    with pytest.raises(DataError, match="given twice"):
        ladder.build_designs(["li", "li"])


def test_extra_train_args_may_start_with_dashes():
    """`--extra_train_args "--num_generations=2"` as a user types it (argparse alone takes the value for a flag)."""
    module = load_script()
    for argv in (["--extra_train_args", "--num_generations=2 --beta 0.1"],
                 ["--extra_train_args=--num_generations=2 --beta 0.1"]):
        assert module.parse_args([*argv, "--seeds", "3"]).extra_train_args == "--num_generations=2 --beta 0.1"
    assert module.parse_args(["--trainer", "grpo"]).extra_train_args == ""
