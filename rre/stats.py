"""The statistics eval_monotonicity.py and prescreen.py report: JSON-safe correlations and the bootstrap interval
of a Spearman correlation of means over instructions."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.stats import spearmanr


def number(x: Any) -> float | None:
    """JSON-safe float: NaN (an undefined correlation) becomes null."""
    x = float(x)
    return None if math.isnan(x) else x


def correlation(result: Any) -> dict[str, float | None]:
    """A scipy correlation result as JSON: its statistic and p-value, null where undefined."""
    return {"statistic": number(result.statistic), "pvalue": number(result.pvalue)}


def bootstrap_spearman(proxy: np.ndarray, gold: np.ndarray, n_resamples: int, seed: int) -> dict[str, Any]:
    """95% percentile interval of the Spearman correlation of row means (per step or per system), resampling
    instructions (the columns of `proxy`) with replacement. `gold` is resampled with the same columns when it
    holds per-sample scores (rows x instructions); per-row scores (a leaderboard) stay fixed. A resample whose mean
    vector is constant has no correlation: it is left out and counted (n_valid), without a warning."""
    rng = np.random.default_rng(seed)
    n = proxy.shape[1]
    stats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_resamples):
            cols = rng.integers(0, n, size=n)
            g = gold[:, cols].mean(1) if gold.ndim == 2 else gold
            rho = spearmanr(proxy[:, cols].mean(1), g).statistic
            if not math.isnan(rho):
                stats.append(rho)
    lo, hi = np.percentile(stats, [2.5, 97.5]).tolist() if stats else [None, None]
    return {"n_resamples": n_resamples, "seed": seed, "n_valid": len(stats), "ci95": [lo, hi]}
