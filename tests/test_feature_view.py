"""The per-feature view (feature_view.py) on planted numbers, and through eval_monotonicity.py on planted
checkpoints: every feature's statistic is scipy's on the per-checkpoint means computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr
from test_monotonicity import EVAL, LENGTHS, cli_args, gold_dir, plant_checkpoint, planted, response  # noqa: F401
from tiny_reward_models import save_tiny_starling

import eval_monotonicity
from rre.feature_view import best_and_worst, feature_view


def test_per_feature_spearman_is_scipys_on_planted_means():
    rng = np.random.default_rng(0)
    steps, n = [10, 20, 30, 40, 50], 8
    gold = rng.normal(size=(5, n)) + np.arange(5)[:, None]  # the gold rises with the step
    up = gold + 0.01 * rng.normal(size=(5, n))  # tracks the gold
    down = -gold[::-1] * 0 - np.arange(5)[:, None] + rng.normal(size=(5, n)) * 0.01  # falls while the gold rises
    noisy = rng.normal(size=(5, n))
    qtypes = ["OPENENDED", "CONSTRAINED"] * (n // 2)
    rows = [[{"LI": float(up[k, j]), "RP": float(down[k, j]), "QR": float(noisy[k, j]),
              "RAR": float(noisy[k, j]) if qtypes[j] == "CONSTRAINED" else None, "reward": 0.0}
             for j in range(n)] for k in range(5)]
    view = feature_view(steps, rows, gold, qtypes)
    assert view["features"] == ["LI", "RP", "QR", "RAR"]
    for name, matrix in (("LI", up), ("RP", down), ("QR", noisy)):
        stats = view["per_feature"][name]
        assert stats["means"] == pytest.approx(matrix.mean(1).tolist())
        assert stats["spearman"]["statistic"] == pytest.approx(spearmanr(matrix.mean(1), gold.mean(1)).statistic)
        assert stats["spearman"]["pvalue"] == pytest.approx(spearmanr(matrix.mean(1), gold.mean(1)).pvalue)
        assert stats["kendall"]["statistic"] == pytest.approx(kendalltau(matrix.mean(1), gold.mean(1)).statistic)
        for k in range(5):
            assert stats["per_sample_spearman"][k] == pytest.approx(spearmanr(matrix[k], gold[k]).statistic)
    # RAR: only the CONSTRAINED columns exist; means and correlations skip the rest.
    cons = [j for j, q in enumerate(qtypes) if q == "CONSTRAINED"]
    rar = view["per_feature"]["RAR"]
    assert rar["means"] == pytest.approx(noisy[:, cons].mean(1).tolist())
    assert rar["per_qtype"]["OPENENDED"] == [None] * 5
    assert rar["per_sample_spearman"][2] == pytest.approx(spearmanr(noisy[2, cons], gold[2, cons]).statistic)
    assert view["per_feature"]["LI"]["per_qtype"]["CONSTRAINED"] == pytest.approx(up[:, cons].mean(1).tolist())
    assert best_and_worst(view) == ("LI", "RP")


def test_constant_feature_has_no_correlation():
    rows = [[{"LI": 1.0, "RP": float(k)}] * 3 for k in range(3)]
    view = feature_view([1, 2, 3], rows, np.array([[0.0, 1, 2], [1, 2, 3], [2, 3, 4]]), ["OPENENDED"] * 3)
    assert view["per_feature"]["LI"]["spearman"]["statistic"] is None
    assert best_and_worst(view) == ("RP", "RP")


def test_monotonicity_feature_view_base_and_two_golds(planted, gold_dir, smollm2_dir, tmp_path_factory, capsys):
    """Relevance off: LI is #tokens/100, RP is 1 (constant), `words` a custom feature. Step 0 is the base model."""
    module = planted / "feats.py"
    module.write_text("EXTRA_FEATURES = {'words': lambda s: float(len(s.response.split()))}\n")
    base = planted / "alpaca_test_base"
    base.mkdir()
    base_lengths = [1, 1, 1, 1, 1, 1]
    (base / "alpaca-eval-base.json").write_text(json.dumps(
        [{"instruction": ex["input"], "output": response(0, n)} for ex, n in zip(EVAL, base_lengths)]))
    second_gold = save_tiny_starling(tmp_path_factory.mktemp("gold2") / "starling", smollm2_dir, seed=1)[0]
    args, config = eval_monotonicity.parse_args(cli_args(
        planted, gold_dir, smollm2_dir, "--relevance_scaling=false", "--prompt_format", "alpaca", "--include_base",
        "--features_module", str(module), "--gold_model", second_gold, "--win_rate=false"))
    assert args.gold_model == [gold_dir, second_gold]
    result = eval_monotonicity.run(args, config)
    out = capsys.readouterr().out
    assert result["steps"] == [0, 100, 200, 300, 400]
    hand_li = [sum(base_lengths) / 600] + [sum(LENGTHS[s]) / 600 for s in LENGTHS]
    assert len(result["feature_view"]) == 2
    for gold_name, view in result["feature_view"].items():
        assert view["features"] == ["LI", "RP", "words"]
        li = view["per_feature"]["LI"]
        assert li["means"] == pytest.approx(hand_li)
        assert li["spearman"]["statistic"] == pytest.approx(spearmanr(hand_li, view["gold_means"]).statistic)
        assert view["per_feature"]["words"]["means"] == pytest.approx([100 * v for v in hand_li])
        assert view["per_feature"]["RP"]["spearman"]["statistic"] is None  # constant 1.0
        assert f"features vs gold {gold_name}" in out
    assert result["feature_view"][next(iter(result["feature_view"]))]["gold_means"] == pytest.approx(
        result["steps_mean_gold"])
    assert "feature tracking gold" in out and "gold agreement" in out
    (agreement,) = result["golds"][0]["agreement"].values()
    g2 = result["golds"][1]["steps_mean_gold"]
    assert agreement["spearman_of_means"] == pytest.approx(spearmanr(result["steps_mean_gold"], g2).statistic)
    assert not math.isnan(agreement["mean_per_sample_spearman"])
    assert (planted / "monotonicity_features.png").read_bytes()[:4] == b"\x89PNG"


def test_include_base_without_base_outputs_is_one_line(planted, gold_dir, smollm2_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_monotonicity.main(cli_args(planted, gold_dir, smollm2_dir, "--relevance_scaling=false", "--include_base"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --include_base") and "alpaca_test_base" in err and "\n" not in err
