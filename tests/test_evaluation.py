"""evaluation.py and the evaluation scripts on a tiny random Llama with two LoRA checkpoints saved by peft."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from helpers import ENV, ROOT, run_cli
from scipy.stats import spearmanr
from tiny_reward_models import save_lora_adapter, save_tiny_starling

import evaluation
from evaluation import alpaca_paths, load_superni, score_superni, superni_rouge_l
from rre.data import join_outputs, load_examples, load_outputs
from rre.prompts import resolve_prompt_format

FIXTURE = ROOT / "data" / "superni-fixture"
EVAL = [
    {"input": "Name a fruit.", "output": "An apple.", "qtype": "CONSTRAINED"},
    {"input": "Write a poem about rain.", "output": "Rain taps the roof all night.", "qtype": "OPENENDED"},
    {"input": "Translate into French.\n\n### Input:\nGood morning", "output": "Bonjour", "qtype": "CONSTRAINED"},
    {"instruction": "Summarize the text.", "input": "The meeting moved to Friday because of the storm.",
     "output": "The storm pushed the meeting to Friday.", "qtype": "OPENENDED"},
    {"input": "Suggest a weekend hobby.", "output": "Try hiking with friends.", "qtype": "OPENENDED"},
]


def alpaca_eval_loader():
    with warnings.catch_warnings():  # alpaca_eval imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from alpaca_eval.utils import load_or_convert_to_dataframe
    return load_or_convert_to_dataframe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("run")
    for step in (1, 2):
        save_lora_adapter(tiny_llama_dir, root / f"alpaca_test_step_{step}", seed=step)
    (root / "eval.json").write_text(json.dumps(EVAL))
    return root


@pytest.fixture(scope="module")
def evaluated(run_dir, tiny_llama_dir):
    """scripts/evaluate.sh over both checkpoints (one real `python evaluation.py` run answering both)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "evaluate.sh"), "--eval_path", str(run_dir / "eval.json"),
         "--max_new_tokens", "8"],
        env={**ENV, "BASE": tiny_llama_dir, "OUTPUT_DIR": str(run_dir), "PREFIX": "alpaca_test", "BATCH_SIZE": "2",
             "STEPS": "1 2"},
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_merged_adapter_equals_the_peft_model(run_dir, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = str(run_dir / "alpaca_test_step_1")
    merged, tokenizer = evaluation.load_policy(tiny_llama_dir, adapter, precision="float32")
    assert tokenizer.padding_side == "left"
    ids = torch.tensor([tokenizer("Name a fruit.").input_ids])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        peft_logits = PeftModel.from_pretrained(base, adapter).eval()(ids).logits
        merged_logits = merged(ids).logits
    assert torch.allclose(merged_logits, peft_logits, atol=1e-5)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # the adapter changes the model
    # bf16 (the rule's choice where native): merged in float32, then cast once.
    merged_bf16, _ = evaluation.load_policy(tiny_llama_dir, adapter, precision="bfloat16")
    assert merged_bf16.dtype == torch.bfloat16
    with torch.no_grad():
        torch.testing.assert_close(merged_bf16(ids).logits.float(), peft_logits, atol=0.05, rtol=0.05)


def test_device_loads_the_whole_checkpoint_on_that_gpu(tiny_llama_dir, monkeypatch):
    """--device is the paper's GPU index: the checkpoint goes whole onto that GPU (device_map={"": "cuda:1"}), never
    spread by "auto"; an index no GPU has stops in one line. Two GPUs are stood in for (this machine has none):
    the load is asked for cuda:1 and done on the CPU."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    asked, load = [], AutoModelForCausalLM.from_pretrained

    def on_cpu(name, **kwargs):
        asked.append(kwargs["device_map"])
        return load(name, **{**kwargs, "device_map": {"": "cpu"}})

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", on_cpu)
    model, _ = evaluation.load_policy(tiny_llama_dir, precision="float32", device=1)
    assert asked == [{"": "cuda:1"}] and {p.device.type for p in model.parameters()} == {"cpu"}
    with pytest.raises(evaluation.DataError, match=r"^--device 2: 2 CUDA device\(s\) visible \(0..1\)"):
        evaluation.policy_device(2)


def test_device_on_a_machine_without_cuda(tiny_llama_dir, tmp_path):
    """Without CUDA the checkpoint loads on the CPU whatever the index; a negative index stops in one line."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert evaluation.policy_device(0) == evaluation.policy_device(3) == "cpu"
    proc = run_cli("evaluation.py", ["--base_model_name", tiny_llama_dir, "--device=-1", "--output_dir",
                                     str(tmp_path / "out")], expect_rc=None, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --device must be >= 0, got -1"
    assert not (tmp_path / "out").exists()


def test_outputs_are_alpaca_eval_files(evaluated):
    load_or_convert_to_dataframe = alpaca_eval_loader()
    examples = load_examples(evaluated / "eval.json")
    for step in (1, 2):
        name = f"alpaca_test_step_{step}"
        final, partial = alpaca_paths(evaluated / name, name)
        assert final.is_file() and not partial.exists()
        df = load_or_convert_to_dataframe(final)  # alpaca_eval's own loader, as `--model_outputs` reads it
        # Beside alpaca_eval's four fields, whether decoding stopped at the token cap (rre.cutoff); alpaca_eval
        # keeps the extra column and reads only its own.
        assert list(df.columns) == ["instruction", "output", "generator", "dataset", "truncated"]
        assert df["truncated"].map(lambda c: isinstance(c, bool)).all()
        assert len(df) == len(EVAL) and set(df["generator"]) == {name} and set(df["dataset"]) == {"eval"}
        assert df["output"].map(lambda o: isinstance(o, str)).all()
        # Every instruction maps back to its annotated example, in order.
        assert join_outputs(load_outputs(final), examples, final) == examples
        assert df["instruction"].tolist() == [ex.seed_input for ex in examples]


def test_several_adapters_in_one_call_answer_as_separate_calls(evaluated, tiny_llama_dir, tmp_path):
    """evaluate.sh passes every checkpoint to one evaluation.py process; each answers exactly as a call of its
    own would (same seed, fresh load)."""
    for step in (2, 1):  # one call each, in the other order
        name = f"alpaca_test_step_{step}"
        evaluation.main(["--base_model_name", tiny_llama_dir, "--peft_model_name", str(evaluated / name),
                         "--output_dir", str(tmp_path), "--eval_path", str(evaluated / "eval.json"),
                         "--max_new_tokens", "8", "--batch_size", "2", "--evaluations", "alpaca"])
        alone, _ = alpaca_paths(tmp_path, name)
        together, _ = alpaca_paths(evaluated / name, name)
        assert json.loads(alone.read_text()) == json.loads(together.read_text())
    outputs = {step: json.loads(alpaca_paths(evaluated / f"alpaca_test_step_{step}",
                                              f"alpaca_test_step_{step}")[0].read_text()) for step in (1, 2)}
    assert [r["output"] for r in outputs[1]] != [r["output"] for r in outputs[2]]  # two adapters, two answer sets


def test_several_adapters_into_one_folder_must_not_collide(run_dir, tiny_llama_dir, tmp_path, capsys):
    one = str(run_dir / "alpaca_test_step_1")
    cases = [((one, one + "/"), "two adapters named alpaca_test_step_1"),
             ((one, str(run_dir / "alpaca_test_step_2")), "same superni_eval.json")]
    for adapters, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            evaluation.main(["--base_model_name", tiny_llama_dir, "--peft_model_name", *adapters,
                             "--output_dir", str(tmp_path / "out"), "--eval_path", str(run_dir / "eval.json"),
                             "--superni_dir", str(FIXTURE)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_complete_file_is_kept(evaluated, tiny_llama_dir, capsys):
    name = "alpaca_test_step_1"
    final, _ = alpaca_paths(evaluated / name, name)
    before = (final.stat().st_mtime_ns, final.read_text())
    evaluation.main(["--base_model_name", tiny_llama_dir, "--peft_model_name", str(evaluated / name),
                     "--eval_path", str(evaluated / "eval.json"), "--evaluations", "alpaca"])
    assert "kept" in capsys.readouterr().out
    assert (final.stat().st_mtime_ns, final.read_text()) == before


def test_partial_run_resumes(run_dir, tiny_llama_dir, tmp_path):
    name = "alpaca_test_step_2"
    final, partial = alpaca_paths(tmp_path, name)
    examples = load_examples(run_dir / "eval.json")
    planted = {0: "PLANTED zero", 3: "PLANTED three"}
    lines = [json.dumps({"index": i, "instruction": examples[i].seed_input, "output": text, "generator": name,
                         "dataset": "eval"}) for i, text in planted.items()]
    partial.write_text("\n".join(lines) + '\n{"index": 4, "instruc')  # the last line was cut by a kill
    evaluation.main(["--base_model_name", tiny_llama_dir, "--peft_model_name", str(run_dir / name),
                     "--output_dir", str(tmp_path), "--eval_path", str(run_dir / "eval.json"),
                     "--max_new_tokens", "8", "--batch_size", "2", "--evaluations", "alpaca"])
    records = json.loads(final.read_text())
    assert not partial.exists()
    assert [r["instruction"] for r in records] == [ex.seed_input for ex in examples]
    assert records[0]["output"] == "PLANTED zero" and records[3]["output"] == "PLANTED three"
    assert all("PLANTED" not in r["output"] for k, r in enumerate(records) if k not in planted)


def test_partial_from_another_eval_set_is_an_error(run_dir, tiny_llama_dir, tmp_path, capsys):
    name = "alpaca_test_step_2"
    _, partial = alpaca_paths(tmp_path, name)
    partial.write_text(json.dumps({"index": 0, "instruction": "Something else.", "output": "x"}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        evaluation.main(["--base_model_name", tiny_llama_dir, "--peft_model_name", str(run_dir / name),
                         "--output_dir", str(tmp_path), "--eval_path", str(run_dir / "eval.json"),
                         "--evaluations", "alpaca"])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


def test_monotonicity_script_over_evaluated_checkpoints(evaluated, smollm2_dir, tmp_path_factory):
    """The paper's pipeline end to end: evaluate.sh outputs -> monotonicity.sh with a tiny gold model."""
    gold_dir, _ = save_tiny_starling(tmp_path_factory.mktemp("gold") / "starling", smollm2_dir)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "monotonicity.sh"), "--eval_path", str(evaluated / "eval.json"),
         "--gold_device", "cpu", "--bootstrap_samples", "100", "--relevance_model", "minilm"],
        env={**ENV, "OUTPUT_DIR": str(evaluated), "PREFIX": "alpaca_test", "GOLD_MODEL": gold_dir,
             "GOLD_TOKENIZER": smollm2_dir, "STEPS": "1 2"},
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((evaluated / "monotonicity.json").read_text())
    assert result["steps"] == [1, 2]
    assert result["prompt_format"] == "chat"  # auto: the adapters' base tokenizer has a chat template
    assert str(spearmanr(result["steps_mean_proxy"], result["steps_mean_gold"])) in proc.stdout
    assert all("win_rate" in row for row in result["checkpoints"])


def test_alpaca_eval_script(evaluated, tmp_path):
    script = ["bash", str(ROOT / "scripts" / "alpaca_eval.sh")]
    env = {k: v for k, v in ENV.items() if k not in ("OPENAI_API_KEY", "OPENAI_API_KEYS")}
    env.update(OUTPUT_DIR=str(evaluated), PREFIX="alpaca_test", EVAL_PATH=str(evaluated / "eval.json"),
               ALPACA_EVAL_STEPS="1 2")
    proc = subprocess.run(script, env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "OPENAI_API_KEY is not set" in proc.stderr  # not run: printed to paste
    assert len([line for line in proc.stdout.splitlines() if line.startswith("alpaca_eval ")]) == 2

    reference = tmp_path / "reference.json"
    proc = subprocess.run(script, env={**env, "OPENAI_API_KEY": "sk-test", "DRY_RUN": "1",
                                       "REFERENCE_OUTPUTS": str(reference)},
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("alpaca_eval ")]
    assert len(commands) == 2
    assert all("--annotators_config alpaca_eval_gpt4" in c and f"--reference_outputs {reference}" in c
               for c in commands)
    # The local reference outputs: alpaca_eval reads them, and they pair with the model outputs by instruction.
    load_or_convert_to_dataframe = alpaca_eval_loader()
    ref = load_or_convert_to_dataframe(reference)
    model = load_or_convert_to_dataframe(evaluated / "alpaca_test_step_1" / "alpaca-eval-alpaca_test_step_1.json")
    assert ref["instruction"].tolist() == model["instruction"].tolist()
    assert ref["output"].tolist() == [r["output"] for r in EVAL]


# ---------------------------------------------------------------------------------------------------------
# Super-NaturalInstructions.


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat": P = R = 5/6.
    assert superni_rouge_l("the cat sat on the mat", ["the cat is on the mat"]) == pytest.approx(5 / 6)
    # Stemming: running -> run, dogs -> dog, runs -> run; LCS = 1 of 2 and 3 tokens: F = 2 PR / (P + R) = 0.4.
    assert superni_rouge_l("running dogs", ["the dog runs"]) == pytest.approx(0.4)
    # The best reference counts; case and punctuation are ignored.
    assert superni_rouge_l("Paris.", ["Lyon", "paris"]) == pytest.approx(1.0)
    assert superni_rouge_l("", ["anything"]) == 0.0


def test_superni_fixture_with_planted_predictions():
    tasks = load_superni(FIXTURE, max_instances=100)
    assert [len(t.instances) for t in tasks] == [4, 3, 3]
    predictions = [
        "Paris", "The capital is Tokyo", "Lagos", "ottawa",  # 1, P=1/4 R=1 -> 0.4, 0, 1: mean 0.6
        "positive", "negative", "positive",  # 1, 1, 0: mean 2/3
        "The committee delayed the meeting because of bad weather.", "", "The drug made the patient feel better.",
    ]  # 1 (first reference), 0, 1 (second reference): mean 2/3
    result = score_superni(tasks, predictions)
    assert result["tasks"]["task9001_fixture_capital_of_country"]["rougeL"] == pytest.approx(60.0)
    assert result["tasks"]["task9002_fixture_sentiment_of_review"]["rougeL"] == pytest.approx(200 / 3)
    assert result["tasks"]["task9003_fixture_sentence_simplification"]["rougeL"] == pytest.approx(200 / 3)
    assert result["rougeL"] == pytest.approx(100 * (2.4 + 2 + 2) / 10)  # mean over all 10 instances: 64.0
    assert load_superni(FIXTURE, max_instances=2)[0].instances == tasks[0].instances[:2]


def test_superni_script_on_the_fixture(run_dir, tiny_llama_dir):
    """scripts/superni.sh -> evaluation.py --evaluations superni on the last checkpoint, greedy, the paper's
    protocol (ROUGE-L against the first reference)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "superni.sh"), "--superni_max_new_tokens", "8"],
        env={**ENV, "BASE": tiny_llama_dir, "OUTPUT_DIR": str(run_dir), "PREFIX": "alpaca_test",
             "SUPERNI_DIR": str(FIXTURE), "SUPERNI_STEPS": "last"},
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SuperNI source: fixture (3 tasks" in proc.stdout
    result = json.loads((run_dir / "alpaca_test_step_2" / "superni_eval.json").read_text())
    assert (result["n_tasks"], result["n_instances"], result["generator"]) == (3, 10, "alpaca_test_step_2")
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert result["protocol"] == "paper"
    recomputed = [scorer.score(p["references"][0], p["prediction"])["rougeL"].fmeasure for p in result["predictions"]]
    assert result["rougeL"] == pytest.approx(100 * sum(recomputed) / len(recomputed))


def test_missing_superni_checkout(tmp_path, tiny_llama_dir):
    proc = run_cli("evaluation.py", ["--base_model_name", tiny_llama_dir, "--evaluations", "superni", "--output_dir",
                                     str(tmp_path), "--superni_dir", str(tmp_path / "natural-instructions")],
                   expect_rc=None, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: --superni_dir {tmp_path / 'natural-instructions'}: no SuperNI checkout")
    assert "git clone https://github.com/allenai/natural-instructions" in lines[-1]
    assert "--superni_dir data/superni-fixture" in lines[-1]
    assert not any(line.startswith("Traceback") for line in lines)


def test_defaults_are_the_papers_run_alpaca_eval():
    """Sampling as the paper's run_alpaca_eval (temperature 0.7, top_p 1.0, no top_k: transformers' 50, 512 new
    tokens), its eval file and its SuperNI checkout place."""
    from evaluation import EvalArguments

    args = EvalArguments(base_model_name="m")
    assert (args.temperature, args.top_p, args.top_k, args.max_new_tokens, args.batch_size) == (0.7, 1.0, 50, 512, 8)
    assert (args.eval_path, args.superni_dir) == ("data/alpaca_eval.json", "data/natural-instructions")  # relative
    # (transformers 5's GenerationConfig leaves top_k unset; the paper's transformers 4.x defaulted it to 50.)


def test_missing_paper_eval_file_says_how_to_get_it(tmp_path, tiny_llama_dir):
    proc = subprocess.run([sys.executable, str(ROOT / "evaluation.py"), "--base_model_name", tiny_llama_dir,
                           "--evaluations", "alpaca", "--output_dir", str(tmp_path / "out")], env=ENV,
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)  # a folder without data/
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1] == (
        "error: --eval_path data/alpaca_eval.json: no such file; get the paper's data with "
        "`bash scripts/get_paper_data.sh`, or pass --eval_path data/eval.json (30 offline instructions)")


def test_both_samplers_answer_and_a_generation_config_with_other_processors_falls_back(smollm2_dir, capsys):
    """The default decode path and --sampler generate both answer (greedy: the same answers); a model whose
    generation config asks for a logits processor the decode path does not apply is answered by HF generate,
    and the run says so."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    fmt = resolve_prompt_format("alpaca", tok)
    prompts = [fmt.build("Name a primary colour."), fmt.build("What is 2 + 2? Answer in one word.")]
    answers = {s: evaluation.generate_responses(model, tok, fmt, prompts, 2, 12, do_sample=False, sampler=s)
               for s in ("loop", "generate")}
    assert answers["loop"] == answers["generate"] and all(answers["loop"])
    assert "note:" not in capsys.readouterr().err
    model.generation_config.repetition_penalty = 1.3
    evaluation.generate_responses(model, tok, fmt, prompts, 2, 4, do_sample=False)
    assert "sets repetition_penalty=1.3; answering with HF generate" in capsys.readouterr().err
