"""A worked example of a researcher's own white-box feature (see README, "Add a feature").

`score_outputs.py --features_module examples/my_features.py` and `run_ppo.py --features_module ...` load
this file: EXTRA_FEATURES adds a column per feature, and `combine` decides the final reward from all of them.
"""

import re

HEDGES = re.compile(r"\b(as an ai|i cannot|i can't|i'm sorry|i am sorry)\b", re.IGNORECASE)


def hedging(sample) -> float:
    """1.0 when the response hedges or refuses ("As an AI...", "I'm sorry"), else 0.0."""
    return 1.0 if HEDGES.search(sample.response) else 0.0


EXTRA_FEATURES = {"hedging": hedging}


def combine(f: dict) -> float:
    """The paper's reward, halved for hedging responses."""
    return f["paper_reward"] * (0.5 if f["hedging"] else 1.0)
