"""Shared fixtures: real tokenizer, small real models, real files on disk; no hub access."""

from __future__ import annotations

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # an accidental hub call fails fast instead of hanging
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (pytest.ini: -n 2), each worker and the processes it starts get their share of the cores:
# two workers of two OpenMP threads each on two cores would wait at every barrier for a thread the OS parked.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _share = max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
# helpers.ENV copies the environment when first imported: after the settings above, so commands started from the
# tests inherit them.
import pytest  # noqa: E402
from helpers import ROOT, tiny_llama_config  # noqa: E402

sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """SmolLM2-135M-Instruct converted from the packaged GGUF (cached across runs)."""
    from rre.offline_models import smollm2_path

    return smollm2_path()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> str:
    """A tiny random Llama with SmolLM2's real tokenizer (and chat template), saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = tiny_llama_config(tokenizer, max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                               tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def minilm_encoder():
    """The real offline relevance encoder (all-MiniLM-L6-v2), loaded once per session."""
    from rre.relevance import RelevanceEncoder

    return RelevanceEncoder("minilm")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps process-wide singletons (the first Accelerator fixes the mixed precision for the process);
    reset them after every test, so an in-process run in one test file cannot leak into another."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


# The longest files first (measured: each 2-3.5 minutes of a 13-minute run), so the two workers start on them
# and the short files fill in around them, instead of one long file running alone at the end on one worker.
LONGEST_FIRST = ("test_quickstart.py", "test_design_ladder.py", "test_run_grpo.py", "test_run_ppo.py",
                 "test_paper_seams.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture
def umask_022():
    """The usual umask, so a test can assert the permissions a command gives the files it writes."""
    old = os.umask(0o022)
    yield
    os.umask(old)
