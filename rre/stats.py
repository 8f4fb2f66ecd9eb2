"""The statistics eval_monotonicity.py, prescreen.py and the design ladder report: JSON-safe correlations, the
bootstrap interval of a Spearman correlation of means over instructions, and the exact sign-flip permutation test
of paired differences over seeds."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

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


def sign_flip_test(values: Sequence[float]) -> dict[str, Any]:
    """Exact two-sided permutation test of a zero mean for paired differences (one per seed): under the null each
    difference is as likely negative as positive, so all 2^n sign assignments are equally likely; the p-value is
    the share of them whose |mean| reaches the observed |mean|. With n values it cannot go below 2 / 2^n
    (`min_p`): 0.125 for 4 seeds, 0.031 for 6. Exact enumeration, n <= 20."""
    x = np.asarray([float(v) for v in values], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "pvalue": None, "min_p": None}
    if n > 20:
        raise ValueError(f"exact sign-flip enumeration is for n <= 20 values, got {n}")
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # every assignment, one per row
    means = np.abs(signs @ x) / n
    observed = abs(x.sum()) / n
    # Ties within rounding count as reaching the observed value (the identity assignment always does).
    reached = int((means >= observed - 1e-12 * max(1.0, observed)).sum())
    return {"n": n, "pvalue": reached / 2 ** n, "min_p": min_sign_flip_p(n)}


def min_sign_flip_p(n: int) -> float:
    """The smallest two-sided p-value an exact sign-flip test of n nonzero values can give: all n of one sign,
    reached by the identity and the all-flipped assignment."""
    return min(1.0, 2.0 / 2 ** n)
