"""annotate.py end to end on real files: the real MiniLM encoder for the classifier, a tiny random Llama (SmolLM2's
real tokenizer) as judge and reference writer, and run_ppo.py training on the annotated file with branching on.

The labelled instructions below are written for this test (not the paper's data), so it runs everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import run_cli
from test_run_ppo import tiny_flags

OPEN = [
    "Write a short story about a dragon who is afraid of the dark.", "Compose a poem about autumn rain.",
    "Suggest five names for a new coffee shop.", "Describe your ideal weekend.",
    "Give me some tips for staying productive while working from home.", "Brainstorm ideas for a birthday party.",
    "Write a persuasive speech about protecting the oceans.", "Create a slogan for an electric bicycle brand.",
    "Imagine a city in the year 2200 and describe it.", "Design a weekly workout plan for a beginner.",
    "Write a letter to a friend you have not seen in years.", "Come up with a recipe that uses leftover rice.",
    "Explain in your own words why people enjoy music.", "Propose a name and a plot for a fantasy novel.",
    "Generate a dialogue between a cat and a dog.", "What advice would you give a new university student?",
    "Write a blog post about learning to cook.", "Develop a marketing idea for a local bakery.",
]
CONSTRAINED = [
    "What is the capital of Australia?", "Calculate 17 multiplied by 23.", "Translate 'good night' into Spanish.",
    "Classify the following animals as mammals or birds: eagle, whale, sparrow.",
    "Convert 5 kilometres to miles.", "Who wrote the novel Pride and Prejudice?",
    "Correct the grammar in this sentence: She don't like apples.", "Identify the verb in the sentence 'The dog barked.'",
    "How many sides does a hexagon have?", "Sort these numbers in ascending order: 9, 2, 7, 4.",
    "Find the synonym of the word 'happy'.", "What is the chemical symbol for gold?",
    "Rewrite the sentence in the passive voice: The chef cooked the meal.", "Name the largest ocean on Earth.",
    "Determine whether 91 is a prime number.", "Extract the year from the text: The bridge opened in 1932.",
    "What is the boiling point of water in Fahrenheit?", "Count the vowels in the word 'education'.",
]
# Instructions to annotate: two already labelled (one of them "wrongly", to show it is kept), one in the
# instruction/input form, one in the seed's single-field form with an input.
TO_ANNOTATE = [
    {"instruction": "Write a haiku about the moon.", "output": "Silver lantern hangs"},
    {"instruction": "What is 12 plus 30?", "output": "42", "qtype": "OPENENDED"},
    {"instruction": "Summarize the text in one sentence.", "input": "The meeting moved to Tuesday because of rain.",
     "output": "The meeting is now on Tuesday."},
    {"input": "Translate into French.\n\n### Input:\nThank you", "output": "Merci"},
    {"instruction": "Suggest a theme for a school dance.", "output": "A night under the stars."},
    {"instruction": "Name the planet closest to the Sun.", "output": "Mercury", "qtype": "CONSTRAINED"},
    {"instruction": "Describe a perfect picnic.", "output": "Shade, bread, cheese and friends."},
    {"instruction": "Convert 100 Celsius to Fahrenheit.", "output": "212 F"},
]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def annotate(*flags: str) -> None:
    import annotate as cli

    cli.main(list(flags))


@pytest.fixture(scope="module")
def labelled_file(tmp_path_factory) -> Path:
    records = [{"instruction": t, "qtype": "OPENENDED"} for t in OPEN]
    records += [{"instruction": t, "qtype": "CONSTRAINED"} for t in CONSTRAINED]
    return write_json(tmp_path_factory.mktemp("train") / "labelled.json", records)


@pytest.fixture(scope="module")
def classifier_dir(labelled_file, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clf") / "qtype-classifier"
    annotate("--train_path", str(labelled_file), "--classifier_dir", str(folder), "--device", "cpu")
    return folder


@pytest.fixture(scope="module")
def annotated(classifier_dir, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("annotate")
    source = write_jsonl(folder / "prompts.jsonl", TO_ANNOTATE)
    out = folder / "out" / "prompts.annotated.jsonl"
    annotate("--input_path", str(source), "--output_path", str(out), "--classifier_dir", str(classifier_dir),
             "--device", "cpu")
    return source, out


def test_round_trip_adds_labels_and_keeps_existing_ones(annotated):
    from rre.data import QTYPES, load_examples

    source, out = annotated
    got = read_jsonl(out)
    assert len(got) == len(TO_ANNOTATE) and not Path(f"{out}.partial").exists()
    for before, after in zip(TO_ANNOTATE, got):
        if "qtype" in before:  # kept as it was, even the doubtful one, and no confidence invented for it
            assert after == before
        else:
            assert {k: v for k, v in after.items() if k not in ("qtype", "qtype_confidence")} == before
            assert after["qtype"] in QTYPES and 0.5 <= after["qtype_confidence"] <= 1.0
    # Clear cases from the hand-written training set's neighbourhood.
    assert got[0]["qtype"] == "OPENENDED" and got[7]["qtype"] == "CONSTRAINED"
    examples = load_examples(out, require_qtype=True)  # what the trainers read
    assert [e.instruction for e in examples][2:4] == ["Summarize the text in one sentence.", "Translate into French."]


def test_overwrite_labels_relabels_everything(annotated, classifier_dir, tmp_path):
    source, _ = annotated
    out = tmp_path / "relabelled.json"  # a .json name gives a JSON array
    annotate("--input_path", str(source), "--output_path", str(out), "--classifier_dir", str(classifier_dir),
             "--device", "cpu", "--overwrite_labels")
    got = json.loads(out.read_text())
    assert all("qtype_confidence" in r for r in got)
    assert got[1]["qtype"] == "CONSTRAINED"  # "What is 12 plus 30?" was labelled OPENENDED in the input


def test_resume_after_a_kill_reuses_saved_labels(annotated, classifier_dir, tmp_path, monkeypatch):
    from rre.qtype import QTypeClassifier

    source, reference_out = annotated
    out = tmp_path / "resumed.jsonl"
    real_predict = QTypeClassifier.predict
    calls: list[int] = []

    def dies_on_second_chunk(self, examples):
        calls.append(len(examples))
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill between two chunks
        return real_predict(self, examples)

    flags = ["--input_path", str(source), "--output_path", str(out), "--classifier_dir", str(classifier_dir),
             "--device", "cpu", "--batch_size", "2"]
    monkeypatch.setattr(QTypeClassifier, "predict", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        annotate(*flags)
    assert not out.exists()
    partial = Path(f"{out}.partial")
    saved = partial.read_text().splitlines()
    assert len(saved) == 1 + 2  # the header and the first chunk's two records
    with partial.open("a") as f:
        f.write('{"index": 4, "qtyp')  # a torn line, as a kill mid-write leaves
    calls.clear()
    monkeypatch.setattr(QTypeClassifier, "predict", lambda self, ex: (calls.append(len(ex)), real_predict(self, ex))[1])
    annotate(*flags)
    assert sum(calls) == 6 - 2  # six records need labels; two were saved before the kill
    assert read_jsonl(out) == read_jsonl(reference_out) and not partial.exists()


def test_malformed_record_is_refused_in_one_line_with_nothing_written(classifier_dir, tmp_path, capsys, monkeypatch):
    import rre.qtype

    records = [dict(r) for r in TO_ANNOTATE]
    records[5] = {"instruction": ["not", "a", "string"], "output": "x"}
    source = write_json(tmp_path / "bad.json", records)
    out = tmp_path / "out.json"
    monkeypatch.setattr(rre.qtype, "_encoder", lambda *a: pytest.fail("a model loaded before the input was checked"))
    with pytest.raises(SystemExit) as exit_info:
        annotate("--input_path", str(source), "--output_path", str(out), "--classifier_dir", str(classifier_dir))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "record 5" in err[0] and "'instruction'" in err[0]
    assert str(source) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_classifier_training_is_deterministic_for_a_seed(labelled_file, classifier_dir, tmp_path):
    from rre.data import load_examples
    from rre.qtype import CLASSIFIER_RECORD, QTypeClassifier
    from rre.files import file_sha256

    examples = load_examples(labelled_file, require_qtype=True, require_reference=False)
    first = QTypeClassifier.train(examples, labelled_file, seed=3, device="cpu")
    second = QTypeClassifier.train(examples, labelled_file, seed=3, device="cpu")
    for name in ("weight", "bias", "mean", "std"):
        assert torch.equal(getattr(first.head, name), getattr(second.head, name)), name
    assert first.record == second.record and first.record["seed"] == 3
    other = QTypeClassifier.train(examples, labelled_file, seed=4, device="cpu")
    assert other.record["cross_validation"]["split_seed"] == 4
    # The saved folder: safetensors and a JSON record of the data it was trained on; reloads to the same labels.
    record = json.loads((classifier_dir / CLASSIFIER_RECORD).read_text())
    assert record["trained_on"] == {"path": str(labelled_file), "sha256": file_sha256(labelled_file), "count": 36,
                                    "per_label": {"OPENENDED": 18, "CONSTRAINED": 18}}
    assert record["encoder"] == "offline:all-MiniLM-L6-v2" and record["cross_validation"]["folds"] == 5
    assert not list(classifier_dir.glob("*.pkl")) and not list(classifier_dir.glob("*.bin"))
    loaded = QTypeClassifier.load(classifier_dir)
    probe = examples[:3] + examples[-3:]
    assert loaded.predict(probe) == QTypeClassifier.load(classifier_dir).predict(probe)


def test_judge_and_reference_answers_with_a_tiny_random_model(tiny_llama_dir, tmp_path):
    from rre.data import QTYPES, load_examples
    from rre.qtype import QTypeJudge

    records = [{k: v for k, v in r.items() if k != "output"} if i % 2 else r for i, r in enumerate(TO_ANNOTATE[:4])]
    source = write_json(tmp_path / "in.json", records)
    out = tmp_path / "judged.json"
    annotate("--input_path", str(source), "--output_path", str(out), "--method", "judge", "--judge_model",
             tiny_llama_dir, "--reference_model", tiny_llama_dir, "--reference_max_new_tokens", "4",
             "--dtype", "float32", "--device", "cpu")
    got = json.loads(out.read_text())
    assert [r["qtype"] for r in got][1] == "OPENENDED"  # kept
    assert all(r["qtype"] in QTYPES for r in got) and all(0.5 <= r.get("qtype_confidence", 1) <= 1 for r in got)
    assert [r["output"] for r in got][0::2] == [TO_ANNOTATE[0]["output"], TO_ANNOTATE[2]["output"]]
    assert all(isinstance(r["output"], str) for r in got)
    load_examples(out, require_qtype=True, require_reference=False)
    judge = QTypeJudge(tiny_llama_dir, "cpu", "float32", batch_size=2)
    examples = load_examples(source, require_reference=False)
    assert judge.predict(examples) == judge.predict(examples)  # no sampling: the same labels every time
    assert "OPENENDED: many different answers" in judge.prompt(examples[0])


def test_branching_error_names_this_command(tmp_path):
    from rre.data import load_examples
    from rre.errors import DataError

    path = write_json(tmp_path / "plain.json", [{"instruction": "Say hi.", "output": "Hi"}])
    with pytest.raises(DataError) as err:
        load_examples(path, require_qtype=True)
    assert "python annotate.py --input_path" in str(err.value) and "\n" not in str(err.value)


def test_trainers_accept_the_annotated_file(annotated, tiny_llama_dir, tmp_path, capsys):
    """score_outputs.py reads it as it reads the paper's files; run_ppo.py trains two steps on it, branching on."""
    import score_outputs

    _, out = annotated
    score_outputs.main(["--annotations_path", str(out), "--relevance_model", "minilm", "--rar_max_dot=1.0"])
    assert "CONSTRAINED" in capsys.readouterr().out
    run = tmp_path / "ppo"
    proc = run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, run, 2, 2, f"--dataset_path={out}",
                                            f"--dev_prompt_path={out}", "--log_with=none"))
    assert "step 2/2" in proc.stdout
    config = json.loads((run / "training_config.json").read_text())
    assert config["reward"]["reward_branching"] is True and config["reward"]["relevance_scaling"] is True
    assert Path(f"{run}_final").is_dir()
