"""SuperNI under the paper's protocol (the default) and the project's, on a fixture task whose prompt is longer
than 512 tokens: right truncation (the prompt loses its end, the response marker included), the answer as the
decoded output minus the decoded prompt, ROUGE-L against the first reference, the first 100 instances of a task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ENV, ROOT

from evaluation import SuperNITask, load_superni, score_superni, superni_prompt, tokenizer_truncation_side
from rre.prompts import get_prompt_format

LONG_DEFINITION = " ".join(f"Rule {k}: answer with the capital city of the country named below." for k in range(60))


@pytest.fixture(scope="module")
def superni_dir(tmp_path_factory) -> Path:
    """Two test tasks: one whose prompt is far over 512 tokens (two references per instance), one with 102
    instances (the protocol takes the first 100)."""
    root = tmp_path_factory.mktemp("natural-instructions")
    (root / "splits" / "default").mkdir(parents=True)
    (root / "tasks").mkdir()
    (root / "splits" / "default" / "test_tasks.txt").write_text("task1_long\ntask2_many\n")
    long = {"Definition": [LONG_DEFINITION, "another definition, never used"],
            "Instances": [{"id": "l1", "input": "Country: France.", "output": ["Paris", "The capital is Paris"]},
                          {"id": "l2", "input": "Country: Japan.", "output": ["Tokyo", "It is Tokyo"]}]}
    many = {"Definition": ["Repeat the word."],
            "Instances": [{"id": f"m{k}", "input": f"word{k}", "output": [f"word{k}"]} for k in range(102)]}
    (root / "tasks" / "task1_long.json").write_text(json.dumps(long))
    (root / "tasks" / "task2_many.json").write_text(json.dumps(many))
    return root


def run_superni(tiny_llama_dir: str, superni_dir: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "evaluation.py"), "--base_model_name", tiny_llama_dir, "--evaluations", "superni",
         "--superni_dir", str(superni_dir), "--output_dir", str(out), "--prompt_format", "alpaca",
         "--superni_max_new_tokens", "6", "--batch_size", "16", "--sampler", "generate", "--precision", "float32",
         *extra], env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "superni_eval.json").read_text())
    result["stderr"] = proc.stderr
    return result


@pytest.fixture(scope="module")
def paper_run(tiny_llama_dir, superni_dir, tmp_path_factory):
    return run_superni(tiny_llama_dir, superni_dir, tmp_path_factory.mktemp("paper"))


def greedy(model, ids: list[int], new_tokens: int) -> list[int]:
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=new_tokens, pad_token_id=model.config.pad_token_id)
    return out[0, len(ids):].tolist()


def test_a_long_prompt_loses_its_end_and_the_answer_is_output_minus_prompt(paper_run, tiny_llama_dir, superni_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tokenizer_truncation_side(tokenizer) == "right"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    fmt = get_prompt_format("alpaca")
    task = load_superni(superni_dir, 100)[0]
    assert paper_run["protocol"] == "paper" and paper_run["n_instances"] == 102  # 2 + the first 100 of 102
    assert "2 SuperNI prompt(s) longer than 512 tokens lose their right end" in paper_run["stderr"]
    for inst, row in zip(task.instances, paper_run["predictions"]):
        prompt = fmt.build(superni_prompt(task, inst))
        assert LONG_DEFINITION + "\n\n" + inst["input"] in prompt  # the first definition, two newlines, the input
        full = tokenizer(prompt).input_ids
        assert len(full) > 600
        kept = full[:512]  # the right end is cut: the instance input and the response marker are gone
        # (both long prompts are cut to 512 tokens and share a batch without padding, as this single-row check)
        kept_text = tokenizer.decode(kept, skip_special_tokens=True)
        assert inst["input"] not in kept_text and "### Response:" not in kept_text
        whole = tokenizer.decode(kept + greedy(model, kept, 6), skip_special_tokens=True)
        assert row["prediction"] == whole.replace(kept_text, "")  # neither cut nor stripped
        assert row["references"] == inst["output"]


def test_the_score_is_rouge_l_against_the_first_reference(paper_run):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(p["references"][0], p["prediction"])["rougeL"].fmeasure for p in paper_run["predictions"]]
    assert [p["rougeL"] for p in paper_run["predictions"]] == pytest.approx([100 * s for s in scores])
    assert paper_run["rougeL"] == pytest.approx(100 * sum(scores) / len(scores))
    assert [p["id"] for p in paper_run["predictions"][2:]] == [f"m{k}" for k in range(100)]


def test_first_reference_only_against_the_best_of_all():
    task = SuperNITask("t", "d", [{"id": "1", "input": "x", "output": ["Paris", "The capital is Paris"]}])
    answer = ["The capital is Paris"]  # the second reference word for word
    assert score_superni([task], answer, first_only=False)["rougeL"] == pytest.approx(100.0)
    assert score_superni([task], answer, first_only=True)["rougeL"] == pytest.approx(100 * 2 * (1 / 4) / (1 + 1 / 4))


def test_the_project_protocol_reads_the_whole_prompt_and_the_best_reference(tiny_llama_dir, superni_dir, tmp_path):
    """`project`: a prompt is cut only where it and the answer would not fit the model (1,024 positions here,
    then from the left), answers are cleaned, and the best of all references counts."""
    from rouge_score import rouge_scorer

    result = run_superni(tiny_llama_dir, superni_dir, tmp_path, "--superni_protocol", "project")
    assert result["protocol"] == "project" and result["n_instances"] == 102
    assert "lose their" not in result["stderr"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for p in result["predictions"]:
        assert p["prediction"] == p["prediction"].strip("\n ")  # cleaned
        best = max(scorer.score(ref, p["prediction"])["rougeL"].fmeasure for ref in p["references"])
        assert p["rougeL"] == pytest.approx(100 * best)
