"""Ranges and odd-but-valid input, on every command where each applies.

Refused in one line (exit code 2) before any model loads, every file that was there byte-identical afterwards:
seeds outside 0..2**32-1, token lengths beyond the model's context (read from the model folder's config.json),
batch sizes and frequencies below 1, a path component over 255 bytes, text that is not valid Unicode (a lone
surrogate from a JSON escape), an adapter whose weights do not load. Accepted: a fully labelled file through
annotate.py, an instruction that occurs twice, a seed at either end of the range, lengths that just fit.

The battery's `Case` and fixtures are hostile.py's; the runner here compares every file's bytes, not
only the listing.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from helpers import ROOT
from hostile import (
    ANNOTATIONS,
    BOTH_EVAL_SETS,
    GRPO_FLAGS,
    MODEL,
    MONOTONICITY_FLAGS,
    PPO_FLAGS,
    PRESCREEN_FLAGS,
    SCORE_FIXTURES,
    SCORE_FLAGS,
    TRAIN_DATA,
    Case,
    adapter_at,
    make,
    safetensors_bytes,
)

SEED_MAX = 2**32 - 1
CONTEXT = 1024
MODEL_WITH_CONTEXT = {"model/config.json": json.dumps({"max_position_embeddings": CONTEXT})}  # read, never loaded
BEYOND = "beyond the context of --"
NAME_TOO_LONG = "n" * 256  # one byte over a file system's name limit
NAME_TOO_LONG_UTF8 = "\u00e9" * 128  # 128 characters, 256 bytes
NAME_TOO_LONG_ERROR = "bytes; a file system allows 255 bytes per name"
SURROGATE = "not valid Unicode (a lone surrogate \\ud800"
GOLD_CSV = {"lb.csv": "sa,1\nsb,2\n"}
ANNOTATE_FLAGS = ("--input_path", "in.json", "--output_path", "out.json")
ANNOTATE_INPUT = {"in.json": ANNOTATIONS}
LADDER_FLAGS = ("--ladder_dir", "lad", "--relevance_model", "minilm")


def surrogate_records(field: str = "output", where: int = 1) -> str:
    """The annotations with a JSON escape of a lone surrogate in record `where`'s `field` (JSON text, as a file
    holds it: json.dumps writes the escape)."""
    records = json.loads(ANNOTATIONS)
    records[where][field] = "rain \ud800 falls"
    return json.dumps(records)


def outputs_file(surrogate: bool = False) -> str:
    rows = [{"instruction": r["input"], "output": f"answer {i}"} for i, r in enumerate(json.loads(ANNOTATIONS))]
    if surrogate:
        rows[2]["output"] = "\ud800"
    return json.dumps(rows)


def header_only(header: bytes) -> bytes:
    """A file with safetensors' framing (an 8-byte length, then the JSON header) around `header`."""
    return len(header).to_bytes(8, "little") + header


def mono_run(eval_json: str = ANNOTATIONS, outputs: str | None = None) -> dict:
    """Two evaluated checkpoints of prefix p (outputs only) and an eval file, for eval_monotonicity.py."""
    rows = json.loads(outputs_file())
    return {**MODEL, "eval.json": eval_json,
            **{f"p_step_{n}/alpaca-eval-p_step_{n}.json": outputs or json.dumps(rows) for n in (1, 2)}}


