"""run_ppo.py end to end with a tiny random Llama (SmolLM2's real tokenizer), real data files, the real
relevance encoder in the CLI runs, and a real DeepSpeed ZeRO-2 launch on CPU."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import DEEPSPEED_LAUNCH, accelerate_launch, run_cli
from safetensors.torch import load_file, save_file


def tiny_flags(model_dir: str, output_dir: Path, steps: int, save_freq: int, *extra: str) -> list[str]:
    return [f"--model_name={model_dir}", f"--output_dir={output_dir}", f"--overall_steps={steps}",
            f"--save_freq={save_freq}", "--batch_size=4", "--mini_batch_size=2", "--gradient_accumulation_steps=1",
            "--output_max_length=8", "--max_prompt_length=256", "--dev_max_examples=4", "--eval_table_rows=1",
            "--seed=7", "--mixed_precision=no", "--relevance_model=minilm", *extra]  # exact float32 maths on every CPU kind


def lora_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def assert_loadable_checkpoint(ckpt: Path, base_dir: str, step: int) -> None:
    """PeftModel.from_pretrained on the base model loads the adapter with exactly the saved weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    for name in ("adapter_config.json", "adapter_model.safetensors", "value_head.safetensors",
                 "tokenizer_config.json", "training_state.json"):
        assert (ckpt / name).is_file(), f"{ckpt} lacks {name}"
    assert (ckpt / "state" / "custom_checkpoint_0.pkl").is_file(), f"{ckpt} lacks accelerate's run state"
    assert json.loads((ckpt / "training_state.json").read_text())["current_step"] == step
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(ckpt))
    saved = lora_tensors(ckpt)
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert len(saved) == len(loaded) > 0
    for name, tensor in saved.items():
        match = [p for n, p in loaded.items() if n.replace(".default", "").endswith(name.split("base_model.model.")[-1])]
        assert len(match) == 1 and torch.equal(match[0].detach().float(), tensor.float()), name
    value_head = load_file(str(ckpt / "value_head.safetensors"))
    assert set(value_head) == {"summary.weight", "summary.bias"}


@pytest.fixture(scope="module")
def three_steps(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo3") / "run"
    proc = run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, out, steps=3, save_freq=1))
    return out, proc


def test_three_steps_single_process(three_steps, tiny_llama_dir):
    out, proc = three_steps
    for step in (1, 2, 3):
        assert_loadable_checkpoint(Path(f"{out}_step_{step}"), tiny_llama_dir, step)
    assert_loadable_checkpoint(Path(f"{out}_final"), tiny_llama_dir, 3)
    # LoRA B starts at zero: non-zero B weights show the policy was updated.
    b_weights = [t for n, t in lora_tensors(Path(f"{out}_step_3")).items() if "lora_B" in n]
    assert b_weights and all(t.abs().sum() > 0 for t in b_weights)
    assert not torch.equal(b_weights[0], [t for n, t in lora_tensors(Path(f"{out}_step_1")).items() if "lora_B" in n][0])
    config = json.loads((out / "training_config.json").read_text())
    assert config["ppo"]["batch_size"] == 4 and config["script"]["overall_steps"] == 3
    assert config["reward"]["relevance_scaling"] is True and config["reward"]["max_sequence_length"] == 8
    assert config["resolved"]["prompt_format"] == "chat"
    assert "step 3/3" in proc.stdout and "| dev " in proc.stdout
    # Tensorboard scalars in logging_dir
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs" / "trl"))  # accelerate's tracker, TRL 0.7.4's project name
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("env/reward_mean", "objective/kl", "objective/kl_coef", "ppo/loss/policy", "ppo/loss/value",
                "ppo/policy/clipfrac", "time/generation", "time/update", "eval/reward_mean", "ppo/skipped_minibatches"):
        assert tag in tags, tag
    assert [e.step for e in events.Scalars("env/reward_mean")] == [1, 2, 3]


def ds_flags(model_dir: str, out: Path, steps: int, *extra: str) -> list[str]:
    flags = tiny_flags(model_dir, out, steps, 1, *extra)
    flags[flags.index("--gradient_accumulation_steps=1")] = "--gradient_accumulation_steps=2"
    return flags


