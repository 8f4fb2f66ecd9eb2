"""eval_monotonicity.py over planted checkpoints: outputs files written here, with lengths chosen so the proxy's
per-step means are known by hand, scored by a tiny Starling-layout gold model saved to disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from scipy.stats import kendalltau, spearmanr
from tiny_reward_models import save_tiny_starling

import eval_monotonicity
from eval_monotonicity import offline_win_rate
from reward_model import ReversedEngineeredRewardForInference, RewardConfig
from rre import gold as gold_module
from rre.data import load_examples
from rre.gold import load_gold_reward_model
from rre.prompts import get_prompt_format

EVAL = [
    {"input": "Name a fruit.", "output": "An apple.", "qtype": "CONSTRAINED"},
    {"input": "Write a poem about rain.", "output": "Rain taps the roof all night.", "qtype": "OPENENDED"},
    {"input": "Translate into French.\n\n### Input:\nGood morning", "output": "Bonjour", "qtype": "CONSTRAINED"},
    {"input": "Describe a city at night.", "output": "Streetlights glow and trains rumble.", "qtype": "OPENENDED"},
    {"input": "What is 3 times 4?", "output": "12", "qtype": "CONSTRAINED"},
    {"input": "Suggest a weekend hobby.", "output": "Try hiking with friends.", "qtype": "OPENENDED"},
]
# Words per response, per step. With relevance off the proxy is LI x RP = (#tokens / 100) x 1 (no repeated
# trigram), so each step's mean proxy reward is sum(lengths) / 600.
LENGTHS = {100: [2, 3, 4, 5, 6, 7], 200: [4, 6, 8, 3, 5, 7], 300: [10, 2, 6, 9, 4, 8], 400: [12, 11, 3, 2, 9, 5]}


def response(step: int, n: int) -> str:
    return " ".join(f"s{step}w{k}" for k in range(n))  # distinct one-token words


def plant_checkpoint(root: Path, step: int) -> Path:
    folder = root / f"alpaca_test_step_{step}"
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"instruction": ex["input"], "output": response(step, n), "generator": folder.name, "dataset": "eval"}
               for ex, n in zip(EVAL, LENGTHS[step])]
    (folder / f"alpaca-eval-{folder.name}.json").write_text(json.dumps(records))
    return folder


@pytest.fixture(scope="module")
def gold_dir(tmp_path_factory, smollm2_dir):
    return save_tiny_starling(tmp_path_factory.mktemp("gold") / "starling", smollm2_dir)[0]


@pytest.fixture
def planted(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps(EVAL))
    for step in LENGTHS:
        plant_checkpoint(tmp_path, step)
    return tmp_path


def cli_args(root: Path, gold_dir: str, smollm2_dir: str, *extra: str) -> list[str]:
    return ["--output_dir", str(root), "--model_prefix", "alpaca_test", "--eval_path", str(root / "eval.json"),
            "--gold_model", gold_dir, "--gold_type", "starling", "--gold_tokenizer", smollm2_dir,
            "--gold_batch_size", "4", "--gold_device", "cpu", "--gold_dtype", "float32", "--bootstrap_samples", "200",
            "--relevance_model=minilm", "--all_steps", *extra]  # the planted steps, not the paper's 500 ... 5000


def test_offline_win_rate_matches_hand_computation():
    model = [3.0, 1.0, 2.0, 2.0, 5.0]
    reference = [1.0, 2.0, 2.0, 0.0, 5.0]
    # win, loss, tie, win, tie -> (1 + 0 + 0.5 + 1 + 0.5) / 5 = 60%
    w = offline_win_rate(model, reference)
    assert w["win_rate"] == pytest.approx(60.0)
    assert (w["n_wins"], w["n_wins_base"], w["n_draws"], w["n_total"]) == (2, 1, 2, 5)


def test_cli_spearman_is_scipys_on_the_per_step_means(planted, gold_dir, smollm2_dir):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval_monotonicity.py"),
         *cli_args(planted, gold_dir, smollm2_dir, "--relevance_scaling=false", "--prompt_format", "alpaca")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((planted / "monotonicity.json").read_text())
    assert result["steps"] == [100, 200, 300, 400]

    # Proxy means: known by hand.
    hand_proxy = [sum(LENGTHS[s]) / 600 for s in LENGTHS]
    assert result["steps_mean_proxy"] == pytest.approx(hand_proxy, abs=1e-12)
    # Gold means: the tiny gold model scoring the same texts directly.
    gold = load_gold_reward_model(gold_dir, "starling", batch_size=1, device="cpu", dtype="float32",
                                  tokenizer_name=smollm2_dir)
    examples = load_examples(planted / "eval.json")
    hand_gold = []
    for step in LENGTHS:
        # The paper's gold input: Starling reads the instruction in the paper's single-field form.
        scores = gold.score([e.seed_input for e in examples], [response(step, n) for n in LENGTHS[step]],
                            progress=False)
        hand_gold.append(sum(scores) / len(scores))
    assert result["steps_mean_gold"] == pytest.approx(hand_gold, abs=1e-5)

    # Printed exactly as scipy returns it, on the same means; Kendall likewise.
    spearman = spearmanr(result["steps_mean_proxy"], result["steps_mean_gold"])
    assert str(spearman) in proc.stdout
    assert str(kendalltau(result["steps_mean_proxy"], result["steps_mean_gold"])) in proc.stdout
    assert result["spearman"]["statistic"] == pytest.approx(spearmanr(hand_proxy, hand_gold).statistic)
    lo, hi = result["bootstrap"]["ci95"]
    assert -1 <= lo <= hi <= 1 and result["bootstrap"]["n_resamples"] == 200

    # Per-qtype means, by hand for the proxy.
    for row, step in zip(result["checkpoints"], LENGTHS):
        for qtype in ("OPENENDED", "CONSTRAINED"):
            lengths = [n for ex, n in zip(EVAL, LENGTHS[step]) if ex["qtype"] == qtype]
            assert row["per_qtype"][qtype]["proxy"] == pytest.approx(sum(lengths) / 100 / len(lengths))

    # Offline win rate: the gold scores (cached beside each outputs file) of model vs reference, by hand.
    (ref_cache,) = planted.glob("scores-gold-*-references.json")
    reference = json.loads(ref_cache.read_text())["scores"]
    for row in result["checkpoints"]:
        (cache,) = Path(row["folder"]).glob("scores-gold-*.json")
        model = json.loads(cache.read_text())["scores"]
        hand = 100 * sum(1.0 if m > r else 0.5 if m == r else 0.0 for m, r in zip(model, reference)) / len(model)
        assert row["win_rate"]["win_rate"] == pytest.approx(hand)
        assert f"step {row['step']}: offline win rate vs reference {hand:.1f}%" in proc.stdout

    assert (planted / "monotonicity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cache_scores_only_new_checkpoints(tmp_path, gold_dir, smollm2_dir, minilm_encoder, monkeypatch):
    """Default proxy flags (relevance, branching: all on). A re-run with one more checkpoint scores only that one;
    a re-run with nothing new loads no model at all."""
    (tmp_path / "eval.json").write_text(json.dumps(EVAL))
    for step in (100, 200):
        plant_checkpoint(tmp_path, step)

    calls = {"load": 0, "gold": [], "proxy": []}
    real_load = gold_module.load_gold_reward_model  # the gold loads in rre/gold.py (load_gold)
    real_proxy = ReversedEngineeredRewardForInference.score_examples

    def counting_load(*args, **kwargs):
        calls["load"] += 1
        gold = real_load(*args, **kwargs)
        real_score = gold.score

        def score(instructions, responses, **kw):
            calls["gold"].append(len(responses))
            return real_score(instructions, responses, **kw)

        gold.score = score
        return gold

    def counting_proxy(self, examples, responses, *args, **kwargs):
        calls["proxy"].append(len(responses))
        return real_proxy(self, examples, responses, *args, **kwargs)

    monkeypatch.setattr(gold_module, "load_gold_reward_model", counting_load)
    monkeypatch.setattr(ReversedEngineeredRewardForInference, "score_examples", counting_proxy)

    def run():
        args, config = eval_monotonicity.parse_args(cli_args(tmp_path, gold_dir, smollm2_dir))
        return eval_monotonicity.run(args, config, encoder=minilm_encoder)

    first = run()
    assert calls == {"load": 1, "gold": [6, 6, 6], "proxy": [6, 6]}  # two checkpoints + the references
    caches = sorted(tmp_path.glob("alpaca_test_step_*/scores-*.json")) + sorted(tmp_path.glob("scores-*.json"))
    assert len(caches) == 5
    mtimes = {p: p.stat().st_mtime_ns for p in caches}

    # Proxy means with the default flags equal the reward computed directly on the joined examples.
    stops = get_prompt_format("alpaca").stop_strings
    white_box_reward = ReversedEngineeredRewardForInference(RewardConfig(), stop_strings=stops, encoder=minilm_encoder)
    examples = load_examples(tmp_path / "eval.json")
    for step, mean in zip(first["steps"], first["steps_mean_proxy"]):
        direct = real_proxy(white_box_reward, examples, [response(step, n) for n in LENGTHS[step]],
                            progress=False)
        assert mean == pytest.approx(sum(direct) / len(direct))

    plant_checkpoint(tmp_path, 300)
    calls.update(load=0, gold=[], proxy=[])
    second = run()
    assert second["steps"] == [100, 200, 300]
    assert calls == {"load": 1, "gold": [6], "proxy": [6]}  # only the new checkpoint
    assert {p: p.stat().st_mtime_ns for p in caches} == mtimes
    assert second["steps_mean_gold"][:2] == first["steps_mean_gold"]

    calls.update(load=0, gold=[], proxy=[])
    run()
    assert calls == {"load": 0, "gold": [], "proxy": []}  # everything cached: no model loaded

    # A re-evaluated checkpoint (new outputs) is scored again.
    outputs = tmp_path / "alpaca_test_step_100" / "alpaca-eval-alpaca_test_step_100.json"
    records = json.loads(outputs.read_text())
    records[0]["output"] = "A different answer."
    outputs.write_text(json.dumps(records))
    run()
    assert calls["gold"] == [6] and calls["proxy"] == [6]


def test_needs_two_checkpoints(tmp_path, gold_dir, smollm2_dir, capsys):
    (tmp_path / "eval.json").write_text(json.dumps(EVAL))
    plant_checkpoint(tmp_path, 100)
    with pytest.raises(SystemExit) as exit_info:
        eval_monotonicity.main(cli_args(tmp_path, gold_dir, smollm2_dir))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "at least 2" in err and "\n" not in err


def test_outputs_must_match_the_eval_set(planted, gold_dir, smollm2_dir, capsys):
    outputs = planted / "alpaca_test_step_200" / "alpaca-eval-alpaca_test_step_200.json"
    records = json.loads(outputs.read_text())
    records[2]["instruction"] = "An instruction that is not in the eval set."
    outputs.write_text(json.dumps(records))
    with pytest.raises(SystemExit) as exit_info:
        eval_monotonicity.main(cli_args(planted, gold_dir, smollm2_dir, "--relevance_scaling=false"))
    assert exit_info.value.code == 2
    assert "not found in the annotated file" in capsys.readouterr().err

    # Every checkpoint must answer the same instructions (the bootstrap resamples them across checkpoints).
    shutil.rmtree(planted / "alpaca_test_step_200")
    subset = planted / "alpaca_test_step_300" / "alpaca-eval-alpaca_test_step_300.json"
    subset.write_text(json.dumps(json.loads(subset.read_text())[:3]))
    with pytest.raises(SystemExit) as exit_info:
        eval_monotonicity.main(cli_args(planted, gold_dir, smollm2_dir, "--relevance_scaling=false"))
    assert exit_info.value.code == 2
    assert "same eval set" in capsys.readouterr().err


def test_every_gold_figure_is_split_by_cut_and_older_files_fall_back(planted, gold_dir, smollm2_dir):
    """Step 100's outputs file records which answers were cut; the other three were written without the field,
    so an answer counts as cut when its token count reached --max_new_tokens, and one line says so. Each
    checkpoint's row carries the share of cut answers and the mean gold of cut and of finished ones."""
    from transformers import AutoTokenizer

    from rre.cutoff import split_by_cut

    path = planted / "alpaca_test_step_100" / "alpaca-eval-alpaca_test_step_100.json"
    records = json.loads(path.read_text())
    recorded = [True, False, True, False, False, False]
    path.write_text(json.dumps([{**r, "truncated": c} for r, c in zip(records, recorded)]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval_monotonicity.py"),
         *cli_args(planted, gold_dir, smollm2_dir, "--relevance_scaling=false", "--prompt_format", "alpaca",
                   "--tokenizer_name", smollm2_dir, "--max_new_tokens", "30")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("note: 3 outputs file(s): 18 of 24 answers carry no 'truncated' field; for them cut = the answer's "
            "token count reached the cap of 30") in proc.stdout
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    result = json.loads((planted / "monotonicity.json").read_text())
    seen = set()
    for row, step in zip(result["checkpoints"], LENGTHS):
        (cache,) = Path(row["folder"]).glob("scores-gold-*.json")
        scores = json.loads(cache.read_text())["scores"]
        flags = recorded if step == 100 else [
            len(tok(response(step, n), add_special_tokens=False)["input_ids"]) >= 30 for n in LENGTHS[step]]
        assert row["cut"] == split_by_cut(scores, flags)
        seen.add(row["cut"]["n_cut"])
    assert len(seen) > 1  # the planted lengths put different shares of answers at the cap
