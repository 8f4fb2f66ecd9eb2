"""rre/stats.py's exact sign-flip permutation test: against a brute-force loop over every sign assignment, against
scipy's permutation test, and at the floor a seed count allows."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy import stats

from rre.stats import min_sign_flip_p, sign_flip_test


def brute_force_p(values: list[float]) -> float:
    observed = abs(sum(values)) / len(values)
    hits = total = 0
    for signs in itertools.product((1, -1), repeat=len(values)):
        total += 1
        hits += abs(sum(s * v for s, v in zip(signs, values))) / len(values) >= observed - 1e-12
    return hits / total


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 8, 10])
def test_matches_brute_force_enumeration(n):
    rng = random.Random(n)
    for _ in range(20):
        values = [rng.gauss(0.3, 1.0) for _ in range(n)]
        assert sign_flip_test(values)["pvalue"] == pytest.approx(brute_force_p(values))


def test_matches_scipys_exact_permutation_test():
    rng = np.random.default_rng(0)
    for n in (4, 6, 7):
        values = rng.normal(0.5, 1.0, n)
        ref = stats.permutation_test((values,), lambda x: np.mean(x), permutation_type="samples",
                                     n_resamples=np.inf, alternative="two-sided")
        assert sign_flip_test(values)["pvalue"] == pytest.approx(ref.pvalue)


def test_floor_is_two_over_two_to_the_n():
    assert sign_flip_test([0.1, 0.4, 0.2, 0.3])["pvalue"] == 0.125  # 4 seeds, all one sign
    six = sign_flip_test([0.1, 0.4, 0.2, 0.3, 0.5, 0.2])
    assert six["pvalue"] == six["min_p"] == 2 / 64
    assert min_sign_flip_p(1) == 1.0 and min_sign_flip_p(10) == pytest.approx(2 / 1024)
    # One value of the other sign: the assignments at least as extreme are the identity, the flip of the
    # small one (larger |mean|), and both again all flipped.
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0, 5.0, -0.5])["pvalue"] == 4 / 64


def test_no_difference_and_no_values():
    assert sign_flip_test([0.0, 0.0, 0.0])["pvalue"] == 1.0
    assert sign_flip_test([])["pvalue"] is None
    with pytest.raises(ValueError):
        sign_flip_test([1.0] * 21)
