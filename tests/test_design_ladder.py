"""design_ladder.py: a tiny ladder through the real commands (run_ppo.py, evaluation.py,
eval_monotonicity.py) on tiny random models, CPU; a rerun with one more design and a run killed after a
checkpoint, computing only what is missing; the intervals, sign-flip p-values, paired comparisons, training-log
reading and recorded settings on planted numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT
from scipy import stats

from rre import ladder
from rre.errors import DataError

SEEDS = (1, 2)
STEPS = [0, 1, 2, 3]


def run_ladder(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "design_ladder.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def load_script():
    """design_ladder.py as a module (it is a script, not a package member)."""
    spec = importlib.util.spec_from_file_location("design_ladder", ROOT / "design_ladder.py")
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


def test_tiny_ladder_standardizes_pairs_and_records_what_it_trained_with(first):
    out, result = first["proc"].stdout, first["json"]
    assert "--sample_seeding=per_prompt" in out  # every answer drawn per prompt, the same draws at every step
    trained = result["settings"]["trained_with"]
    assert trained["trainer"] == "ppo" and trained["steps"] == 3 and trained["batch_size"] == 4
    assert trained["learning_rate"] == 3e-4 and trained["kl"]["init_kl_coef"] == 0.2
    assert trained["response_postprocess"] == "clean" and trained["encoder_dtype"] == "float32"
    assert trained["rollout_tokens"] == 8
    assert "differs" not in trained
    for design in ("li", "li_rp"):
        for seed in SEEDS:
            run = result["curves"][design][str(seed)]
            assert run["training"]["steps"] == [1, 2, 3] and run["training"]["final_kl"] == run["training"]["kl"][-1]
            assert len(run["answer_tokens"]) == 4 and all(t >= 0 for t in run["answer_tokens"])
            per_seed = result["summary"][design]["gold"]["per_seed"][str(seed)]
            if run["proxy_sd"] is not None:
                assert per_seed["proxy_change_sd"] == pytest.approx(per_seed["proxy_change"] / run["proxy_sd"])
            assert per_seed["kl"] == run["training"]["final_kl"] and per_seed["answer_tokens"] == run["answer_tokens"][-1]
    li, li_rp = (result["summary"][d]["gold"]["per_seed"] for d in ("li", "li_rp"))
    pair = result["paired"]["li_rp - li"]["gold"]
    diffs = [li_rp[str(s)]["gold_change"] - li[str(s)]["gold_change"] for s in SEEDS]
    assert pair["gold_change"]["differences"] == pytest.approx(diffs)
    assert pair["gold_change"]["p_sign_flip"] in (0.5, 1.0) and pair["gold_change"]["min_p"] == 0.5
    assert "| li_rp - li | gold | 2 |" in first["md"] and "cannot go below p = 0.5" in out


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


def test_gold_change_among_finished_answers_and_cut_share():
    """A gold that only rewards finished answers: the gold mean rises as fewer answers are cut, while the gold of
    finished answers stays flat. The split says so."""
    from rre.cutoff import split_by_cut

    cut_flags = [[True] * 6 + [False] * 4, [True] * 2 + [False] * 8]  # 60% then 20% cut
    splits = [split_by_cut([0.0 if c else 1.0 for c in flags], flags) for flags in cut_flags]
    runs = {seed: {"proxy": [0.1, 0.3], "golds": {"g": [0.4, 0.8]}, "cut": [{"g": sp} for sp in splits]}
            for seed in (1, 2)}
    s = ladder.design_summary(runs, "g")
    assert s["gold_change"]["mean"] == pytest.approx(0.4)
    assert s["gold_change_finished"]["mean"] == pytest.approx(0.0)
    assert s["cut_share"]["mean"] == pytest.approx(0.2)
    no_split = ladder.design_summary({1: {"proxy": [0.1, 0.3], "golds": {"g": [0.4, 0.8]}}}, "g")
    assert no_split["per_seed"][1]["cut_share"] is None and no_split["per_seed"][1]["gold_change_finished"] is None


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


def test_defaults_compare_li_and_full_over_six_seeds_with_room_to_finish():
    """The defaults: li vs full, 6 seeds (an exact sign-flip p down to 0.031), 128-token rollouts and answers,
    per-prompt seeded answers; by the 2-core CPU figures the laptop ladder measured, about 5 hours."""
    a = load_script().parse_args([])
    assert a.designs == "li,full" and a.seeds == "1,2,3,4,5,6" and a.eval_sampling == "per_prompt"
    assert a.new_tokens >= 128 and a.eval_tokens >= 128
    work, n_eval, seeds = ladder.Work(), 200, 6
    for _ in range(seeds):
        work.add_answers(n_eval)  # the base policy, per seed
    for _ in range(2 * seeds):
        work.add_training(a.checkpoints * a.save_every, a.batch_size)
        for _ in range(a.checkpoints):
            work.add_answers(n_eval)
        work.add_scoring((a.checkpoints + 1) * n_eval, 1)
    timing = ladder.default_timing(a.batch_size, a.new_tokens, n_eval, a.eval_tokens, a.checkpoints, 1)
    total = sum(work.seconds(timing).values())
    assert 4 * 3600 < total < 6 * 3600, ladder.describe_work(work, timing, "defaults")
    assert ladder.power_line(6).endswith("cannot go below p = 0.03125 (all 6 differences of one sign)")


def test_sign_flip_p_and_paired_comparison_on_planted_runs():
    li = {seed: {"proxy": [0.0, 0.1 * seed], "golds": {"g": [1.0, 1.0 - 0.1 * seed]}, "proxy_sd": 0.5,
                 "training": {"final_kl": 0.1 * seed}, "answer_tokens": [40.0, 50.0 + seed]} for seed in range(1, 7)}
    full = {seed: {"proxy": [0.0, 0.3], "golds": {"g": [1.0, 1.2 + 0.01 * seed]}, "proxy_sd": 2.0,
                   "training": {"final_kl": 1.0}, "answer_tokens": [40.0, 45.0]} for seed in range(1, 7)}
    s_li, s_full = ladder.design_summary(li, "g"), ladder.design_summary(full, "g")
    assert [v["proxy_change_sd"] for v in s_li["per_seed"].values()] == pytest.approx([0.2 * k for k in range(1, 7)])
    assert s_li["gold_change"]["p_sign_flip"] == pytest.approx(2 / 64) == s_li["gold_change"]["min_p"]
    pair = ladder.paired_comparison(s_li, s_full)
    assert pair["seeds"] == [1, 2, 3, 4, 5, 6]
    assert pair["gold_change"]["differences"] == pytest.approx([0.2 + 0.11 * k for k in range(1, 7)])
    assert pair["gold_change"]["p_sign_flip"] == pytest.approx(2 / 64)
    assert pair["kl"]["mean"] == pytest.approx(1.0 - 0.35)
    lo, hi = stats.t.interval(0.95, df=5, loc=pair["answer_tokens"]["mean"],
                              scale=stats.sem(pair["answer_tokens"]["differences"]))
    assert pair["answer_tokens"]["ci"] == pytest.approx([lo, hi])
    table = ladder.paired_table(ladder.comparisons({"li": {"g": s_li}, "full": {"g": s_full}}))
    assert "| full - li | g | 6 | +" in table and "p=0.031" in table


def test_training_log_is_read_once_per_step_with_its_trend():
    line = ("step {s}/4 | reward {r} +/- 0.300 | kl {k} | kl_coef 0.2000 | loss 0.1 | len {n} | 9.5s (gen 1.0, "
            "reward 0.1, fwd 1.0, update 7.0)")
    text = "\n".join([line.format(s=1, r=0.10, k=0.0, n=80.0), line.format(s=2, r=0.90, k=0.5, n=85.0),
                      "resumed from x at step 1", line.format(s=2, r=0.30, k=0.2, n=90.0),
                      "\rPPO steps: 75%" + line.format(s=3, r=0.45, k=0.3, n=100.0), line.format(s=4, r="nan", k=0.4, n=99.0)])
    got = ladder.parse_training_log(text)
    assert got["steps"] == [1, 2, 3, 4] and got["reward"] == [0.1, 0.3, 0.45, None] and got["final_kl"] == 0.4
    assert got["len"] == [80.0, 90.0, 100.0, 99.0] and got["seconds"] == [9.5] * 4
    slope, intercept = np.polyfit([1, 2, 3], [0.1, 0.3, 0.45], 1)
    assert got["reward_trend"]["slope"] == pytest.approx(slope)
    assert got["reward_trend"]["se"] == pytest.approx(stats.linregress([1, 2, 3], [0.1, 0.3, 0.45]).stderr)
    grpo = ("step 2/3 | reward 0.500 +/- 0.300 | kl 0.010 | loss 0.0100 | len 100.0 | LI 0.500 RP nan QR nan "
            "RAR nan | 45.2s")  # run_grpo.py's line
    got = ladder.parse_training_log(grpo)
    assert got["steps"] == [2] and got["kl"] == [0.01] and got["len"] == [100.0] and got["seconds"] == [45.2]


def test_training_settings_from_a_ppo_and_an_rloo_record():
    ppo = {"script": {"overall_steps": 16}, "reward": {"response_postprocess": "clean",
           "relevance_model": "minilm", "reward_dtype": "float32"},
           "ppo": {"batch_size": 8, "mini_batch_size": 2, "ppo_epochs": 4, "learning_rate": 3e-4, "init_kl_coef": 0.2,
                   "output_max_length": 128,
                   "adap_kl_ctrl": True, "kl_target": 6.0, "kl_horizon": 10000.0}, "resolved": {"mixed_precision": "bf16"}}
    got = ladder.training_settings(ppo)
    assert got["steps"] == 16 and got["kl"] == {"init_kl_coef": 0.2, "adap_kl_ctrl": True, "kl_target": 6.0,
                                                 "kl_horizon": 10000.0}
    assert got["encoder_dtype"] == "float32" and got["response_postprocess"] == "clean" and got["rollout_tokens"] == 128
    rloo = {"trainer": "rloo", "script": {"overall_steps": 4, "batch_size": 8, "output_max_length": 128},
            "reward": {"reward_dtype": "float32"}, "resolved": {"precision": "bfloat16", "trl_config": {
                "num_generations": 2, "beta": 0.2, "num_iterations": 1, "learning_rate": 3e-4}}}
    got = ladder.training_settings(rloo)
    assert got["trainer"] == "rloo" and got["kl"] == {"beta": 0.2} and got["num_generations"] == 2


def test_a_folder_answered_otherwise_is_refused(tmp_path):
    module = load_script()
    a = module.parse_args(["--eval_sampling", "global"])
    records = [{"instruction": "Say hi.", "input": "", "output": "hi", "qtype": "OPENENDED"}]
    module.start_ladder_dir(tmp_path / "lad", records, tmp_path / "src.json", a)
    module.check_ladder_dir(tmp_path / "lad", records, a)  # the same settings resume
    b = module.parse_args([])
    with pytest.raises(DataError, match="answered otherwise \\(--eval_sampling global -> per_prompt\\)"):
        module.check_ladder_dir(tmp_path / "lad", records, b)


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
