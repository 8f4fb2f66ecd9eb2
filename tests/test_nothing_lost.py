"""Nothing lost: a command replaces or deletes only what the project wrote, never writes onto one of its inputs,
and checks everything before it creates anything.

Each refusal case runs a command's `main(argv)` in this process, in a fresh folder holding the case's fixtures,
and asserts exit code 2, one `error:` line holding the expected words, and that every file and folder that was
there before is still there with the same bytes (and nothing new appeared). The write rule itself
(`rre.files`) is tested beside them on real folders.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from helpers import ROOT
from hostile import ANNOTATIONS, GRPO_FLAGS, MODEL, PPO_FLAGS, make, safetensors_bytes

from rre import files
from rre.errors import DataError

USER_FOLDER = {"work/notes.txt": "my notes", "work/prompts.json": "[1, 2]"}
LABELLED = {"train.json": ANNOTATIONS}
UNLABELLED = json.dumps([{"instruction": "Name a colour.", "output": "Blue."}])


def ppo_checkpoint(folder: str, marker: str | None = "run_ppo.py", steps: int = 4) -> dict:
    """A run_ppo.py checkpoint's files (adapter, state summary, its copy of the run's config)."""
    spec = {f"{folder}/adapter_config.json": '{"peft_type": "LORA"}',
            f"{folder}/adapter_model.safetensors": safetensors_bytes(),
            f"{folder}/training_state.json": json.dumps({"current_step": steps}),
            f"{folder}/training_config.json": json.dumps({"script": {"overall_steps": steps}})}
    if marker:
        spec[f"{folder}/{files.MARKER}"] = json.dumps({"written_by": marker})
    return spec


FINISHED_RUN = {"run/training_config.json": json.dumps({"script": {"overall_steps": 4}}),
                **ppo_checkpoint("run_step_2"), **ppo_checkpoint("run_step_4"), **ppo_checkpoint("run_final")}
GRPO_FINISHED = {"run/training_config.json": json.dumps({"script": {"overall_steps": 4}}),
                 **ppo_checkpoint("run_final", marker="run_grpo.py")}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def refused(module: str, argv: tuple[str, ...], spec: dict, tmp_path: Path, monkeypatch, capsys) -> str:
    """Run the command on the fixtures; assert exit 2, one error line, and every byte as it was. Returns the line."""
    cli = importlib.import_module(module)
    make(spec)(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.replace("{root}", str(ROOT)) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("note:")]
    assert exit_info.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert snapshot(tmp_path) == before, "a refused command changed, created or removed something"
    return err[0]


# (id, module, argv, fixtures, words the error line holds)
CASES = [
    # The four data-loss cases: a user's folder as the classifier folder, the labelled file as the output, a
    # fresh run onto a finished one, the annotations as the features file.
    ("annotate-classifier-dir-is-a-user-folder", "annotate",
     ("--train_path", "train.json", "--classifier_dir", "work"), {**LABELLED, **USER_FOLDER},
     "--classifier_dir work: holds 2 entries not written by this project (notes.txt, prompts.json)"),
    ("annotate-output-is-the-train-file", "annotate",
     ("--input_path", "in.json", "--output_path", "train.json", "--train_path", "train.json",
      "--classifier_dir", "cls"), {**LABELLED, "in.json": UNLABELLED}, "--output_path train.json: is also --train_path"),
    ("ppo-fresh-run-onto-a-finished-run", "run_ppo", PPO_FLAGS, FINISHED_RUN,
     "--output_dir run: a run is already there (run/training_config.json, run_step_4, run_final (3 checkpoint "
     "folders)); resume it with --resume_from_checkpoint=latest, or pass --overwrite=true"),
    ("score-save-path-is-the-annotations", "score_outputs",
     ("--annotations_path", "ann.json", "--relevance_scaling=false", "--save_path", "ann.json"),
     {"ann.json": ANNOTATIONS}, "--save_path ann.json: is also --annotations_path"),
    # Item 1: anything at an output path that the project did not write is refused, --overwrite or not.
    ("trm-overwrite-a-user-folder", "train_reward_model",
     ("--data_path", "{root}/data/train.json", "--output_dir", "work", "--overwrite=true"), USER_FOLDER,
     "--output_dir work: holds 2 entries not written by this project"),
    ("trm-overwrite-another-commands-folder", "train_reward_model",
     ("--data_path", "{root}/data/train.json", "--output_dir", "run_final", "--overwrite=true"),
     ppo_checkpoint("run_final"), "--output_dir run_final: holds a folder written by run_ppo.py; it is not a gold "
                                  "stand-in folder"),
    ("ppo-overwrite-a-step-folder-of-the-user", "run_ppo", (*PPO_FLAGS, "--overwrite=true"),
     {"run/training_config.json": "{}", "run_step_1/notes.txt": "mine"},
     "--output_dir run_step_1: holds 1 entry not written by this project (notes.txt)"),
    ("grpo-overwrite-a-ppo-checkpoint", "run_grpo", (*GRPO_FLAGS, "--overwrite=true"), ppo_checkpoint("run_step_1"),
     "--output_dir run_step_1: holds a folder written by run_ppo.py; it is not a run_grpo.py checkpoint"),
    ("score-save-path-is-a-user-file", "score_outputs",
     ("--annotations_path", "ann.json", "--relevance_scaling=false", "--save_path", "notes.json"),
     {"ann.json": ANNOTATIONS, "notes.json": '{"mine": 1}'},
     "--save_path notes.json: holds a file that is not score_outputs.py's features"),
    ("monotonicity-json-of-the-user", "eval_monotonicity",
     ("--output_dir", ".", "--gold_model", "model", "--relevance_model=minilm", "--eval_path",
      "{root}/data/eval.json"), {**MODEL, "p_step_1/alpaca-eval-p_step_1.json": "[]", "monotonicity.json": "[1]"},
     "--output_dir monotonicity.json: holds a file that is not a monotonicity result"),
    ("prescreen-png-of-the-user", "prescreen",
     ("--systems", "sa", "sb", "--gold_csv", "lb.csv", "--annotations_path", "ann.json", "--output_dir", "out",
      "--relevance_model=minilm"),
     {"ann.json": ANNOTATIONS, "sa/alpaca-eval-sa.json": "[]", "sb/alpaca-eval-sb.json": "[]",
      "lb.csv": "system,score\nsa,1\nsb,2\n", "out/prescreen.png": "not a png"},
     "--output_dir out/prescreen.png: holds a file that is not a figure"),
    ("evaluation-overwrite-a-user-file", "evaluation",
     ("--base_model_name", "model", "--evaluations", "alpaca", "--eval_path", "{root}/data/eval.json",
      "--output_dir", "out", "--overwrite"), {**MODEL, "out/alpaca-eval-model.json": '{"mine": 1}'},
     "--output_dir out/alpaca-eval-model.json: holds a file that is not an outputs file of evaluation.py"),
    ("ladder-dir-is-a-user-folder", "design_ladder",
     ("--ladder_dir", "work", "--eval_path", "{root}/data/eval.json", "--relevance_model", "minilm", "--plan_only"),
     USER_FOLDER, "work: holds 2 entries not written by this project (notes.txt, prompts.json); it is not a "
                  "design-ladder folder"),
    # Item 2: no command writes onto one of its inputs, nor replaces a folder that holds one.
    ("annotate-output-is-the-input", "annotate", ("--input_path", "in.json", "--output_path", "in.json",
                                                  "--method", "judge"),
     {"in.json": UNLABELLED}, "--output_path in.json: is also --input_path"),
    ("annotate-output-through-a-link", "annotate",
     ("--input_path", "in.json", "--output_path", "link.json", "--method", "judge"),
     {"in.json": UNLABELLED, "link.json": None}, "--output_path link.json: is also --input_path"),
    ("annotate-classifier-dir-holds-the-train-file", "annotate",
     ("--train_path", "cls/train.json", "--classifier_dir", "cls"), {"cls/train.json": ANNOTATIONS},
     "--classifier_dir cls: holds --train_path cls/train.json"),
    ("score-save-path-is-the-outputs", "score_outputs",
     ("--annotations_path", "ann.json", "--outputs_path", "out.json", "--relevance_scaling=false",
      "--save_path", "out.json"), {"ann.json": ANNOTATIONS, "out.json": "[]"},
     "--save_path out.json: is also --outputs_path"),
    ("score-save-path-is-the-features-module", "score_outputs",
     ("--annotations_path", "ann.json", "--relevance_scaling=false", "--features_module", "f.py",
      "--save_path", "f.py"), {"ann.json": ANNOTATIONS, "f.py": "EXTRA_FEATURES = {}\n"},
     "--save_path f.py: is also --features_module"),
    ("evaluation-outputs-onto-the-eval-file", "evaluation",
     ("--base_model_name", "model", "--evaluations", "alpaca", "--eval_path", "out/alpaca-eval-model.json",
      "--output_dir", "out", "--overwrite"), {**MODEL, "out/alpaca-eval-model.json": ANNOTATIONS},
     "--output_dir out/alpaca-eval-model.json: is also --eval_path"),
    ("monotonicity-json-is-the-eval-file", "eval_monotonicity",
     ("--output_dir", ".", "--gold_model", "model", "--relevance_model=minilm", "--eval_path", "monotonicity.json"),
     {**MODEL, "p_step_1/alpaca-eval-p_step_1.json": "[]", "monotonicity.json": ANNOTATIONS},
     "--output_dir monotonicity.json: is also --eval_path"),
    ("prescreen-json-is-the-annotations", "prescreen",
     ("--systems", "sa", "sb", "--gold_csv", "lb.csv", "--annotations_path", "out/prescreen.json",
      "--output_dir", "out", "--relevance_model=minilm"),
     {"out/prescreen.json": ANNOTATIONS, "sa/alpaca-eval-sa.json": "[]", "sb/alpaca-eval-sb.json": "[]",
      "lb.csv": "system,score\nsa,1\nsb,2\n"}, "--output_dir out/prescreen.json: is also --annotations_path"),
    ("ppo-overwrite-removes-the-dataset", "run_ppo",
     ("--dataset_path", "run_step_2/train.json", "--dev_prompt_path", "{root}/data/dev.json", "--output_dir", "run",
      "--relevance_model=minilm", "--overwrite=true"), {**ppo_checkpoint("run_step_2"), "run_step_2/train.json": ANNOTATIONS},
     "--output_dir run: --overwrite would remove run_step_2, which holds --dataset_path run_step_2/train.json"),
    ("grpo-overwrite-removes-the-model", "run_grpo",
     (*GRPO_FLAGS, "--model_name", "run_final", "--overwrite=true"),
     {**ppo_checkpoint("run_final", marker="run_grpo.py"), "run_final/config.json": "{}"},
     "--overwrite would remove run_final, which holds --model_name run_final"),
    ("trm-output-holds-the-data", "train_reward_model", ("--data_path", "rm/train.json", "--output_dir", "rm"),
     {"rm/train.json": ANNOTATIONS}, "--output_dir rm: holds --data_path rm/train.json"),
    # Item 3: a fresh run never lands on a finished or started run.
    ("ppo-fresh-run-onto-a-started-run", "run_ppo", PPO_FLAGS, {"run/training_config.json": "{}"},
     "--output_dir run: a run is already there (run/training_config.json)"),
    ("grpo-fresh-run-onto-a-finished-run", "run_grpo", GRPO_FLAGS, GRPO_FINISHED,
     "--output_dir run: a run is already there (run/training_config.json, run_final)"),
    ("ppo-overwrite-and-resume", "run_ppo", (*PPO_FLAGS, "--overwrite=true", "--resume_from_checkpoint=latest"),
     FINISHED_RUN, "--overwrite starts the run again; it cannot be combined with --resume_from_checkpoint"),
    ("ppo-latest-over-a-broken-final-config", "run_ppo", (*PPO_FLAGS, "--resume_from_checkpoint=latest"),
     {**FINISHED_RUN, "run_final/training_config.json": "{not json"}, "run_final/training_config.json"),
    ("grpo-overwrite-and-resume", "run_grpo", (*GRPO_FLAGS, "--overwrite=true", "--resume_from_checkpoint=latest"),
     GRPO_FINISHED, "--overwrite starts the run again"),
    # Item 4: every check before the first byte (the ladder and annotate made files before some checks).
    ("ladder-eval-path-missing", "design_ladder",
     ("--ladder_dir", "lad", "--eval_path", "nope.json", "--relevance_model", "minilm"), {},
     "--eval_path nope.json: no such file"),
    ("ladder-unbalanced-extra-args", "design_ladder",
     ("--ladder_dir", "lad", "--eval_path", "{root}/data/eval.json", "--relevance_model", "minilm",
      "--extra_train_args", "--seed='1"), {}, "--extra_train_args \"--seed='1\": No closing quotation"),
    ("ladder-other-eval-set", "design_ladder",
     ("--ladder_dir", "lad", "--eval_path", "{root}/data/eval.json", "--relevance_model", "minilm",
      "--eval_size", "3"), {"lad/eval_set.json": "[]", "lad/base/x.json": "{}"},
     "lad/eval_set.json: this ladder folder answered other instructions"),
    ("annotate-finished-output-without-overwrite", "annotate",
     ("--input_path", "in.json", "--output_path", "out.json", "--method", "judge"),
     {"in.json": UNLABELLED, "out.json": ANNOTATIONS},
     "--output_path out.json: exists (a finished annotation, or a file of yours); pass --overwrite=true"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_line_with_every_byte_kept(case, tmp_path, monkeypatch, capsys):
    _, module, argv, spec, words = case
    if "link.json" in spec:  # the output is a link to the input
        spec = {k: v for k, v in spec.items() if k != "link.json"}
        (tmp_path / "link.json").symlink_to("in.json")
    line = refused(module, argv, spec, tmp_path, monkeypatch, capsys)
    assert words in line, line


def test_cases_are_many_and_named_once():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------------------------------------
# The run guard's ways on, and the write rule on real folders.


def test_latest_on_a_finished_run_exits_0_without_writing(tmp_path, monkeypatch, capsys):
    import run_ppo

    make(FINISHED_RUN)(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{root}", str(ROOT)) for a in PPO_FLAGS]
    run_ppo.main([*argv, "--overall_steps=4", "--resume_from_checkpoint=latest"])  # returns: no SystemExit
    assert "run_final: the run is finished (4 steps); nothing to do" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_overwrite_removes_only_the_runs_own_checkpoints(tmp_path, capsys):
    """--overwrite takes away the old run's _step_N and _final folders (a longer old run's step_6 too), marked
    or from before the marker, and leaves a neighbour run with a longer name alone."""
    from types import SimpleNamespace

    from rre.training import start_run_folder

    make({**FINISHED_RUN, **ppo_checkpoint("run_step_6", marker=None), **ppo_checkpoint("run2_step_1")})(tmp_path)
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), resume_from_checkpoint=None, overwrite=True,
                           model_name=None, tokenizer_name=None, dataset_path=str(ROOT / "data/train.json"),
                           dev_prompt_path=None, features_module=None)
    start_run_folder(args, "run_ppo.py", files.PPO_CHECKPOINT, {"script": {"overall_steps": 2}})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["run", "run2_step_1"], left
    assert json.loads((tmp_path / "run/training_config.json").read_text()) == {"script": {"overall_steps": 2}}
    assert capsys.readouterr().err.count("(--overwrite)") == 4


def test_a_folder_without_marker_is_recognised_by_its_known_contents(tmp_path):
    unmarked = tmp_path / "cls"
    make({"cls/head.safetensors": safetensors_bytes(), "cls/qtype_classifier.json": "{}"})(tmp_path)
    assert files.QTYPE_CLASSIFIER.owns(unmarked)
    (unmarked / "notes.txt").write_text("mine")  # one file of the user's: no longer the project's alone
    assert not files.QTYPE_CLASSIFIER.owns(unmarked)
    with pytest.raises(DataError, match="not a qtype classifier folder"):
        files.replaceable("classifier_dir", unmarked, files.QTYPE_CLASSIFIER)


def test_atomic_dir_marks_before_the_first_file_and_replaces_only_its_own(tmp_path):
    kind = files.QTYPE_CLASSIFIER
    with files.atomic_dir(tmp_path / "cls", kind) as tmp:
        assert files.written_by(tmp) == "annotate.py"  # the marker is there before anything else
        (tmp / "head.safetensors").write_bytes(b"1")
    with files.atomic_dir(tmp_path / "cls", kind) as tmp:  # its own folder: replaced
        (tmp / "head.safetensors").write_bytes(b"2")
    assert (tmp_path / "cls/head.safetensors").read_bytes() == b"2"
    make(USER_FOLDER)(tmp_path)
    with pytest.raises(DataError, match="work: holds 2 entries not written by this project"):
        with files.atomic_dir(tmp_path / "work", kind):
            pass
    assert snapshot(tmp_path / "work") == {"notes.txt": b"my notes", "prompts.json": b"[1, 2]"}
    assert not (tmp_path / ".partial-work").exists()


def test_clean_partials_leaves_a_folder_it_did_not_write(tmp_path, capsys):
    make({".partial-run_step_2/notes.txt": "mine", **ppo_checkpoint(".partial-run_step_4")})(tmp_path)
    removed = files.clean_partials(tmp_path, files.PPO_CHECKPOINT, "run_step_")
    assert [p.name for p in removed] == [".partial-run_step_4"]
    assert (tmp_path / ".partial-run_step_2/notes.txt").read_text() == "mine"
    assert "left" in capsys.readouterr().err


def test_ladder_plan_only_creates_nothing(tmp_path, monkeypatch, capsys):
    import design_ladder

    monkeypatch.chdir(tmp_path)
    design_ladder.main(["--ladder_dir", "lad", "--eval_path", str(ROOT / "data/eval.json"), "--relevance_model",
                        "minilm", "--plan_only"])
    assert "plan:" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_annotate_writes_no_partial_before_the_judge_loads(tmp_path, monkeypatch, capsys):
    """A judge folder that passes the name check but cannot load: one line, and no .partial file."""
    make({"in.json": UNLABELLED, "judge/config.json": "{}"})(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    import annotate

    with pytest.raises(SystemExit) as exit_info:
        annotate.main(["--input_path", "in.json", "--output_path", "out/labelled.json", "--method", "judge",
                       "--judge_model", "judge"])
    assert exit_info.value.code == 2
    assert snapshot(tmp_path) == before, "annotate created its output folder or .partial before the judge loaded"