@pytest.fixture(scope="module")
def zero2_two_steps(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    return out, run_cli("run_ppo.py", ds_flags(tiny_llama_dir, out, 2), DEEPSPEED_LAUNCH)


def test_deepspeed_zero2_two_processes(zero2_two_steps, tiny_llama_dir):
    out, proc = zero2_two_steps
    for step in (1, 2):
        ckpt = Path(f"{out}_step_{step}")
        assert_loadable_checkpoint(ckpt, tiny_llama_dir, step)
        assert json.loads((ckpt / "training_state.json").read_text())["num_processes"] == 2
    config = json.loads((out / "training_config.json").read_text())
    assert "DEEPSPEED" in config["resolved"]["distributed_type"] and config["resolved"]["num_processes"] == 2
    step1, step2 = lora_tensors(Path(f"{out}_step_1")), lora_tensors(Path(f"{out}_step_2"))
    assert any(not torch.equal(step1[k], step2[k]) for k in step1)
    # accelerate's state: both processes' RNG states and DeepSpeed's two ZeRO-2 optimizer partitions.
    state = Path(f"{out}_step_2") / "state"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in state.iterdir()}
    assert len(list(state.rglob("*zero_pp_rank_*_optim_states.pt"))) == 2
    # Only trainable tensors in DeepSpeed's module states (a tied frozen lm_head would otherwise be saved).
    from rre.run_state import state_file_globals

    (module_file,) = state.rglob("*model_states.pt")
    with torch.serialization.safe_globals(state_file_globals(deepspeed=True)):
        module = torch.load(module_file, map_location="cpu", weights_only=True)["module"]
    assert module and all("lora_" in k or k.startswith("value_head.") for k in module), sorted(module)[:5]
    assert proc.stdout.count("step 2/2") == 1  # only the main process logs


def assert_same_run_state(got: Path, want: Path) -> None:
    """Two checkpoints hold bitwise equal weights, optimizer state (Adam moments and steps; under ZeRO-2 every
    partition's fp32 masters) and run counters."""
    a, b = json.loads((got / "training_state.json").read_text()), json.loads((want / "training_state.json").read_text())
    for key in ("current_step", "kl_coef", "running_scores", "data", "skipped_steps", "skipped_minibatches"):
        assert a[key] == b[key], key
    for name in ("adapter_model.safetensors", "value_head.safetensors"):
        x, y = load_file(str(got / name)), load_file(str(want / name))
        assert set(x) == set(y) and all(torch.equal(x[k], y[k]) for k in y), name
    files = sorted(p.relative_to(want / "state") for p in (want / "state").rglob("*")
                   if p.suffix in (".safetensors", ".bin", ".pt") and "model_states" not in p.name)
    assert files, f"no state files in {want}/state"
    for rel in files:
        if rel.suffix == ".safetensors":
            x, y = load_file(str(got / "state" / rel)), load_file(str(want / "state" / rel))
        else:  # our own files, written by this test's runs
            x = torch.load(got / "state" / rel, map_location="cpu", weights_only=False)
            y = torch.load(want / "state" / rel, map_location="cpu", weights_only=False)
        assert_nested_equal(x, y, str(rel))


def assert_nested_equal(x, y, where: str) -> None:
    if isinstance(y, torch.Tensor):
        assert isinstance(x, torch.Tensor) and torch.equal(x, y), where
    elif isinstance(y, dict):
        assert set(x) == set(y), where
        for k in y:
            if k not in ("ds_config", "ds_version"):
                assert_nested_equal(x[k], y[k], f"{where}/{k}")
    elif isinstance(y, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, w) in enumerate(zip(x, y)):
            assert_nested_equal(u, w, f"{where}[{i}]")
    elif hasattr(y, "__dict__") and not isinstance(y, type):  # e.g. DeepSpeed's loss scaler
        assert type(x) is type(y), where
        assert_nested_equal(vars(x), vars(y), where)
    else:
        assert x == y, where


def test_zero2_resume_is_bitwise_equal(zero2_two_steps, tiny_llama_dir, tmp_path):
    """Under the CPU ZeRO-2 launch: stop after step 1, resume to step 2: equal to the uninterrupted run."""
    reference, _ = zero2_two_steps
    out = tmp_path / "ds"
    run_cli("run_ppo.py", ds_flags(tiny_llama_dir, out, 1), DEEPSPEED_LAUNCH)
    proc = run_cli("run_ppo.py", ds_flags(tiny_llama_dir, out, 2, "--resume_from_checkpoint=latest"), DEEPSPEED_LAUNCH)
    assert "resumed from" in proc.stderr and "at step 1" in proc.stderr
    assert_same_run_state(Path(f"{out}_final"), Path(f"{reference}_final"))
    # ZeRO-2 partitions restore only onto as many processes as wrote them; without DeepSpeed not at all.
    one = accelerate_launch(processes=1)
    proc = run_cli("run_ppo.py", ds_flags(tiny_llama_dir, out, 3, "--resume_from_checkpoint=latest"), one, expect_rc=1)
    assert "error: " in proc.stderr and "resume with --num_processes 2" in proc.stderr
    proc = run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, out, 3, 1, "--resume_from_checkpoint=latest"), expect_rc=2)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "with DeepSpeed" in proc.stderr


