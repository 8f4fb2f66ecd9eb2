"""PPO maths on small hand-computed tensors (expected numbers worked out in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from rre.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOConfig,
    RunningMoments,
    build_padded_batch,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae_advantages,
    compute_per_token_rewards,
    constant_with_warmup_lr,
    masked_var,
    normalize_scores,
    postprocess_responses,
    response_lengths,
    whiten,
)


def close(actual, expected, tol=1e-5):
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float64),
                          torch.as_tensor(expected, dtype=torch.float64), atol=tol, rtol=0)


def test_whiten_uses_masked_unbiased_statistics():
    # Masked entries [1, 2, 3]: mean 2, unbiased variance (1 + 0 + 1) / 2 = 1. The masked 100 is ignored.
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert close(masked_var(values, mask), 1.0)
    assert close(whiten(values, mask), [[-1.0, 0.0, 1.0, 0.0]])
    # shift_mean=False adds the mean back: (x - 2) / 1 + 2.
    assert close(whiten(values, mask, shift_mean=False), [[1.0, 2.0, 3.0, 0.0]])


def test_gae_by_hand():
    # Row 0: V = [1, 2, 0.5], r = [0, 0, 1], gamma = 1, lambda = 0.95 (V after the last token is 0)
    #   t=2: delta = 1 + 0 - 0.5 = 0.5                  A2 = 0.5
    #   t=1: delta = 0 + 0.5 - 2 = -1.5                 A1 = -1.5 + 0.95 * 0.5 = -1.025
    #   t=0: delta = 0 + 2 - 1 = 1                      A0 = 1 + 0.95 * -1.025 = 0.02625
    # Row 1 has one response token: V = [3], r = [2] -> A = 2 - 3 = -1; its padding (9s, 5s) is ignored.
    values = torch.tensor([[1.0, 2.0, 0.5], [3.0, 9.0, 9.0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0], [2.0, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages, returns = compute_gae_advantages(values, rewards, mask, gamma=1.0, lam=0.95)
    # returns = raw advantages + values
    assert close(returns * mask, [[1.02625, 0.975, 1.0], [2.0, 0.0, 0.0]])
    # Whitened over the 4 response tokens [0.02625, -1.025, 0.5, -1]: mean -0.3746875,
    # unbiased var 0.57991705729 -> (A - mean) / sqrt(var)
    assert close(advantages, [[0.5264944, -0.8539632, 1.1486031], [-0.8211342, 0.0, 0.0]])


def test_gae_with_discount():
    # gamma = 0.5, lambda = 1, one row V = [1, 1], r = [0, 4]:
    #   t=1: delta = 4 + 0 - 1 = 3, A1 = 3;  t=0: delta = 0 + 0.5 * 1 - 1 = -0.5, A0 = -0.5 + 0.5 * 3 = 1
    _, returns = compute_gae_advantages(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 4.0]]),
                                        torch.ones(1, 2), gamma=0.5, lam=1.0)
    assert close(returns, [[2.0, 4.0]])


def test_per_token_reward():
    # Row 0: KL = logp - ref = [0.5, -1, 0]; -0.1 * KL = [-0.05, 0.1, 0]; score 2 added at the last token.
    # Row 1 (two tokens): KL = [-0.1, 0.2]; -0.1 * KL = [0.01, -0.02]; score -1 at token 1; token 2 masked.
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -0.3, -9.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-0.1, -0.5, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, non_score, kl = compute_per_token_rewards(torch.tensor([2.0, -1.0]), logprobs, ref_logprobs, mask, 0.1)
    assert close(kl, [[0.5, -1.0, 0.0], [-0.1, 0.2, 0.0]])
    assert close(non_score, [[-0.05, 0.1, 0.0], [0.01, -0.02, 0.0]])
    assert close(rewards, [[-0.05, 0.1, 2.0], [0.01, -1.02, 0.0]])


def test_clipped_policy_loss_values_and_gradient():
    # ratios r = [1.5, 0.5, 1.1] (old log-probs 0), advantages [1, 1, -2], clip range 0.2:
    #   token 1: max(-1.5, -1 * 1.2) = -1.2   (clipped: no gradient)
    #   token 2: max(-0.5, -1 * 0.8) = -0.5
    #   token 3: max(2.2, 2 * 1.1)   =  2.2
    # loss = (-1.2 - 0.5 + 2.2) / 3 = 1/6; clipfrac = 1/3; mean ratio = 3.1 / 3.
    # A fourth, masked token with a huge ratio must not count.
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1), 5.0]], requires_grad=True)
    old = torch.zeros(1, 4)
    advantages = torch.tensor([[1.0, 1.0, -2.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, stats = clipped_policy_loss(logprobs, old, advantages, mask, cliprange=0.2)
    assert close(loss, 1 / 6)
    assert close(stats["clipfrac"], 1 / 3)
    assert close(stats["ratio"], 3.1 / 3)
    # approx KL = 0.5 * mean(log r ^ 2), policy KL = mean(-log r)
    assert close(stats["approxkl"], 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3)
    assert close(stats["policykl"], -(math.log(1.5) + math.log(0.5) + math.log(1.1)) / 3)
    loss.backward()
    # d/dlogp of -A r is -A r: token 2 -> -0.5 / 3, token 3 -> 2.2 / 3; clipped and masked tokens -> 0
    assert close(logprobs.grad, [[0.0, -0.5 / 3, 2.2 / 3, 0.0]])


def test_clipped_value_loss():
    # V, V_old, R per token, clip range 0.2 (clipped V = clamp(V, V_old - 0.2, V_old + 0.2)):
    #   a: 1.5, 1.0, 2.0 -> clipped 1.2: max(0.25, 0.64) = 0.64 (clipped)
    #   b: 0.0, 0.1, 1.0 -> clipped 0.0: max(1, 1)       = 1
    #   c: 3.0, 1.0, 1.5 -> clipped 1.2: max(2.25, 0.09) = 2.25
    #   d: 1.0, 1.5, 0.0 -> clipped 1.3: max(1, 1.69)    = 1.69 (clipped)
    # loss = 0.5 * (0.64 + 1 + 2.25 + 1.69) / 4 = 0.6975; clipfrac 0.5; error = mean((V - R)^2) = 1.125
    values = torch.tensor([[1.5, 0.0, 3.0, 1.0, 50.0]])
    old = torch.tensor([[1.0, 0.1, 1.0, 1.5, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 1.5, 0.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    loss, stats = clipped_value_loss(values, old, returns, mask, cliprange_value=0.2)
    assert close(loss, 0.6975)
    assert close(stats["clipfrac"], 0.5)
    assert close(stats["error"], 1.125)


def test_adaptive_kl_controller():
    # kl_coef *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000.0)
    ctl.update(9.0, n_steps=16)  # error 0.5 -> clipped to 0.2: x (1 + 0.2 * 16 / 10000) = x 1.00032
    assert ctl.value == pytest.approx(0.200064, abs=1e-12)
    ctl.update(3.0, n_steps=16)  # error -0.5 -> -0.2: x 0.99968
    assert ctl.value == pytest.approx(0.200064 * 0.99968, abs=1e-12)
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000.0)
    ctl.update(6.6, n_steps=16)  # error 0.1 (inside the clip): x 1.00016
    assert ctl.value == pytest.approx(0.2 * 1.00016, abs=1e-12)
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 16)
    assert fixed.value == 0.3


def test_running_moments_and_score_normalization():
    running = RunningMoments()
    # Batch [1, 2, 3, 4]: mean 2.5, unbiased std sqrt(5/3) = 1.29099445 (the negligible prior is forgotten).
    batch = torch.tensor([1.0, 2.0, 3.0, 4.0])
    scores = normalize_scores(batch, batch, running, use_score_scaling=True, use_score_norm=True, score_clip=10.0)
    assert running.mean == pytest.approx(2.5)
    assert running.std == pytest.approx(1.2909944487, abs=1e-9)
    # (x - 2.5) / 1.29099445
    assert close(scores, [-1.1618949, -0.3872983, 0.3872983, 1.1618949])
    # Then [10, 10]: the six scores seen are [1, 2, 3, 4, 10, 10] with mean 5 and unbiased variance
    # (16 + 9 + 4 + 1 + 25 + 25) / 5 = 16, std 4 -> (10 - 5) / 4 = 1.25.
    batch = torch.tensor([10.0, 10.0])
    state = running.state_dict()
    assert close(normalize_scores(batch, batch, running, True, True, 10.0), [1.25, 1.25])
    assert running.mean == pytest.approx(5.0) and running.std == pytest.approx(4.0)
    assert running.count == pytest.approx(6.0)
    # Clipping at 1.0, and scaling without centering (10 / 4 = 2.5), from the same starting state.
    running.load_state_dict(state)
    assert close(normalize_scores(batch, batch, running, True, True, 1.0), [1.0, 1.0])
    running.load_state_dict(state)
    assert close(normalize_scores(batch, batch, running, True, False, None), [2.5, 2.5])
    # Statistics come from all processes' scores (second argument), normalization applies to this process's.
    # Here all processes scored [0, 4] (mean 2, unbiased std sqrt(8)) and this one scored 4.
    running = RunningMoments()
    local, everyone = torch.tensor([4.0]), torch.tensor([0.0, 4.0])
    assert close(normalize_scores(local, everyone, running, True, True, 10.0), [2.0 / math.sqrt(8.0)])
    assert running.mean == pytest.approx(2.0)


def test_running_moments_returns_batch_statistics():
    running = RunningMoments()
    mean, std = running.update(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5) and std == pytest.approx(math.sqrt(5 / 3))


def test_constant_with_warmup_lr():
    assert constant_with_warmup_lr(1e-5, 0, 10) == 0.0
    assert constant_with_warmup_lr(1e-5, 5, 10) == pytest.approx(5e-6)
    assert constant_with_warmup_lr(1e-5, 10, 10) == pytest.approx(1e-5)
    assert constant_with_warmup_lr(1e-5, 3, 0) == pytest.approx(1e-5)


def test_response_lengths_use_first_eos():
    eos = 2
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 2, 2, 2]])
    lengths, ended = response_lengths(responses, eos)
    assert lengths == [2, 4, 1] and ended == [True, False, True]


def test_padded_batch_layout():
    # Rows [prompt | response | pad]; response token j of row i sits at column len(prompt_i) + j.
    pad = 0
    batch = build_padded_batch([torch.tensor([11, 12, 13]), torch.tensor([21])],
                               [torch.tensor([14, 15]), torch.tensor([22, 23, 24])], pad)
    assert batch.input_ids.tolist() == [[11, 12, 13, 14, 15], [21, 22, 23, 24, pad]]
    assert batch.response_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch.response_ids[1].tolist() == [22, 23, 24] and batch.response_ids[0, :2].tolist() == [14, 15]
    assert (batch.response_positions - 1).tolist()[1] == [0, 1, 2]  # the states that predict them
    sub = batch.select(torch.tensor([1]))
    assert sub.input_ids.tolist() == [[21, 22, 23, 24]]  # all-padding columns trimmed


def test_postprocess_responses_cut_and_eos(smollm2_dir):
    from transformers import AutoTokenizer

    from rre.prompts import get_prompt_format

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    fmt = get_prompt_format("alpaca")
    texts = ["Paris is the capital.\n\n### Instruction:\nName another city.",  # cut at a role marker
             "An unfinished answer that ran out of",                            # length limit: no EOS
             "Done."]                                                            # generation emitted EOS
    responses = [torch.tensor(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    responses[2] = torch.cat([responses[2], torch.tensor([tok.eos_token_id])])
    ids, cleaned = postprocess_responses(responses, [False, False, True], tok, fmt.clean, fmt.stop_strings, 64)
    assert cleaned == ["Paris is the capital.", "An unfinished answer that ran out of", "Done."]
    assert ids[0].tolist() == tok("Paris is the capital.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids[1].tolist() == tok(texts[1], add_special_tokens=False)["input_ids"]
    assert ids[2][-1].item() == tok.eos_token_id and (ids[2] == tok.eos_token_id).sum() == 1
    # The cap holds with the EOS included; an empty response keeps one token (EOS) to carry the score.
    ids, _ = postprocess_responses([responses[0]], [True], tok, fmt.clean, fmt.stop_strings, 3)
    assert len(ids[0]) == 3 and ids[0][-1].item() == tok.eos_token_id
    ids, cleaned = postprocess_responses([torch.tensor(tok("\n\n### Response:", add_special_tokens=False)["input_ids"])],
                                         [False], tok, fmt.clean, fmt.stop_strings, 8)
    assert cleaned == [""] and ids[0].tolist() == [tok.eos_token_id]


def test_rollout_sampler_choice_is_validated():
    PPOConfig(rollout_sampler="generate").validate()
    with pytest.raises(ValueError, match="rollout_sampler must be one of loop, generate; got 'beam'"):
        PPOConfig(rollout_sampler="beam").validate()
