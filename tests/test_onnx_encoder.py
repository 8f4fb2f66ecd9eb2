"""The ONNX Runtime relevance backend against the exact PyTorch float32 path (real all-MiniLM-L6-v2)."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from reward_model import ReversedEngineeredRewardForInference, RewardConfig  # noqa: E402
from rre.relevance import RelevanceEncoder  # noqa: E402

QUERIES = ["Name the capital of France.", "Write a haiku about rain.", "What is 3 times 4?", "Suggest a hobby."]
RESPONSES = ["Paris is the capital of France.", "Rain taps softly on the roof", "12", "Try hiking with friends."]
REFERENCES = ["Paris", "Drops on the window", "Twelve", "Hiking"]
QTYPES = ["CONSTRAINED", "OPENENDED", "CONSTRAINED", "OPENENDED"]


@pytest.fixture(scope="module")
def exact():
    return RelevanceEncoder("minilm", dtype="float32", backend="torch")


@pytest.mark.parametrize("backend,tolerance", [("onnx", 1e-5), ("onnx-int8", 0.1)])
def test_onnx_dot_products_match_float32(exact, backend, tolerance):
    fast = RelevanceEncoder("minilm", dtype="float32", backend=backend)
    assert fast.onnx is not None
    config = RewardConfig(rar_max_dot=1.0)
    _, want = ReversedEngineeredRewardForInference(config, encoder=exact)(QUERIES, RESPONSES, REFERENCES, QTYPES,
                                                                          return_features=True)
    _, got = ReversedEngineeredRewardForInference(config, encoder=fast)(QUERIES, RESPONSES, REFERENCES, QTYPES,
                                                                        return_features=True)
    for g, w in zip(got, want):
        assert g["QR"] == pytest.approx(w["QR"], abs=tolerance)
        assert g["RAR"] == pytest.approx(w["RAR"], abs=tolerance)
    # Same normalization as the sentence-transformers path: unit vectors.
    assert fast.encode(["a sentence"]).norm(dim=-1).item() == pytest.approx(1.0, abs=1e-5)


def test_config_flag_builds_the_backend():
    white_box_reward = ReversedEngineeredRewardForInference(
        RewardConfig(relevance_model="minilm", relevance_backend="onnx"))
    assert white_box_reward.encoder.onnx is not None and white_box_reward.encoder.backend == "onnx"