def test_resume_reaches_the_same_state(three_steps, tiny_llama_dir, tmp_path):
    """Stop after step 1, resume with the larger step count: the result equals the uninterrupted run."""
    reference, _ = three_steps
    out = tmp_path / "run"
    run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, out, steps=1, save_freq=1))
    saved = json.loads((Path(f"{out}_step_1") / "training_state.json").read_text())
    proc = run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, out, 3, 1, "--resume_from_checkpoint=latest"))
    assert f"at step 1 (kl_coef={saved['kl_coef']:.6f}" in proc.stderr
    assert json.loads((Path(f"{out}_final") / "training_state.json").read_text())["current_step"] == 3
    assert_same_run_state(Path(f"{out}_final"), Path(f"{reference}_final"))


# ---------------------------------------------------------------------------------------------------------
# In-process checks of the trainer (relevance off to keep them quick).


def make_run(model_dir: str, output_dir: Path, *extra: str):
    from run_ppo import parse_args, setup

    args, ppo_config, reward_config = parse_args(
        tiny_flags(model_dir, output_dir, 3, 1, "--relevance_scaling=false", "--reward_branching=false",
                   "--log_with=none", *extra))
    return setup(args, ppo_config, reward_config)


def next_batch(run):
    idx = run.stream.next_indices()
    return [run.train_examples[i] for i in idx], [run.train_prompts[i] for i in idx]


def trainable(run) -> dict[str, torch.Tensor]:
    from rre.ppo import trainable_named_parameters

    return {n: p.detach().clone() for n, p in trainable_named_parameters(run.trainer.unwrapped)}


def test_resume_restores_optimizer_kl_scores_rng_and_data(tiny_llama_dir, tmp_path):
    from rre.run_state import save_checkpoint

    run = make_run(tiny_llama_dir, tmp_path / "a")
    run.trainer.step(*next_batch(run))
    ckpt = tmp_path / "a_step_1"
    save_checkpoint(ckpt, run.trainer, run.tokenizer, run.stream, run.accelerator)
    rng = torch.get_rng_state()
    opt_state = {n: {k: v.clone() for k, v in run.trainer.optimizer.optimizer.state[p].items()}
                 for n, p in run.trainer.unwrapped.named_parameters() if p.requires_grad}
    weights = trainable(run)
    assert all(s["exp_avg"].abs().sum() > 0 for s in opt_state.values() if s)

    resumed = make_run(tiny_llama_dir, tmp_path / "a", f"--resume_from_checkpoint={ckpt}")
    t = resumed.trainer
    assert t.current_step == 1 and t.kl_ctl.value == run.trainer.kl_ctl.value
    assert t.running.state_dict() == run.trainer.running.state_dict()
    assert resumed.stream.state_dict() == run.stream.state_dict()
    assert torch.equal(torch.get_rng_state(), rng)
    for name, value in trainable(resumed).items():
        assert torch.equal(value, weights[name]), name
    for name, p in t.unwrapped.named_parameters():
        if p.requires_grad:
            state = t.optimizer.optimizer.state[p]
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(state[key], opt_state[name][key]), (name, key)