CASES = [
    # --- seeds: 0..2**32-1 -----------------------------------------------------------------------------
    Case("ppo-seed-negative", "run_ppo", (*PPO_FLAGS, "--seed=-1"), "--seed -1: a seed must be within 0..4294967295"),
    Case("ppo-seed-too-large", "run_ppo", (*PPO_FLAGS, f"--seed={SEED_MAX + 1}"), f"--seed {SEED_MAX + 1}: a seed must"),
    Case("grpo-seed-negative", "run_grpo", (*GRPO_FLAGS, "--seed=-1"), "--seed -1: a seed must be within"),
    Case("eval-seed-negative", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--seed=-1"),
         "--seed -1: a seed must be within", make(MODEL)),
    Case("annotate-seed-negative", "annotate", (*ANNOTATE_FLAGS, "--seed=-1"), "--seed -1: a seed must be within",
         make(ANNOTATE_INPUT)),
    Case("prescreen-bootstrap-seed-negative", "prescreen", (*PRESCREEN_FLAGS, "--bootstrap_seed=-1"),
         "--bootstrap_seed -1: a seed must be within", make(GOLD_CSV)),
    Case("mono-bootstrap-seed-too-large", "eval_monotonicity", (*MONOTONICITY_FLAGS, f"--bootstrap_seed={2**40}"),
         f"--bootstrap_seed {2**40}: a seed must be within", make(MODEL)),
    Case("trm-seed-negative", "train_reward_model", (*TRAIN_DATA, "--seed=-1"), "--seed -1: a seed must be within"),
    Case("ladder-seed-negative", "design_ladder", (*LADDER_FLAGS, "--seeds", "1,-1"), "--seeds -1: a seed must be within"),
    Case("ladder-seed-too-large", "design_ladder", (*LADDER_FLAGS, "--seeds", str(SEED_MAX + 1)),
         f"--seeds {SEED_MAX + 1}: a seed must be within"),
    # --- lengths within the model's context (config.json's max_position_embeddings) --------------------
    Case("ppo-output-length-beyond-context", "run_ppo", (*PPO_FLAGS, "--model_name", "model", "--output_max_length=100000"),
         "--output_max_length 100000 + --max_prompt_length 100000 (its default: --output_max_length): 200000 "
         f"tokens, beyond the context of --model_name model ({CONTEXT} tokens: max_position_embeddings in "
         "model/config.json)", make(MODEL_WITH_CONTEXT)),
    Case("ppo-prompt-and-output-beyond-context", "run_ppo", (*PPO_FLAGS, "--model_name", "model", "--output_max_length=600",
                                                             "--max_prompt_length=600"),
         "--output_max_length 600 + --max_prompt_length 600: 1200 tokens, beyond the context", make(MODEL_WITH_CONTEXT)),
    Case("grpo-output-length-beyond-context", "run_grpo", (*GRPO_FLAGS, "--model_name", "model", "--output_max_length=1024",
                                                           "--max_prompt_length=8"),
         "--output_max_length 1024 + --max_prompt_length 8: 1032 tokens, beyond the context", make(MODEL_WITH_CONTEXT)),
    Case("eval-max-new-tokens-beyond-context", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model",
                                                              f"--max_new_tokens={CONTEXT}"),
         f"--max_new_tokens {CONTEXT} + at least 1 prompt token: {CONTEXT + 1} tokens, beyond the context of "
         "--base_model_name model", make(MODEL_WITH_CONTEXT)),
    Case("eval-superni-tokens-beyond-context", "evaluation", ("--superni_dir", "{root}/data/superni-fixture",
                                                              "--base_model_name", "model", "--evaluations", "superni",
                                                              "--superni_max_new_tokens=5000"),
         "--superni_max_new_tokens 5000 + at least 1 prompt token", make(MODEL_WITH_CONTEXT)),
    Case("annotate-reference-tokens-beyond-context", "annotate", (*ANNOTATE_FLAGS, "--reference_model", "model",
                                                                  "--reference_max_new_tokens=5000"),
         f"--reference_max_new_tokens 5000 + at least 1 prompt token: 5001 tokens, {BEYOND}reference_model model",
         make({**ANNOTATE_INPUT, **MODEL_WITH_CONTEXT})),
    Case("trm-max-length-beyond-context", "train_reward_model", (*TRAIN_DATA, "--model_name", "model",
                                                                 "--max_length=4096"),
         f"--max_length 4096: 4096 tokens, {BEYOND}model_name model", make(MODEL_WITH_CONTEXT)),
    Case("ladder-new-tokens-beyond-context", "design_ladder", (*LADDER_FLAGS, "--model_name", "model", "--new_tokens=5000"),
         "--max_prompt_length 256 + --new_tokens 5000: 5256 tokens, beyond the context", make(MODEL_WITH_CONTEXT)),
    Case("ladder-eval-tokens-beyond-context", "design_ladder", (*LADDER_FLAGS, "--model_name", "model",
                                                                "--eval_tokens=2000"),
         "--eval_tokens 2000 + at least 1 prompt token: 2001 tokens, beyond the context", make(MODEL_WITH_CONTEXT)),
    # --- batch sizes and frequencies: at least 1 ---------------------------------------------------------
    Case("ppo-generation-batch-size-0", "run_ppo", (*PPO_FLAGS, "--generation_batch_size=0"),
         "--generation_batch_size must be > 0, got 0"),
    Case("ppo-forward-batch-size-negative", "run_ppo", (*PPO_FLAGS, "--forward_batch_size=-4"),
         "--forward_batch_size must be > 0, got -4"),
    Case("ppo-reward-batch-size-0", "run_ppo", (*PPO_FLAGS, "--reward_model_batch_size=0"),
         "--reward_model_batch_size must be > 0, got 0"),
    Case("grpo-mini-batch-size-0", "run_grpo", (*GRPO_FLAGS, "--mini_batch_size=0"), "--mini_batch_size must be > 0"),
    Case("annotate-batch-size-0", "annotate", (*ANNOTATE_FLAGS, "--batch_size=0"), "--batch_size must be > 0, got 0",
         make(ANNOTATE_INPUT)),
    Case("prescreen-gold-batch-size-0", "prescreen", (*PRESCREEN_FLAGS, "--gold_batch_size=0"),
         "--gold_batch_size must be > 0, got 0", make(GOLD_CSV)),
    Case("mono-gold-batch-size-negative", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--gold_batch_size=-1"),
         "--gold_batch_size must be > 0, got -1", make(MODEL)),
    Case("score-reward-batch-size-0", "score_outputs", (*SCORE_FLAGS, "--reward_model_batch_size=0"),
         "--reward_model_batch_size must be > 0, got 0", make(SCORE_FIXTURES)),
    Case("ladder-eval-batch-size-0", "design_ladder", (*LADDER_FLAGS, "--eval_batch_size=0"), "--eval_batch_size must be >= 1"),
    Case("ladder-save-every-0", "design_ladder", (*LADDER_FLAGS, "--save_every=0"), "--save_every must be >= 1, got 0"),
    # --- a path component over 255 bytes ------------------------------------------------------------------
    Case("score-save-path-long-name", "score_outputs", (*SCORE_FLAGS, "--save_path", f"{NAME_TOO_LONG}.json"),
         f"--save_path {NAME_TOO_LONG}.json: the name {NAME_TOO_LONG[:40]}... is 261 {NAME_TOO_LONG_ERROR}", make(SCORE_FIXTURES)),
    Case("score-annotations-long-name", "score_outputs", ("--annotations_path", f"data/{NAME_TOO_LONG}.json"),
         f"is 261 {NAME_TOO_LONG_ERROR}"),
    Case("annotate-output-long-name", "annotate", ("--input_path", "in.json", "--output_path", f"out/{NAME_TOO_LONG_UTF8}"),
         f"--output_path out/{NAME_TOO_LONG_UTF8}: the name", make(ANNOTATE_INPUT)),
    Case("eval-output-dir-long-name", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model", "--output_dir",
                                                     f"runs/{NAME_TOO_LONG}"), f"--output_dir runs/{NAME_TOO_LONG}: the name",
         make(MODEL)),
    Case("eval-base-model-long-name", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", f"./{NAME_TOO_LONG}"),
         f"--base_model_name ./{NAME_TOO_LONG}: the name"),
    Case("ppo-output-dir-long-name", "run_ppo", (*PPO_FLAGS, "--output_dir", f"runs/{NAME_TOO_LONG}"),
         f"--output_dir runs/{NAME_TOO_LONG}: the name"),
    Case("grpo-checkpoint-names-too-long", "run_grpo", (*GRPO_FLAGS, "--output_dir", f"runs/{'g' * 245}"),
         "its checkpoint folders ggg"),
    Case("prescreen-output-dir-long-name", "prescreen", (*PRESCREEN_FLAGS, "--output_dir", NAME_TOO_LONG),
         f"--output_dir {NAME_TOO_LONG}: the name", make(GOLD_CSV)),
    Case("mono-output-dir-long-name", "eval_monotonicity", ("--output_dir", NAME_TOO_LONG, "--gold_model", "model",
                                                            "--eval_path", "{root}/data/eval.json"),
         f"--output_dir {NAME_TOO_LONG}: the name", make(MODEL)),
    Case("trm-output-dir-long-name", "train_reward_model", (*TRAIN_DATA, "--output_dir", f"{NAME_TOO_LONG}/rm"),
         f"--output_dir {NAME_TOO_LONG}/rm: the name"),
    Case("offline-cache-dir-long-name", "rre.offline_models", ("--cache_dir", NAME_TOO_LONG_UTF8),
         f"--cache_dir {NAME_TOO_LONG_UTF8}: the name"),
    # --- text that is not valid Unicode: a lone surrogate ----------------------------------------------
    Case("score-annotations-lone-surrogate", "score_outputs", (*SCORE_FLAGS,),
         f"ann.json: record 1: field 'output': {SURROGATE} at character 5",
         make({"ann.json": surrogate_records()})),
    Case("score-outputs-lone-surrogate", "score_outputs", (*SCORE_FLAGS, "--outputs_path", "outputs.json"),
         f"outputs.json: record 2: field 'output': {SURROGATE}",
         make({**SCORE_FIXTURES, "outputs.json": outputs_file(surrogate=True)})),
    Case("annotate-input-lone-surrogate-in-own-field", "annotate", ("--input_path", "in.jsonl", "--output_path",
                                                                    "out.jsonl"),
         f"in.jsonl: line 2 (record 1): field 'notes': {SURROGATE}",
         make({"in.jsonl": "\n".join(json.dumps({**r, "notes": "\ud800" if i == 1 else "ok"})
                                     for i, r in enumerate(json.loads(ANNOTATIONS))) + "\n"})),
    Case("eval-eval-path-lone-surrogate", "evaluation", ("--base_model_name", "model", "--evaluations", "alpaca",
                                                         "--eval_path", "eval.json"),
         f"eval.json: record 0: field 'input': {SURROGATE}", make({**MODEL, "eval.json": surrogate_records("input", 0)})),
    Case("prescreen-annotations-lone-surrogate", "prescreen", (*PRESCREEN_FLAGS, "--annotations_path", "ann.json",
                                                               "--relevance_model=minilm", "--rar_max_dot=1.0"),
         f"ann.json: record 2: field 'output': {SURROGATE}",
         make({**GOLD_CSV, "ann.json": surrogate_records("output", 2), "sa/alpaca-eval-sa.json": outputs_file(),
               "sb/alpaca-eval-sb.json": outputs_file()})),
    Case("mono-outputs-lone-surrogate", "eval_monotonicity", (*MONOTONICITY_FLAGS, "--model_prefix", "p", "--all_steps", "--prompt_format",
                                                              "alpaca", "--eval_path", "eval.json", "--rar_max_dot=1"),
         f"p_step_1/alpaca-eval-p_step_1.json: record 2: field 'output': {SURROGATE}",
         make(mono_run(outputs=outputs_file(surrogate=True)))),
    Case("trm-pairs-lone-surrogate", "train_reward_model", ("--pairs_path", "prefs.jsonl", "--model_name", "model",
                                                            "--output_dir", "rm"),
         f"prefs.jsonl: line 1 (record 0): field 'chosen': {SURROGATE}",
         make({**MODEL, "prefs.jsonl": json.dumps({"prompt": "Name a fruit.", "chosen": "\ud800",
                                                   "rejected": "no"}) + "\n"})),
    # --- a checkpoint is complete only when its adapter loads --------------------------------------------
    Case("checkpoints-zero-byte-adapter", "rre.checkpoints", ("run/p",),
         "1 folder(s) named so (p_step_1) lack adapter_config.json or adapter_model.safetensors, or hold "
         "unreadable weights", make({**adapter_at("run/p_step_1"), "run/p_step_1/adapter_model.safetensors": b""})),
    Case("checkpoints-truncated-adapter", "rre.checkpoints", ("run/p",), "or hold unreadable weights",
         make({**adapter_at("run/p_step_1"), "run/p_step_1/adapter_model.safetensors": safetensors_bytes(3)})),
    Case("checkpoints-adapter-not-safetensors", "rre.checkpoints", ("run/p",), "or hold unreadable weights",
         make({**adapter_at("run/p_step_1"), "run/p_step_1/adapter_model.safetensors": b"PK\x03\x04 a zip"})),
    Case("checkpoints-adapter-header-no-offsets", "rre.checkpoints", ("run/p",), "or hold unreadable weights",
         make({**adapter_at("run/p_step_1"), "run/p_step_1/adapter_model.safetensors": header_only(b'{"w": 3}')})),
    Case("eval-adapter-header-no-offsets", "evaluation", (*BOTH_EVAL_SETS, "--base_model_name", "model",
                                                          "--peft_model_name", "a"),
         "--peft_model_name a/adapter_model.safetensors: not a safetensors file (unreadable header)",
         make({**MODEL, **adapter_at("a"), "a/adapter_model.safetensors": header_only(b'{"w": {"dtype": "F32"}}')})),
]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None: a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def run_bytes_case(case: Case, tmp_path: Path, monkeypatch, capsys) -> tuple[int, list[str]]:
    """Run the case's CLI in this process; returns (exit code, non-empty stderr lines). Asserts that nothing was
    created or removed and that every file holds the bytes it held."""
    module = importlib.import_module(case.module)
    case.setup(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main([a.replace("{root}", str(ROOT)) for a in case.argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    after = snapshot(tmp_path)
    assert sorted(after) == sorted(before), "the failed run created or removed something"
    assert [k for k in before if before[k] != after[k]] == [], "the failed run changed a file"
    return exit_info.value.code, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_out_of_range_or_invalid_text_fails_in_one_line(case: Case, tmp_path, monkeypatch, capsys):
    code, err = run_bytes_case(case, tmp_path, monkeypatch, capsys)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and case.expect in err[0], err


def test_the_table_covers_every_kind_and_names_are_unique():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


def test_a_default_policy_folder_is_read_for_its_context(tmp_path, monkeypatch, capsys):
    """Without --model_name the policy is the offline SmolLM2 (8192 positions): its config.json is read too."""
    from rre.offline_models import smollm2_folder

    if not (smollm2_folder() / "config.json").is_file():
        pytest.skip("the offline SmolLM2 is not converted here (python -m rre.offline_models)")
    case = Case("ppo-default-policy", "run_ppo", (*PPO_FLAGS, "--output_max_length=100000"),
                f"beyond the context of --model_name {smollm2_folder()} (8192 tokens: max_position_embeddings")
    code, err = run_bytes_case(case, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and case.expect in err[0], err


def test_ppo_seeds_of_every_process_are_in_range(tmp_path, monkeypatch, capsys):
    """Under `accelerate launch` each process seeds --seed + its rank: the last rank's seed must be accepted too."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    case = Case("ppo-seed-last-rank", "run_ppo", (*PPO_FLAGS, f"--seed={SEED_MAX}"),
                f"--seed {SEED_MAX}: with 2 processes, each seeding --seed + its rank, the seeds reach {SEED_MAX + 1}")
    code, err = run_bytes_case(case, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and case.expect in err[0], err


# ---------------------------------------------------------------------------------------------------------
# The edges of the ranges pass.


def test_seeds_at_either_end_and_lengths_that_just_fit_pass(tmp_path):
    from rre import validation
    from rre.errors import DataError

    for ok in (0, SEED_MAX, None):
        validation.seed("seed", ok)
    validation.seed("seed", SEED_MAX - 1, processes=2)
    with pytest.raises(DataError, match=f"--seed {SEED_MAX}: with 2 processes, each seeding --seed \\+ its rank, "
                                        f"the seeds reach {SEED_MAX + 1}"):
        validation.seed("seed", SEED_MAX, processes=2)
    make(MODEL_WITH_CONTEXT)(tmp_path)
    model = tmp_path / "model"
    validation.fits_context("model_name", model, {"output_max_length": 512, "max_prompt_length": 512})
    validation.fits_context("base_model_name", model, {"max_new_tokens": CONTEXT - 1}, prompt_room=1)
    with pytest.raises(DataError, match="1025 tokens"):
        validation.fits_context("model_name", model, {"output_max_length": 513, "max_prompt_length": 512})
    validation.fits_context("model_name", "HuggingFaceTB/SmolLM2-135M", {"output_max_length": 10**6})  # hub name
    validation.name_lengths("output_dir", "n" * 255)  # the limit itself is a valid name


def test_evaluation_accepts_answers_that_fit_the_context(tmp_path, monkeypatch):
    import evaluation

    make(MODEL_WITH_CONTEXT)(tmp_path)
    monkeypatch.chdir(tmp_path)
    (args,) = evaluation.validation.parse_flags([evaluation.EvalArguments], [
        "--base_model_name", "model", "--evaluations", "alpaca", "--eval_path", str(ROOT / "data" / "eval.json"),
        "--max_new_tokens", str(CONTEXT - 1)])
    assert [name for _, name, _ in evaluation.check_args(args)] == ["model"]


# ---------------------------------------------------------------------------------------------------------
# Odd but valid input works.


@pytest.mark.parametrize("name,text", [
    ("in.json", json.dumps(json.loads(ANNOTATIONS) * 2, indent=2, ensure_ascii=False) + "\n"),
    ("in.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in json.loads(ANNOTATIONS))),
])
def test_a_fully_labelled_file_passes_through_annotate_unchanged(name, text, tmp_path, monkeypatch, capsys):
    """No --classifier_dir: nothing needs a label, so no labeller is asked for; the records come out as they went
    in (the first case repeats every instruction, and keeps each record)."""
    import annotate

    (tmp_path / name).write_text(text, encoding="utf-8")
    out = f"out{Path(name).suffix}"
    monkeypatch.chdir(tmp_path)
    annotate.main(["--input_path", name, "--output_path", out])
    assert (tmp_path / out).read_bytes() == text.encode("utf-8")
    assert (tmp_path / name).read_bytes() == text.encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, out])  # no .partial left
    n = len(text.splitlines()) if name.endswith(".jsonl") else 6
    assert f"annotate: {n} records to {out}: 0 labelled" in capsys.readouterr().err


def repeated_annotations() -> list[dict]:
    """An eval file that holds one instruction twice, each time with its own reference and qtype."""
    return [{"instruction": "Name a fruit.", "output": "An apple.", "qtype": "CONSTRAINED"},
            {"instruction": "Write a poem about rain.", "output": "Rain taps.", "qtype": "OPENENDED"},
            {"instruction": "Name a fruit.", "output": "A pear, ripe and sweet.", "qtype": "OPENENDED"}]


def test_outputs_join_a_repeated_instruction_record_by_record():
    from rre.data import Example, join_outputs, match_outputs, parse_record

    examples = [parse_record(r, f"record {i}") for i, r in enumerate(repeated_annotations())]
    outputs = [{"instruction": e.seed_input, "output": f"o{i}"} for i, e in enumerate(examples)]
    assert match_outputs(outputs, examples, "o.json") == [0, 1, 2]
    assert match_outputs(outputs[::-1], examples, "o.json") == [0, 1, 2]  # the k-th answer to a text: its k-th record
    joined = join_outputs(outputs, examples, "o.json")
    assert [e.reference for e in joined] == ["An apple.", "Rain taps.", "A pear, ripe and sweet."]
    assert all(a is b for a, b in zip(joined, examples))
    extra = outputs + [{"instruction": "Name a fruit.", "output": "o3"}]  # more answers than records: the last
    assert match_outputs(extra, examples, "o.json") == [0, 1, 2, 2]
    assert isinstance(joined[0], Example)


def test_prescreen_screens_a_file_that_repeats_an_instruction(tmp_path, monkeypatch, capsys):
    """Each occurrence of the instruction keeps its own answer, and the whole screen runs."""
    import prescreen

    records = repeated_annotations()
    make({"ann.json": json.dumps(records), "lb.csv": "sa,1\nsb,2\n",
          **{f"{s}/alpaca-eval-{s}.json": json.dumps([{"instruction": r["instruction"], "output": f"{s} answer {i} "
                                                       + "word " * (i + 1) * (2 if s == "sb" else 1)}
                                                      for i, r in enumerate(records)]) for s in ("sa", "sb")}})(tmp_path)
    monkeypatch.chdir(tmp_path)
    examples = prescreen.load_examples("ann.json", require_qtype=True)
    system = prescreen.load_system("sa", Path("sa/alpaca-eval-sa.json"), examples, (), False)
    assert [r.split()[2] for r in system.responses] == ["0", "1", "2"]
    result = prescreen.main(["--systems", "sa", "sb", "--gold_csv", "lb.csv", "--annotations_path", "ann.json",
                             "--designs", "LI", "LI+RP", "--relevance_model=minilm", "--output_dir", "out"])
    assert result["n_instructions"] == 3 and sorted(result["designs"]) == ["LI", "LI+RP"]
    assert (tmp_path / "out" / "prescreen.json").is_file()


def test_checkpoint_listing_leaves_out_a_zero_byte_adapter(tmp_path, capsys):
    from rre import checkpoints

    make({**adapter_at("run/p_step_1"), **adapter_at("run/p_step_2"), **adapter_at("run/p_step_3"),
          "run/p_step_2/adapter_model.safetensors": b""})(tmp_path)
    checkpoints.main([str(tmp_path / "run" / "p")])
    assert capsys.readouterr().out.split() == [str(tmp_path / "run" / f"p_step_{n}") for n in (1, 3)]
    assert not checkpoints.is_complete(tmp_path / "run" / "p_step_2")
    assert checkpoints.is_complete(tmp_path / "run" / "p_step_3")
