"""Where the parts meet the paper: the gold model's input, one proxy from training to the check, eval-mode
training forwards, optimizer steps per PPO step, and the paper's README commands run as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ENV, ROOT, accelerate_launch, paper_config_launch
from test_run_ppo import make_run, next_batch, tiny_flags, trainable

PAD = 0
# A word-level tokenizer small enough to write its ids by hand; ":" and "?" are unknown, so they become id 0,
# Starling's pad id, inside a text.
VOCAB = {"<unk>": 0, "<s>": 1, "<|im_start|>": 2, "<|im_end|>": 3, "user": 4, "assistant": 5, "Human:": 6,
         "Assistant:": 7, "Q?": 8, "A.": 9, "x": 10}


@pytest.fixture(scope="module")
def word_tokenizer_dir(tmp_path_factory) -> str:
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel(VOCAB, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    out = tmp_path_factory.mktemp("word-tok")
    fast.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def word_starling(tmp_path_factory, word_tokenizer_dir):
    from tiny_reward_models import save_tiny_starling

    return save_tiny_starling(tmp_path_factory.mktemp("word-starling") / "rm", word_tokenizer_dir)


def test_gold_prompt_strings_and_ids(word_starling, word_tokenizer_dir):
    from rre.gold import load_gold_reward_model, starling_text

    instruction = "\nQ?\n: "
    assert starling_text(instruction, "A.", "paper") == (
        "<|im_start|>user\n\n\nHuman: Q?\n\nAssistant: <|im_end|>\n<|im_start|>assistant\nA.<|im_end|>")
    assert starling_text(instruction, "A.", "model_card") == (
        "<|im_start|>user\n\nQ?\n: <|im_end|>\n<|im_start|>assistant\nA.<|im_end|>")
    folder, _ = word_starling
    paper = load_gold_reward_model(folder, "starling", device="cpu", tokenizer_name=word_tokenizer_dir)
    card = load_gold_reward_model(folder, "starling", device="cpu", tokenizer_name=word_tokenizer_dir,
                                  gold_prompt="model_card")
    # paper: no special tokens added; model card: the tokenizer's BOS, and the unstripped ":" (unknown -> 0).
    assert paper.encode([instruction], ["A."]) == [[2, 4, 6, 8, 7, 3, 2, 5, 9, 3]]
    assert card.encode([instruction], ["A."]) == [[1, 2, 4, 8, 0, 3, 2, 5, 9, 3]]


def manual_score(model, ids: list[int], position: int) -> float:
    with torch.no_grad():
        hidden = model.transformer(input_ids=torch.tensor([ids])).last_hidden_state[0, position]
        return float(hidden @ model.v_head.weight[0])


def test_gold_paper_truncation_and_pad_read_position(word_starling, word_tokenizer_dir):
    from rre.gold import load_gold_reward_model, pad_read_positions

    folder, model = word_starling
    gold = load_gold_reward_model(folder, "starling", batch_size=3, device="cpu", tokenizer_name=word_tokenizer_dir,
                                  max_length=8, dtype="float32")
    responses = ["A.", "A. x ? x", "x " * 6]
    ids = [[2, 4, 6, 8, 7, 3, 2, 5, 9, 3], [2, 4, 6, 8, 7, 3, 2, 5, 9, 10, 0, 10, 3],
           [2, 4, 6, 8, 7, 3, 2, 5] + [10] * 6 + [3]]
    assert gold.encode(["Q?"] * 3, responses) == ids
    cut = [row[-8:] for row in ids]  # left truncation keeps the last 8 ids
    assert cut == [[6, 8, 7, 3, 2, 5, 9, 3], [3, 2, 5, 9, 10, 0, 10, 3], [5, 10, 10, 10, 10, 10, 10, 3]]
    # Read before the first pad id: index 4 in the second row (its "?" is id 0), the last token elsewhere.
    expected = [manual_score(model, cut[0], 7), manual_score(model, cut[1][:5], 4), manual_score(model, cut[2], 7)]
    assert gold.score(["Q?"] * 3, responses, progress=False) == pytest.approx(expected, abs=1e-5)
    padded = torch.tensor([[5, 6, 0, 0], [0, 5, 6, 7], [5, 6, 7, 8]])
    assert pad_read_positions(padded, torch.tensor([2, 4, 4]), PAD).tolist() == [1, 3, 3]


def test_default_training_is_not_changed_by_dropout(tiny_llama_dir, tmp_path):
    """TRL 0.7.4 trained in eval mode: with the default, dropout probabilities do not change the weights."""
    def one_step(name: str, *flags: str) -> dict[str, torch.Tensor]:
        run = make_run(tiny_llama_dir, tmp_path / name, *flags)
        run.trainer.step(*next_batch(run))
        return trainable(run)

    low = one_step("low", "--lora_dropout=0.0", "--value_head_dropout=0.0")
    high = one_step("high", "--lora_dropout=0.5", "--value_head_dropout=0.5")
    assert low.keys() == high.keys() and all(torch.equal(low[k], high[k]) for k in low)
    dropped = one_step("drop", "--lora_dropout=0.5", "--value_head_dropout=0.5", "--train_dropout=true")
    assert any(not torch.equal(low[k], dropped[k]) for k in low)


def count_run(flags: list[str], launcher: list[str] | None = None, env: dict | None = None) -> tuple[int, list[int]]:
    cmd = (launcher or [sys.executable]) + ["tests/count_optimizer_steps.py"] + flags
    proc = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = re.findall(r"optimizer steps per PPO step: (\d+) \(mini-batch 2, accumulation (\d+)", proc.stderr)
    assert len(printed) == 1, proc.stderr[-2000:]
    return int(printed[0][0]), [int(n) for n in re.findall(r"counted optimizer.step calls: (\d+)", proc.stdout)]


@pytest.mark.parametrize("launch, extra, expected", [
    ("python", [], 4),  # batch 4 / (mini-batch 2 x accumulation 2) x 4 epochs
    ("configs/zero2-cpu.yaml", [], 8),  # the launch config's gradient_accumulation_steps 1, as the paper's
    ("configs/zero2-cpu.yaml", ["--accumulation_from_launch=false"], 4),
    ("configs/zero2-bf16.yaml", ["--mixed_precision=no"], 8),  # the paper's config (run on CPU here)
])
def test_printed_optimizer_steps_match_the_real_ones(tiny_llama_dir, tmp_path, launch, extra, expected):
    flags = tiny_flags(tiny_llama_dir, tmp_path / "run", 1, 0, "--relevance_scaling=false",
                       "--reward_branching=false", "--log_with=none", *extra)
    flags[flags.index("--gradient_accumulation_steps=1")] = "--gradient_accumulation_steps=2"
    launcher = None if launch == "python" else [*accelerate_launch(launch, processes=1), "--num_machines", "1"]
    env = {**ENV, "CUDA_VISIBLE_DEVICES": ""} if launch.endswith("bf16.yaml") else None
    printed, counted = count_run(flags, launcher, env)
    assert printed == expected and counted == [expected]


# The paper's README commands, flag for flag. Only the models (by their flags), the run's size (appended flags:
# later flags win) and, on CPU, the launch's precision differ.
PAPER_TRAIN = ("--exp_name=alpaca_test --model_name=$MODEL_NAME --overall_steps=10000 --seed=42 --save_freq=500 "
               "--output_dir=./alpaca_test --cache_dir=$CACHE_DIR --dataset_path=data/alpacafarm_train.json "
               "--dev_prompt_path=data/alpacafarm_val.json --logging_dir=./alpaca_test/logs --output_max_length=512 "
               "--batch_size=16 --mini_batch_size=2 --gradient_accumulation_steps=4 --learning_rate=1e-5 "
               "--lora_r=8 --lora_alpha=16 --lora_dropout=0.05 --reward_model_batch_size 8 "
               "--length_incentive=true --repetition_penalty=true --relevance_scaling=true --reward_branching=true")
SMALL_RUN = ["--overall_steps=2", "--save_freq=1", "--output_max_length=8", "--batch_size=4",
             "--gradient_accumulation_steps=2", "--dev_max_examples=2", "--mixed_precision=no", "--rar_max_dot=1.0",
             "--max_prompt_length=256", "--relevance_model=minilm"]
PAPER_EVAL = ("--base_model_name=$BASE --peft_model_name=./alpaca_test_step_$step --batch_size=16 "
              "--baseline_model_file=$baseline_model_file --cache_dir=$CACHE_DIR --device=0")
PAPER_MONOTONICITY = "--output_dir=. --model_prefix=alpaca_test"


def paper_flags(command: str, **values: str) -> list[str]:
    for name, value in values.items():
        command = command.replace(f"${name}", value)
    return command.split()


def run_in(cwd: Path, cmd: list[str], expect_rc: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == expect_rc, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def paper_pipeline(tmp_path_factory, tiny_llama_dir, smollm2_dir):
    """The paper's three commands, in a folder laid out as the paper's (data/alpacafarm_*.json)."""
    from tiny_reward_models import save_tiny_starling

    work = tmp_path_factory.mktemp("paper")
    (work / "data").mkdir()
    (work / "data" / "alpacafarm_train.json").write_text((ROOT / "data" / "train.json").read_text())
    (work / "data" / "alpacafarm_val.json").write_text((ROOT / "data" / "dev.json").read_text())
    # The paper's evaluation reads data/alpaca_eval.json and data/natural-instructions (relative, as here).
    (work / "data" / "alpaca_eval.json").write_text((ROOT / "data" / "eval.json").read_text())
    shutil.copytree(ROOT / "data" / "superni-fixture", work / "data" / "natural-instructions")
    launch = paper_config_launch("run_ppo.py")
    train = run_in(work, launch + paper_flags(PAPER_TRAIN, MODEL_NAME=tiny_llama_dir, CACHE_DIR=str(work / "cache"))
                   + SMALL_RUN)
    evals = []
    for step in (1, 2):
        flags = paper_flags(PAPER_EVAL, BASE=tiny_llama_dir, step=str(step), baseline_model_file="gpt4.json",
                            CACHE_DIR=str(work / "cache"))
        evals.append(run_in(work, [sys.executable, str(ROOT / "evaluation.py"), *flags, "--max_new_tokens=8",
                                   "--superni_max_new_tokens=8", "--superni_max_instances=2"]))
    gold = save_tiny_starling(work / "starling", smollm2_dir)[0]
    gold_flags = ["--gold_model", gold, "--gold_tokenizer", smollm2_dir, "--bootstrap_samples=50",
                  "--steps", "1", "2"]  # this run's steps (the paper's default: 500 ... 5000)
    mono = run_in(work, [sys.executable, str(ROOT / "eval_monotonicity.py"), *paper_flags(PAPER_MONOTONICITY),
                         *gold_flags])
    return work, train, evals, mono, gold_flags


def test_paper_commands_run_as_written(paper_pipeline):
    work, train, evals, mono, _ = paper_pipeline
    assert "optimizer steps per PPO step: 8 (mini-batch 2, accumulation 1;" in train.stderr
    for step, proc in zip((1, 2), evals):
        assert "note: --baseline_model_file has no effect here" in proc.stderr
        folder = work / f"alpaca_test_step_{step}"
        assert (folder / f"alpaca-eval-alpaca_test_step_{step}.json").is_file()  # no --evaluations: both ran
        assert (folder / "superni_eval.json").is_file()
    assert "SignificanceResult" in mono.stdout or "statistic=" in mono.stdout
    assert (work / "monotonicity.json").is_file()


def test_the_check_scores_the_trained_proxy(paper_pipeline):
    work, _, _, mono, _ = paper_pipeline
    trained = json.loads((work / "alpaca_test" / "training_config.json").read_text())["proxy"]
    used = json.loads((work / "monotonicity.json").read_text())["proxy"]
    assert trained["reward"]["max_sequence_length"] == 8 and trained["reward"]["rar_max_dot"] == 1.0
    assert used["reward"] == trained["reward"] and used["stop_strings"] == trained["stop_strings"]
    assert used["overrides"] == [] and "proxy: as trained" in mono.stdout
    assert json.loads((work / "monotonicity.json").read_text())["gold_prompt"] == "paper"
    for step in (1, 2):  # every checkpoint carries the run's settings
        copy = json.loads((work / f"alpaca_test_step_{step}" / "training_config.json").read_text())["proxy"]
        assert copy == trained


def test_explicit_flags_override_and_mixed_runs_fail(paper_pipeline, capsys):
    import eval_monotonicity

    work, _, _, _, gold_flags = paper_pipeline
    paper_eval = f"--eval_path={work / 'data' / 'alpaca_eval.json'}"  # in-process: the cwd is not the paper's folder
    result = eval_monotonicity.main([f"--output_dir={work}", "--model_prefix=alpaca_test", "--max_sequence_length=512",
                                     paper_eval, *gold_flags])
    assert result["proxy"]["reward"]["max_sequence_length"] == 512
    assert result["proxy"]["overrides"] == ["max_sequence_length: 8 (trained) -> 512"]
    assert "proxy override: max_sequence_length: 8 (trained) -> 512" in capsys.readouterr().out
    copy = work / "alpaca_test_step_2" / "training_config.json"
    original = copy.read_text()
    record = json.loads(original)
    record["proxy"]["reward"]["length_incentive"] = False
    copy.write_text(json.dumps(record))
    try:
        with pytest.raises(SystemExit) as exit_info:
            eval_monotonicity.main([f"--output_dir={work}", "--model_prefix=alpaca_test", paper_eval, *gold_flags])
    finally:
        copy.write_text(original)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "alpaca_test_step_1" in err and "alpaca_test_step_2" in err
    assert "length_incentive" in err


def test_score_outputs_reads_the_run(paper_pipeline, tmp_path):
    work, *_ = paper_pipeline
    outputs = work / "alpaca_test_step_2" / "alpaca-eval-alpaca_test_step_2.json"
    proc = run_in(ROOT, [sys.executable, "score_outputs.py", f"--run_dir={work / 'alpaca_test'}",
                         f"--outputs_path={outputs}", f"--save_path={tmp_path / 'f.json'}"])
    assert "proxy: as trained" in proc.stderr
    scores = {r["instruction"]: r["reward"] for r in json.loads((tmp_path / "f.json").read_text())}
    # The same proxy as the check: its cached per-checkpoint scores equal these.
    # The pipeline's own (as-trained) check wrote the first cache file; an override test may have added another.
    cached = min((work / "alpaca_test_step_2").glob("scores-proxy-*.json"), key=lambda p: p.stat().st_mtime_ns)
    cached_rewards = [f["reward"] for f in json.loads(cached.read_text())["scores"]]  # per-sample features
    # In float32 the two scorings agree to the last digits. Where the precision rule picks bf16 autocast for the
    # relevance encoder, its dot products agree to about 1e-3 across two encoder calls (reward_model.py's
    # --reward_dtype), so QR and RAR, and the reward, agree to that: a different proxy (other flags, another
    # encoder, another scale) moves rewards far more.
    from rre.precision import native_bf16

    tolerance = {"rel": 2e-2, "abs": 2e-4} if native_bf16() else {"abs": 1e-6}
    assert sorted(cached_rewards) == pytest.approx(sorted(scores.values()), **tolerance)