def test_fused_forward_equals_accumulated_mini_batches(tiny_llama_dir, tmp_path):
    """One forward/backward over a gradient-accumulation group gives the gradient of accumulating its
    mini-batches one at a time (each loss a masked mean over its own tokens)."""
    from rre.ppo import Rollout, build_padded_batch, compute_gae_advantages, trainable_named_parameters

    run = make_run(tiny_llama_dir, tmp_path / "f", "--gradient_accumulation_steps=2")
    t = run.trainer
    examples, prompts = next_batch(run)
    responses, texts = t.generate(prompts)
    batch = build_padded_batch(prompts, responses, run.tokenizer.pad_token_id)
    logprobs, values, ref_logprobs, _ = t.score_forward(batch)
    mask = batch.response_mask
    rewards = torch.randn(mask.shape) * mask
    advantages, returns = compute_gae_advantages(values, rewards, mask, 1.0, 0.95)
    # Perturb the old log-probs so ratios differ from 1 and some tokens get clipped.
    rollout = Rollout(batch, texts, torch.zeros(4), logprobs + 0.3 * torch.randn(mask.shape), ref_logprobs, values, mask)
    params = [p for _, p in trainable_named_parameters(t.model)]
    t.model.eval()  # no dropout, so the two computations see the same function

    fused, _ = t._chunk_loss(rollout, advantages, returns, torch.tensor([0, 1, 2, 3]))
    fused_grads = torch.autograd.grad(fused, params)
    first, _ = t._chunk_loss(rollout, advantages, returns, torch.tensor([0, 1]))
    second, _ = t._chunk_loss(rollout, advantages, returns, torch.tensor([2, 3]))
    accumulated = torch.autograd.grad((first + second) / 2, params)
    assert torch.allclose(fused, (first + second) / 2, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in fused_grads)
    for a, b in zip(fused_grads, accumulated):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_both_rollout_samplers_run_in_the_trainer(tiny_llama_dir, tmp_path):
    """--rollout_sampler=generate (HF generate) still runs, and so does the default decode loop, which leaves
    the policy with the attention it loaded (eager on CPU)."""
    run = make_run(tiny_llama_dir, tmp_path / "s", "--rollout_sampler=generate")
    t = run.trainer
    _, prompts = next_batch(run)
    assert t.config.rollout_sampler == "generate"
    for sampler in ("generate", "loop"):
        t.config.rollout_sampler = sampler
        responses, texts = t.generate(prompts)
        assert len(responses) == len(texts) == 4 and all(1 <= len(r) <= 8 for r in responses), sampler
        # A rollout is cut (rre.cutoff) exactly when it used all 8 tokens without ending in EOS.
        eos = run.tokenizer.eos_token_id
        assert t.rollout_cut == [len(r) == 8 and r[-1].item() != eos for r in responses], sampler
    assert t.unwrapped.causal_lm.config._attn_implementation == "eager"


def test_nonfinite_scores_and_losses_skip_steps_then_stop(tiny_llama_dir, tmp_path):
    run = make_run(tiny_llama_dir, tmp_path / "n", "--max_consecutive_skips=3")
    t = run.trainer
    before, kl_coef = trainable(run), t.kl_ctl.value
    t.reward_fn = lambda examples, texts: [float("nan")] + [1.0] * (len(texts) - 1)
    stats = t.step(*next_batch(run))
    assert stats["ppo/step_skipped"] == 1.0 and stats["ppo/skipped_steps"] == 1
    assert t.kl_ctl.value == kl_coef
    assert all(torch.equal(v, before[n]) for n, v in trainable(run).items())

    # A NaN loss: its optimizer step is neutralized, the step counts as skipped, weights stay put.
    t.reward_fn = lambda examples, texts: [1.0] * len(texts)
    real_chunk_loss = t._chunk_loss

    def nan_loss(*args):
        loss, stats = real_chunk_loss(*args)
        return loss * float("nan"), stats

    t._chunk_loss = nan_loss
    stats = t.step(*next_batch(run))
    assert stats["ppo/step_skipped"] == 1.0 and stats["ppo/skipped_steps"] == 2
    assert all(torch.equal(v, before[n]) for n, v in trainable(run).items())
    with pytest.raises(FloatingPointError, match="3 PPO steps in a row"):
        t.step(*next_batch(run))

    # A good step resets the count and moves the weights.
    t._chunk_loss = real_chunk_loss
    t.consecutive_skips = 0
    stats = t.step(*next_batch(run))
    assert stats["ppo/step_skipped"] == 0.0
    assert any(not torch.equal(v, before[n]) for n, v in trainable(run).items())


