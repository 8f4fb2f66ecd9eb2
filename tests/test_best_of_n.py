"""best_of_n.py: the best-of-k estimator against brute force, the per-prompt draws (reproducible, independent of
the batch), resuming from saved draws and scores, a tiny run end to end, and bad input refused in one line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT
from rre import best_of_n as bon
from rre.prompts import resolve_prompt_format
from tiny_reward_models import save_tiny_classifier

EVAL = ROOT / "data" / "eval.json"
PAPER_VAL = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"


# ---------------------------------------------------------------------------------------------------------
# The estimator.


def brute_force(proxy: np.ndarray, gold: np.ndarray, k: int) -> float:
    """The mean, over every k-subset (in draw order), of the gold of the subset's first proxy maximum."""
    picks = [gold[list(s)[int(np.argmax(proxy[list(s)]))]] for s in itertools.combinations(range(len(proxy)), k)]
    return float(np.mean(picks))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_best_of_k_is_the_mean_over_all_subsets(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        proxy = rng.integers(0, 3, size=n).astype(float)  # few values: many ties
        gold = rng.normal(size=n)
        got = bon.best_of_k(proxy, gold, range(1, n + 1))
        want = [brute_force(proxy, gold, k) for k in range(1, n + 1)]
        assert got == pytest.approx(want, abs=1e-12)


def test_best_of_k_ends_at_the_mean_and_the_argmax():
    proxy, gold = np.array([0.3, 0.9, 0.1, 0.9]), np.array([1.0, 2.0, 3.0, 4.0])
    one, four = bon.best_of_k(proxy, gold, [1, 4])
    assert one == pytest.approx(2.5)  # k=1: a random draw
    assert four == pytest.approx(2.0)  # k=n: the first of the two tied maxima, as argmax picks it


def test_best_of_k_weights_sum_to_one():
    for n in (1, 4, 16):
        for k in range(1, n + 1):
            assert bon.best_of_k_weights(n, k).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bon.best_of_k_weights(4, 5)


def test_paired_difference_interval_is_over_prompts():
    """A design that always picks the better-gold draw beats a design that picks the worse, at every k > 1."""
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(30, 4))
    cut = np.zeros((30, 4), dtype=bool)
    result = bon.build_result([None] * 30, {"li": -gold, "full": gold}, {"g": gold}, cut, [1, 2, 4], 200, 0, "li")
    diff = result["differences"]["full - li"]["g"]
    assert diff[0]["mean"] == pytest.approx(0.0, abs=1e-12)  # k=1: both designs pick at random
    assert diff[-1]["ci"][0] > 0
    assert result["designs"]["full"]["golds"]["g"]["spearman_along_n"]["statistic"] == pytest.approx(1.0)
    assert "full" in bon.markdown_table(result)


# ---------------------------------------------------------------------------------------------------------
# Prompts and draws.


def test_prompt_selection_is_fixed_and_nested():
    assert bon.select_prompts(2000, 200, 0) == bon.select_prompts(2000, 200, 0)
    assert bon.select_prompts(2000, 40, 0) == bon.select_prompts(2000, 200, 0)[:40]
    assert bon.select_prompts(2000, 200, 1) != bon.select_prompts(2000, 200, 0)
    assert sorted(bon.select_prompts(5, 10, 0)) == list(range(5))
    assert bon.prompt_seed(42, 7) == bon.prompt_seed(42, 7) != bon.prompt_seed(42, 8)


