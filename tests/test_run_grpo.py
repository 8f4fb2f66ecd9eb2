"""run_grpo.py: TRL's GRPO and RLOO with the white-box reward, on the offline SmolLM2 (as the issue asks), kept
tiny: 2 steps of 4 samples (2 prompts x 2 generations), 8 new tokens."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import DEEPSPEED_LAUNCH, ENV, ROOT, run_cli
from safetensors.torch import load_file



def flags(trainer: str, model_dir: str, output_dir: Path, steps: int = 2, *extra: str) -> list[str]:
    return [f"--trainer={trainer}", f"--model_name={model_dir}", f"--output_dir={output_dir}",
            f"--overall_steps={steps}", "--save_freq=1", "--batch_size=4", "--mini_batch_size=2",
            "--num_generations=2", "--output_max_length=8", "--max_prompt_length=256", "--relevance_model=minilm", "--rar_max_dot=1.0",
            "--seed=7", *extra]


def assert_checkpoint(ckpt: Path, base_dir: str, trainer: str, step: int) -> None:
    """The run_ppo.py layout: a LoRA adapter PeftModel loads with the saved weights, tokenizer, config."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "training_config.json"):
        assert (ckpt / name).is_file(), f"{ckpt} lacks {name}"
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == step
    config = json.loads((ckpt / "training_config.json").read_text())
    assert config["trainer"] == trainer and config["reward"]["rar_max_dot"] == 1.0
    assert config["reward"]["max_sequence_length"] == 8 and config["trl"]["num_generations"] == 2
    saved = load_file(str(ckpt / "adapter_model.safetensors"))
    b = [t for n, t in saved.items() if "lora_B" in n]
    assert b and any(t.abs().sum() > 0 for t in b)  # LoRA B starts at zero: the policy was updated
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(ckpt))
    loaded = {n.replace(".default", ""): p for n, p in model.named_parameters() if "lora_" in n}
    assert len(loaded) == len(saved)
    for name, tensor in saved.items():
        assert torch.equal(loaded[name].detach().float(), tensor.float()), name


def assert_evaluation_answers(ckpt: Path, base_dir: str) -> None:
    """evaluation.py answers data/eval.json with the checkpoint, unchanged."""
    run_cli("evaluation.py", [f"--base_model_name={base_dir}", f"--peft_model_name={ckpt}", "--batch_size=32",
                              "--evaluations=alpaca", "--eval_path=data/eval.json", "--max_new_tokens=4", "--seed=42"])
    outputs = json.loads((ckpt / f"alpaca-eval-{ckpt.name}.json").read_text())
    assert len(outputs) == len(json.loads((ROOT / "data/eval.json").read_text()))
    assert all(o["generator"] == ckpt.name for o in outputs)