def test_reward_flags_reach_the_reward(tiny_llama_dir, tmp_path):
    from run_ppo import parse_args

    _, ppo_config, reward_config = parse_args(["--reward_model_batch_size", "8", "--length_incentive=false",
                                               "--output_max_length=64", "--relevance_model=minilm"])
    assert reward_config.reward_model_batch_size == 8 and reward_config.length_incentive is False
    assert reward_config.max_sequence_length == 64  # the paper's reward range follows output_max_length
    _, _, reward_config = parse_args(["--output_max_length=64", "--max_sequence_length=128", "--relevance_model=minilm"])
    assert reward_config.max_sequence_length == 128
    from run_ppo import setup

    args, ppo_config, reward_config = parse_args(tiny_flags(tiny_llama_dir, tmp_path / "r", 1, 1,
                                                            "--reward_model_batch_size=8", "--log_with=none"))
    run = setup(args, ppo_config, reward_config)
    assert run.reward_model.encoder.batch_size == 8
    assert run.reward_model.config.relevance_scaling and run.reward_model.config.reward_branching
    # The reward gets the example's own query/reference/qtype, not the prompt text.
    example = run.train_examples[0]
    assert run.reward_fn([example], ["Paris."]) == run.reward_model([example.query], ["Paris."], [example.reference],
                                                                    [example.qtype])


def test_latest_checkpoint_ignores_incomplete_saves(tmp_path):
    from rre.checkpoints import latest_checkpoint
    from rre.run_state import STATE_JSON

    out = tmp_path / "run"
    for name, complete in (("run_step_2", True), ("run_step_10", True), ("run_step_20.tmp-123", True),
                           (".partial-run_step_25", True), ("run_step_30", False), ("run_final", True),
                           ("other_step_40", True)):
        (tmp_path / name).mkdir()
        if complete:
            for f in ("training_state.json", "adapter_config.json"):
                (tmp_path / name / f).write_text("{}")
            save_file({"w": torch.zeros(2)}, str(tmp_path / name / "adapter_model.safetensors"))
    assert latest_checkpoint(str(out), STATE_JSON) == tmp_path / "run_step_10"
    assert latest_checkpoint(str(tmp_path / "none"), STATE_JSON) is None


def test_bad_input_is_one_line_exit_2(tiny_llama_dir, tmp_path):
    proc = run_cli("run_ppo.py", ["--prompt_format=fancy"], expect_rc=2)
    assert proc.stderr.strip().startswith("error: --prompt_format") and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("run_ppo.py", ["--batch_size=5", "--mini_batch_size=2", "--gradient_accumulation_steps=1"],
                   expect_rc=2)
    assert proc.stderr.strip().startswith("error: batch_size (5)")
    proc = run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, tmp_path / "x", 1, 0,
                                            f"--dataset_path={tmp_path / 'missing.json'}"), expect_rc=2)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "missing.json" in proc.stderr
    # --max_prompt_length follows --output_max_length (as in the paper): 8 tokens drop every prompt; say so.
    flags = [f for f in tiny_flags(tiny_llama_dir, tmp_path / "y", 1, 0) if not f.startswith("--max_prompt_length")]
    proc = run_cli("run_ppo.py", flags, expect_rc=2)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --dataset_path data/train.json: 0 usable prompts")
    assert "90 of its 90 prompts are longer than --max_prompt_length=8" in last  # the train file's count, not dev's
    assert not (tmp_path / "y").exists()


def test_features_module_reaches_the_training_reward(tiny_llama_dir, tmp_path):
    """A researcher's combination rule replaces the reward PPO trains on (here: a constant 0.25)."""
    module = tmp_path / "flat.py"
    module.write_text("EXTRA_FEATURES = {'always_one': lambda s: 1.0}\n"
                      "def combine(f):\n    return 0.25 * f['always_one']\n")
    out = tmp_path / "feat"
    run_cli("run_ppo.py", tiny_flags(tiny_llama_dir, out, 1, 0, "--relevance_scaling=false", "--reward_branching=false",
                       f"--features_module={module}"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs" / "trl"))
    events.Reload()
    assert [e.value for e in events.Scalars("env/reward_mean")] == [0.25]


def test_resume_refuses_a_state_file_that_is_not_plain_data(tiny_llama_dir, tmp_path):
    """accelerate unpickles its state files fully; run_ppo.py first opens them with weights_only=True."""
    import pickle

    from rre.errors import DataError
    from rre.run_state import save_checkpoint

    run = make_run(tiny_llama_dir, tmp_path / "a")
    ckpt = tmp_path / "a_step_0"
    save_checkpoint(ckpt, run.trainer, run.tokenizer, run.stream, run.accelerator)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (ckpt / "state" / "custom_checkpoint_3.pkl").write_bytes(pickle.dumps(Payload()))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    with pytest.raises(DataError, match="custom_checkpoint_3.pkl: not plain tensors/data"):
        make_run(tiny_llama_dir, tmp_path / "a", f"--resume_from_checkpoint={ckpt}")
    assert not marker.exists()