@pytest.fixture(scope="module")
def tiny_policy(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.padding_side = "left"
    return model, tokenizer, resolve_prompt_format("auto", tokenizer)


SETTINGS = bon.DrawSettings("tiny", n=3, max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0,
                            prompt_format="chat", response_postprocess="paper", dtype="float32")


def test_draws_depend_on_their_prompt_seed_only(tiny_policy):
    model, tokenizer, fmt = tiny_policy
    eos = [tokenizer.eos_token_id]
    a, b = fmt.build("Name a colour."), fmt.build("Write a very long poem about the sea and the sky at night.")
    together = bon.draw_answers(model, tokenizer, fmt, [a, b], [11, 22], SETTINGS, eos)
    again = bon.draw_answers(model, tokenizer, fmt, [a, b], [11, 22], SETTINGS, eos)
    alone = bon.draw_answers(model, tokenizer, fmt, [b], [22], SETTINGS, eos)
    swapped = bon.draw_answers(model, tokenizer, fmt, [b, a], [22, 11], SETTINGS, eos)
    other_seed = bon.draw_answers(model, tokenizer, fmt, [b], [23], SETTINGS, eos)
    assert together == again
    assert together[1] == alone[0] == swapped[0]
    assert together[0] == swapped[1]
    assert other_seed[0] != alone[0]
    texts = [x["output"] for x in together[0]]
    assert len(set(texts)) > 1  # the n draws of one prompt differ from each other
    for x in together[0] + together[1]:  # a random tiny model rarely says EOS within 12 tokens
        assert x["cut"] == (x["tokens"] == SETTINGS.max_new_tokens)


# ---------------------------------------------------------------------------------------------------------
# The command.


@pytest.fixture(scope="module")
def golds(tmp_path_factory, smollm2_dir):
    root = tmp_path_factory.mktemp("golds")
    return [save_tiny_classifier(root / f"gold{s}", smollm2_dir, seed=s)[0] for s in (0, 1)]


def cli(policy: str, out: Path, golds: list[str], *extra: str) -> list[str]:
    args = ["--base_model_name", policy, "--eval_path", str(EVAL), "--n_prompts", "5", "--n", "4",
            "--max_new_tokens", "8", "--chunk_size", "2", "--relevance_model", "minilm", "--bootstrap_samples", "50",
            "--precision", "float32", "--output_dir", str(out)]
    for g in golds:
        args += ["--gold_model", g]
    return args + (["--gold_type", "classifier"] if golds else []) + list(extra)


def test_tiny_run_end_to_end_and_resume(tiny_llama_dir, golds, tmp_path, capsys):
    import best_of_n

    out = tmp_path / "bon"
    best_of_n.main(cli(tiny_llama_dir, out, [], "--phase", "draw"))
    chunks = sorted((out / bon.SAMPLES_DIR).glob("chunk-*.json"))
    assert len(chunks) == 3  # 5 prompts in chunks of 2
    drawn = [c.read_text() for c in chunks]
    capsys.readouterr()

    result = best_of_n.main(cli(tiny_llama_dir, out, golds))
    printed = capsys.readouterr().out
    assert "reused" in printed and "drawing" not in printed
    assert [c.read_text() for c in chunks] == drawn  # nothing drawn again
    assert result["ks"] == [1, 2, 3, 4] and result["n_prompts"] == 5
    assert set(result["designs"]) == {"li", "li_rp", "li_qr_rp", "full"}
    assert len(result["golds"]) == 2
    for rep in result["designs"].values():
        for g in result["golds"]:
            gain = rep["golds"][g]["gain"]
            assert gain[0]["mean"] == pytest.approx(0.0, abs=1e-9)
            assert gain[-1]["ci"][0] <= gain[-1]["mean"] <= gain[-1]["ci"][1]
        assert 0.0 <= min(rep["cut_picked"]) <= max(rep["cut_picked"]) <= 1.0
    # k=1 is the mean over all draws: the same for every design.
    firsts = {g: {d: rep["golds"][g]["mean"][0] for d, rep in result["designs"].items()} for g in result["golds"]}
    for by_design in firsts.values():
        assert max(by_design.values()) - min(by_design.values()) < 1e-9
    written = json.loads((out / bon.RESULT).read_text())
    assert set(written["differences"]) == {"li_rp - li", "li_qr_rp - li", "full - li"}
    assert written["prompt_indices"] == bon.select_prompts(30, 5, 0)
    assert (out / bon.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| gold | design |" in printed

    # A re-run scores nothing again: the caches hold every score, and the report is the same.
    caches = {p: p.read_text() for p in (out / bon.SCORES_DIR).rglob("*.json")}
    assert len(caches) == 3 * 3  # proxy features and two golds, 3 chunks each
    again = best_of_n.main(cli(tiny_llama_dir, out, golds))
    assert {p: p.read_text() for p in (out / bon.SCORES_DIR).rglob("*.json")} == caches
    assert again["designs"] == result["designs"] and again["differences"] == result["differences"]

    # A larger --n_prompts extends the run: its full chunks are reused; the last, now with another prompt in it,
    # is drawn again, and its old prompt's draws come out the same (they depend on that prompt's seed only).
    capsys.readouterr()
    best_of_n.main(cli(tiny_llama_dir, out, [], "--phase", "draw", "--n_prompts", "6"))
    assert "drawing 4 answers to each of 2 prompt(s) (4 reused)" in capsys.readouterr().out
    assert json.loads(chunks[2].read_text())["answers"][0] == json.loads(drawn[2])["answers"][0]
    # ... and its scores: the chunks of prompts already scored are read, not scored again.
    mtimes = {p: p.stat().st_mtime_ns for p in caches if not p.name.endswith("0002.json")}
    grown = best_of_n.main(cli(tiny_llama_dir, out, golds, "--n_prompts", "6"))
    assert grown["n_prompts"] == 6
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_a_broken_saved_chunk_is_one_line(tiny_llama_dir, tmp_path, capsys):
    import best_of_n

    out = tmp_path / "bon"
    best_of_n.main(cli(tiny_llama_dir, out, [], "--phase", "draw", "--n_prompts", "2"))
    chunk = out / bon.SAMPLES_DIR / "chunk-0000.json"
    stored = json.loads(chunk.read_text())
    stored["answers"][0] = stored["answers"][0][:1]
    chunk.write_text(json.dumps(stored))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        best_of_n.main(cli(tiny_llama_dir, out, [], "--phase", "draw", "--n_prompts", "2"))
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "chunk-0000.json" in err[0]


HOSTILE = {
    "no policy": (["--base_model_name", "/nonexistent/policy"], "--base_model_name"),
    "n zero": (["--n", "0"], "--n"),
    "baseline not compared": (["--designs", "full", "li_rp", "--baseline", "li"], "--baseline"),
    "unknown design": (["--designs", "li", "best"], "--designs"),
    "no gold": (None, "--gold_model"),
    "bad phase": (["--phase", "score"], "--phase"),
    "missing eval file": (["--eval_path", "/nonexistent/eval.json"], "--eval_path"),
    "nan temperature": (["--temperature", "nan"], "--temperature"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_bad_input_is_one_line_and_creates_nothing(case, tiny_llama_dir, golds, tmp_path, capsys):
    import best_of_n

    extra, flag = HOSTILE[case]
    out = tmp_path / "new" / "bon"
    args = cli(tiny_llama_dir, out, [] if extra is None else golds, *(extra or []))
    with pytest.raises(SystemExit) as exit_info:
        best_of_n.main(args)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and flag in err[0], err
    assert not (tmp_path / "new").exists()


def test_output_folder_of_someone_else_or_holding_an_input_is_refused(tiny_llama_dir, golds, tmp_path, capsys):
    import best_of_n

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me")
    eval_copy = tmp_path / "data" / "eval.json"
    eval_copy.parent.mkdir()
    eval_copy.write_text(EVAL.read_text())
    for out, extra in ((notes, []), (eval_copy.parent, ["--eval_path", str(eval_copy)])):
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(SystemExit) as exit_info:
            best_of_n.main(cli(tiny_llama_dir, out, golds, *extra))
        assert exit_info.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "--output_dir" in err[0], err
        assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.skipif(not PAPER_VAL.is_file(), reason=f"{PAPER_VAL} (the paper's validation set) is not here")
def test_paper_validation_prompts_are_a_fixed_choice():
    """The documented 200 prompts of the paper's validation file: the first of them, by record index."""
    records = json.loads(PAPER_VAL.read_text())
    chosen = bon.select_prompts(len(records), 200, 0)
    assert len(set(chosen)) == 200 and max(chosen) < len(records)
    assert chosen[:5] == bon.select_prompts(len(records), 5, 0)


def test_given_uniforms_pick_the_token_whose_interval_holds_them():
    from rre.decode import sample_categorical

    probs = torch.tensor([[0.2, 0.3, 0.5]] * 4)
    tokens = sample_categorical(probs, torch.tensor([0.0, 0.1, 0.25, 0.9], dtype=torch.float64))
    assert tokens.tolist() == [0, 0, 1, 2]


def test_each_designs_proxy_is_its_own_reward(tmp_path, minilm_encoder):
    """The features computed once with every flag on, then each design's rule, give what that design's reward
    scores directly."""
    from dataclasses import replace

    import best_of_n
    from reward_model import ReversedEngineeredRewardForInference, RewardConfig
    from rre.data import load_examples
    from rre.ladder import DESIGNS
    from rre.prompts import get_prompt_format

    every = load_examples(EVAL, require_qtype=True)
    examples = [e for e in every if e.qtype == "CONSTRAINED"][:3] + [e for e in every if e.qtype == "OPENENDED"][:3]
    assert {e.qtype for e in examples} == {"OPENENDED", "CONSTRAINED"}
    answers = ["Paris is the capital.", "word word word word", "", "### Instruction: more",
               "A long and careful answer that goes on.", "No."]
    config = RewardConfig(relevance_model="minilm")
    fmt = get_prompt_format("alpaca")
    args = best_of_n.BestOfNArguments(designs=list(DESIGNS), n=3, chunk_size=1)  # 2 prompts x 3 answers
    got = best_of_n.proxy_scores(args, config, fmt, examples, answers, tmp_path)
    for d, flags in DESIGNS.items():
        direct = ReversedEngineeredRewardForInference(replace(config, **flags), stop_strings=fmt.stop_strings,
                                                      encoder=minilm_encoder)
        want = direct([e.query for e in examples], answers, [e.reference for e in examples],
                      [e.qtype for e in examples])
        assert got[d] == pytest.approx(want, rel=1e-5, abs=1e-6), d