# Each trainer once, each launcher once: the launch path (plain process or two-process ZeRO-2) is the same code for
# both trainers, and each pair costs about a minute of the suite's 15.
@pytest.mark.parametrize("trainer,launch", [("grpo", "zero2-cpu"), ("rloo", "python")])
def test_two_steps_write_evaluable_checkpoints(trainer, launch, smollm2_dir, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run_grpo.py", flags(trainer, smollm2_dir, out), DEEPSPEED_LAUNCH if launch == "zero2-cpu" else None)
    for step in (1, 2):
        assert_checkpoint(Path(f"{out}_step_{step}"), smollm2_dir, trainer, step)
    assert (Path(f"{out}_final") / "adapter_model.safetensors").is_file()
    assert proc.stdout.count("step 2/2 | reward ") == 1  # the main process prints the step line once
    config = json.loads((out / "training_config.json").read_text())
    assert config["resolved"]["num_processes"] == (2 if launch == "zero2-cpu" else 1)
    if launch == "zero2-cpu":
        assert "DEEPSPEED" in config["resolved"]["distributed_type"]
        assert (Path(f"{out}_step_2") / "rng_state_1.pth").is_file()  # both processes' state was saved
    # The proxy-side metrics, per step, in tensorboard under run_ppo.py's names.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("reward_mean", "reward_std", "LI", "RP", "QR", "RAR", "paper_reward"):
        assert any(t.endswith(f"env/{name}") for t in tags), (name, sorted(tags))
    assert_evaluation_answers(Path(f"{out}_step_2"), smollm2_dir)


def test_resume_after_kill_reaches_the_same_final_step(smollm2_dir, tmp_path):
    """SIGKILL the run once step 1 is saved, resume with 'latest': it continues at step 1 and ends at step 2."""
    out = tmp_path / "run"
    cmd = [sys.executable, "run_grpo.py"] + flags("grpo", smollm2_dir, out)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    step1 = Path(f"{out}_step_1")
    deadline = time.monotonic() + 600
    while not (step1 / "trainer_state.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"run ended before it was killed (exit {proc.returncode})\n{err[-3000:]}"
    assert step1.is_dir() and not Path(f"{out}_final").exists()
    resumed = run_cli("run_grpo.py", flags("grpo", smollm2_dir, out, 2, "--resume_from_checkpoint=latest"))
    assert f"resumed from {step1} at step 1" in resumed.stderr
    assert "step 1/2" not in resumed.stdout and resumed.stdout.count("step 2/2 | reward ") == 1
    state = json.loads((Path(f"{out}_step_2") / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]


def test_trl_gets_exactly_the_white_box_rewards(smollm2_dir, tmp_path):
    """Record what TRL's own training step passes to and gets from the reward function, and compare with
    ReversedEngineeredRewardForInference on the same samples, built independently from the data file."""
    from reward_model import ReversedEngineeredRewardForInference
    from rre.data import load_examples
    from rre.prompts import get_prompt_format
    from run_grpo import WhiteBoxReward, build_trainer, parse_args

    args, trl_args, reward_config = parse_args(
        flags("grpo", smollm2_dir, tmp_path / "run", 1, "--log_with=none", "--save_freq=0",
              "--features_module=examples/my_features.py"))
    trainer, tokenizer, _ = build_trainer(args, trl_args, reward_config)
    fn = trainer.reward_funcs[0]
    assert isinstance(fn, WhiteBoxReward)
    calls = []

    def recording(**kwargs):
        calls.append((kwargs, fn(**kwargs)))
        return calls[-1][1]

    recording.__name__ = fn.__name__
    trainer.reward_funcs[0] = recording
    trainer.train()
    assert len(calls) == 1
    kwargs, got = calls[0]
    assert len(got) == 4 and len(set(kwargs["query"])) == 2  # 2 prompts x 2 generations
    by_query = {e.query: e for e in load_examples("data/train.json")}
    examples = [by_query[q] for q in kwargs["query"]]
    assert [e.reference for e in examples] == kwargs["reference"] and [e.qtype for e in examples] == kwargs["qtype"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_features", ROOT / "examples/my_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rer = ReversedEngineeredRewardForInference(reward_config, get_prompt_format("chat", tokenizer).stop_strings,
                                               module.EXTRA_FEATURES, module.combine)
    # return_features=True as the reward function asks (for its logged feature means): the encoder then sees the
    # same batch of texts, so even its bf16 numerics match to the last bit.
    want, _ = rer([e.query for e in examples], kwargs["completions"], [e.reference for e in examples],
                  [e.qtype for e in examples], return_features=True)
    assert got == want and all(isinstance(r, float) for r in got)


@pytest.mark.parametrize("bad, message", [
    (["--num_generations=3"], "--batch_size (4) must be a multiple of --num_generations (3)"),
    (["--num_generations=1"], "--num_generations must be >= 2"),
    (["--trainer=ppo"], "--trainer must be one of grpo, rloo"),
    (["--trainer=rloo", "--loss_type=dapo"], "--loss_type applies to --trainer=grpo only"),
    (["--precision=half"], "--mixed_precision must be one of auto, no, float32, bf16, bfloat16"),
])
def test_bad_flags_are_one_line_exit_2(bad, message, capsys):
    from run_grpo import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(flags("grpo", "unused", Path("unused")) + bad)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
