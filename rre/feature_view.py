"""Per-feature view: which white-box feature moved with the gold, and which one was hacked.

One Spearman number per run says whether the proxy tracked the gold, not why. This module takes the proxy's
per-sample features (LI, RP, QR, RAR and any custom feature of a features module) and the gold scores, both as
(steps or systems) x instructions matrices, and reports for every feature:

- its mean per checkpoint, overall and per qtype;
- its Spearman and Kendall correlation with the gold's means across checkpoints (the paper's statistic, applied
  to one feature at a time);
- its per-sample Spearman correlation with the gold within each checkpoint (does the gold prefer the responses
  this feature prefers, at a fixed point of training?).

Used by eval_monotonicity.py (checkpoints of a run) and prescreen.py (systems). NaN marks a feature value that was
not computed (RAR of an OPENENDED sample without a reference); means and correlations skip those.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr

from rre.files import save_figure
from rre.stats import correlation

BUILTIN_FEATURES = ("LI", "RP", "QR", "RAR")
NOT_FEATURES = {"qtype", "branch"}  # per-sample labels, not numbers


def numeric_features(features: dict[str, Any]) -> dict[str, float | None]:
    """The JSON-safe numeric part of one sample's feature dict (NaN -> None; labels dropped)."""
    out = {}
    for k, v in features.items():
        if k in NOT_FEATURES or isinstance(v, str) or v is None:
            continue
        v = float(v)
        out[k] = None if math.isnan(v) else v
    return out


def feature_names(rows: Sequence[Sequence[dict[str, float | None]]]) -> list[str]:
    """Features computed somewhere (QR/RAR are not when relevance is off): built-in first, then custom ones in
    their order; the combined reward is not a feature."""
    seen = list(dict.fromkeys(k for row in rows for f in row for k, v in f.items() if v is not None))
    custom = [k for k in seen if k not in BUILTIN_FEATURES and k not in ("paper_reward", "reward")]
    return [k for k in BUILTIN_FEATURES if k in seen] + custom


def feature_matrix(rows: Sequence[Sequence[dict[str, float | None]]], name: str) -> np.ndarray:
    """(checkpoints, instructions) matrix of one feature, NaN where it was not computed."""
    return np.array([[math.nan if f.get(name) is None else f[name] for f in row] for row in rows], dtype=float)


def _corr(fn, x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """fn's statistic and p-value on the pairs where both are defined; None when undefined (constant, < 2)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    if ok.sum() < 2 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return {"statistic": None, "pvalue": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fn(x[ok], y[ok])
    return correlation(res)


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else None


def feature_view(labels: Sequence[Any], rows: Sequence[Sequence[dict[str, float | None]]], gold: np.ndarray,
                 qtypes: Sequence[str]) -> dict[str, Any]:
    """The per-feature statistics of one gold. `labels` name the rows (steps or systems), `rows[k][j]` is the
    numeric feature dict of instruction j at row k, `gold` the (rows, instructions) gold scores, `qtypes[j]` the
    qtype of instruction j."""
    names = feature_names(rows)
    gold = np.asarray(gold, dtype=float)
    gold_means = gold.mean(1)
    groups = sorted(set(qtypes))
    out: dict[str, Any] = {"features": names, "labels": list(labels), "gold_means": gold_means.tolist(),
                           "per_feature": {}}
    for name in names:
        m = feature_matrix(rows, name)
        means = [_nanmean(m[k]) for k in range(len(labels))]
        per_qtype = {q: [_nanmean(m[k, [j for j, t in enumerate(qtypes) if t == q]]) for k in range(len(labels))]
                     for q in groups}
        usable = [math.nan if v is None else v for v in means]
        out["per_feature"][name] = {
            "means": means,
            "per_qtype": per_qtype,
            "spearman": _corr(spearmanr, usable, gold_means),
            "kendall": _corr(kendalltau, usable, gold_means),
            "per_sample_spearman": [_corr(spearmanr, m[k], gold[k])["statistic"] for k in range(len(labels))],
        }
    return out


def best_and_worst(view: dict[str, Any]) -> tuple[str | None, str | None]:
    """The feature whose means track the gold best (highest Spearman) and the one that diverges most (lowest);
    features with an undefined correlation (constant across checkpoints) are neither."""
    scored = [(v["spearman"]["statistic"], k) for k, v in view["per_feature"].items()
              if v["spearman"]["statistic"] is not None]
    if not scored:
        return None, None
    return max(scored)[1], min(scored)[1]


def print_feature_view(view: dict[str, Any], gold_name: str, label_name: str = "step") -> None:
    """A table of per-checkpoint feature means and each feature's correlation with the gold, then one line naming
    the feature that tracks the gold best and the one that diverges most."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"features vs gold {gold_name} (per-{label_name} means; Spearman/Kendall across "
                  f"{label_name}s; per-sample Spearman within a {label_name}, mean over {label_name}s)")
    table.add_column(label_name, justify="right")
    for name in view["features"]:
        table.add_column(name, justify="right")
    table.add_column("gold", justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for k, label in enumerate(view["labels"]):
        table.add_row(str(label), *(fmt(view["per_feature"][n]["means"][k]) for n in view["features"]),
                      fmt(view["gold_means"][k]))
    for stat in ("spearman", "kendall"):
        table.add_row(stat, *(fmt(view["per_feature"][n][stat]["statistic"]) for n in view["features"]), "")
    mean_within = lambda n: _nanmean(np.array([math.nan if v is None else v  # noqa: E731
                                               for v in view["per_feature"][n]["per_sample_spearman"]], dtype=float))
    table.add_row("per-sample", *(fmt(mean_within(n)) for n in view["features"]), "")
    Console().print(table)
    best, worst = best_and_worst(view)
    if best is None:
        print(f"no feature varies across {label_name}s: no feature correlation with {gold_name}")
    else:
        s = lambda n: view["per_feature"][n]["spearman"]["statistic"]  # noqa: E731
        print(f"feature tracking gold {gold_name} best: {best} (Spearman {s(best):.3f}); "
              f"diverging most: {worst} (Spearman {s(worst):.3f})")


def _normalize(values: Sequence[float | None]) -> list[float]:
    """Min-max to [0, 1] so trajectories on different scales share one axis; a constant line sits at 0.5."""
    x = np.array([math.nan if v is None else v for v in values], dtype=float)
    lo, hi = np.nanmin(x) if np.isfinite(x).any() else 0.0, np.nanmax(x) if np.isfinite(x).any() else 0.0
    return (np.full_like(x, 0.5) if hi == lo else (x - lo) / (hi - lo)).tolist()


def plot_feature_view(views: dict[str, dict[str, Any]], title: str, path: Path, xlabel: str = "PPO step") -> None:
    """Each feature's trajectory, min-max normalized, beside each gold's (thick dashed lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(views.values()))
    labels = first["labels"]
    numeric_x = all(isinstance(v, (int, float)) for v in labels)
    x = labels if numeric_x else list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in first["features"]:
        ax.plot(x, _normalize(first["per_feature"][name]["means"]), "o-", label=name)
    for gold_name, view in views.items():
        ax.plot(x, _normalize(view["gold_means"]), "k--", linewidth=2.5, alpha=0.8, label=f"gold {gold_name}")
    if not numeric_x:
        ax.set_xticks(x, [str(v) for v in labels], rotation=30, ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean, min-max normalized")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
