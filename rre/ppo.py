"""PPO for a LoRA policy with a value head, reproducing the paper's TRL 0.7.4 configuration.

Current TRL no longer ships the PPO trainer the paper used, so this module re-implements its semantics in
one readable file. One PPO step (`PPOTrainer.step`) is:

  1. rollout     sample a response for each prompt (top_k=0, top_p=1.0), batched with left padding, by
                 the project's decode path (`rre.decode`) or HF generate (--rollout_sampler);
                 with rollout post-processing, cut it at the prompt format's stop strings, re-tokenize and
                 end it with EOS when it finished (`postprocess_responses`)
  2. reward      the white-box proxy reward of the cleaned text, minus `reward_baseline`
  3. forward     one no-grad policy forward gives old log-probs AND values; one forward of the same model
                 with the adapter disabled gives the reference log-probs (no second copy in memory)
  4. advantages  running mean/std score normalization, clip to +/-score_clip (`normalize_scores`);
                 per-token reward -kl_coef*(logp - ref_logp) plus the score at the last response token
                 (`compute_per_token_rewards`); GAE (`compute_gae_advantages`); whitening (`whiten`)
  5. update      ppo_epochs passes over shuffled mini-batches; loss = clipped policy loss + vf_coef x
                 clipped value loss (`clipped_policy_loss`, `clipped_value_loss`), masked means over
                 response tokens; gradient accumulation; gradient clipping; a mini-batch whose mean ratio
                 exceeds `ratio_threshold` is skipped (zero loss) and counted
  6. KL control  `AdaptiveKLController.update` with the rollout KL

Layout: generation uses left-padded prompts; the scoring and training forwards use rows of
[prompt | response | right padding]. With padding only at the end, causal attention alone keeps every
real token from seeing padding, so those forwards need no attention mask (the fast causal kernel) and
positions are plain 0..n-1, the same positions generation used. Per-token tensors ([batch,
response_len]) hold response token j of each row at column j; masks come from lengths, never from token
ids (SmolLM2's EOS and pad are the same id).

Speed without changing the maths: the LM head and the value head run only on response positions; the
mini-batches of one gradient-accumulation group share a single forward/backward (each mini-batch's loss
is still its own masked mean, and the group's loss is their average, which is exactly what gradient
accumulation over them computes); rollouts sample through `rre.decode` (static cache, its own attention for one
query token, weights packed for oneDNN, LoRA folded into float32 weights, one uniform per token by inverse CDF where
torch.multinomial draws one per vocabulary entry).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rre.cutoff import CUT_SHARE_STAT, was_cut
from rre.decode import decode, lora_merged

ROLLOUT_SAMPLERS = ("loop", "generate")


@dataclass
class PPOConfig:
    """PPO flags. Names and defaults follow the paper's training command (TRL 0.7.4 PPOConfig)."""

    batch_size: int = field(default=16, metadata={"help": "prompts per PPO step (per process)"})
    mini_batch_size: int = field(default=2, metadata={"help": "samples per PPO mini-batch"})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "mini-batches per optimizer step"})
    ppo_epochs: int = field(default=4, metadata={"help": "optimization passes over each batch"})
    learning_rate: float = field(default=1e-5, metadata={"help": "Adam learning rate"})
    use_optimizer_setup: bool = field(
        default=False, metadata={"help": "constant learning rate with linear warmup (over PPO steps)"}
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "warmup length as a share of overall_steps"})
    init_kl_coef: float = field(default=0.2, metadata={"help": "initial KL penalty coefficient"})
    adap_kl_ctrl: bool = field(default=True, metadata={"help": "adaptive KL controller (else fixed)"})
    kl_target: float = field(default=6.0, metadata={"help": "KL target of the adaptive controller"})
    kl_horizon: float = field(default=10000.0, metadata={"help": "horizon of the adaptive controller"})
    gamma: float = field(default=1.0, metadata={"help": "GAE discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip range"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value prediction clip range"})
    vf_coef: float = field(default=1.0, metadata={"help": "value loss coefficient"})
    use_score_scaling: bool = field(default=True, metadata={"help": "divide scores by their running std"})
    use_score_norm: bool = field(default=True, metadata={"help": "also subtract the running mean"})
    score_clip: float | None = field(default=10.0, metadata={"help": "clip processed scores to +/- this"})
    reward_baseline: float = field(default=0.0, metadata={"help": "subtracted from each proxy reward"})
    ratio_threshold: float = field(
        default=10.0, metadata={"help": "skip (zero loss, counted) a mini-batch whose mean ratio exceeds this"}
    )
    max_grad_norm: float | None = field(
        default=1.0,
        metadata={"help": "gradient clipping norm (the paper's DeepSpeed launch clipped at 1.0); 0 disables"},
    )
    early_stopping: bool = field(default=False, metadata={"help": "stop PPO epochs when policy KL is too high"})
    target_kl: float = field(default=0.1, metadata={"help": "early stopping at 1.5 x target_kl"})
    output_max_length: int = field(default=512, metadata={"help": "maximum new tokens per response"})
    rollout_postprocessing: bool = field(
        default=True, metadata={"help": "the paper's flag. Under --response_postprocess clean: cut rollouts at the "
                                "first stop string, re-tokenize them and end them with EOS. Under paper, as the "
                                "paper's code: rollouts stay as generated either way, and false also turns the "
                                "reward's cut off (the paper passed this flag to its reward as do_strip)"}
    )
    value_head_dropout: float = field(default=0.1, metadata={"help": "dropout before the value head"})
    train_dropout: bool = field(
        default=False,
        metadata={"help": "run the training forwards with dropout (LoRA, value head) active. Off by default as in "
                  "TRL 0.7.4, whose training forwards ran in eval mode, so the paper's dropouts had no effect"},
    )
    generation_batch_size: int | None = field(default=None, metadata={"help": "rollout batch (default: batch_size)"})
    rollout_sampler: str = field(
        default="loop",
        metadata={"help": "loop: the project's decode path (rre/decode.py: static KV cache, grouped-matmul "
                  "attention, LoRA folded into float32 weights, inverse-CDF sampling) | generate: HF generate. The "
                  "same distribution, other random draws"},
    )
    forward_batch_size: int | None = field(
        default=None, metadata={"help": "no-grad scoring forward batch (default: mini_batch_size x grad accum)"}
    )
    train_forward_batch_size: int | None = field(
        default=None,
        metadata={"help": "samples per training forward/backward; a multiple of mini_batch_size dividing "
                  "mini_batch_size x gradient_accumulation_steps (default: all of them, one forward)"},
    )
    max_consecutive_skips: int = field(
        default=5, metadata={"help": "stop the run after this many steps in a row with a NaN/inf score or loss"}
    )

    @property
    def backward_batch_size(self) -> int:
        return self.mini_batch_size * self.gradient_accumulation_steps

    def validate(self) -> None:
        """Raise ValueError (one line) for inconsistent batch sizes."""
        if min(self.batch_size, self.mini_batch_size, self.gradient_accumulation_steps, self.ppo_epochs) < 1:
            raise ValueError("batch_size, mini_batch_size, gradient_accumulation_steps and ppo_epochs must be >= 1")
        if self.batch_size % self.backward_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size x "
                             f"gradient_accumulation_steps ({self.backward_batch_size})")
        chunk = self.train_forward_batch_size or self.backward_batch_size
        if chunk % self.mini_batch_size or self.backward_batch_size % chunk:
            raise ValueError(f"train_forward_batch_size ({chunk}) must be a multiple of mini_batch_size and "
                             f"divide mini_batch_size x gradient_accumulation_steps ({self.backward_batch_size})")
        if self.output_max_length < 1:
            raise ValueError("output_max_length must be >= 1")
        if self.rollout_sampler not in ROLLOUT_SAMPLERS:
            raise ValueError(f"rollout_sampler must be one of {', '.join(ROLLOUT_SAMPLERS)}; "
                             f"got {self.rollout_sampler!r}")


# =========================================================================================================
# PPO maths: pure functions on [batch, response_len] tensors; `mask` is 1.0 on response tokens.


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked entries, with Bessel's correction as TRL applies it."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalize to zero mean and unit variance over the masked entries (masked entries set to 0)."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) under softmax(logits), without materializing the full log-softmax."""
    return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def compute_per_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                              mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reward at every response token: -kl_coef x (logp - ref_logp); the score is added at the last one.

    Returns (rewards, non_score_rewards, kl), all [batch, response_len] and zero outside the mask.
    """
    kl = (logprobs - ref_logprobs) * mask
    non_score_rewards = -kl_coef * kl
    rewards = non_score_rewards.clone()
    last = mask.sum(1).long() - 1  # responses are left-aligned in the window, so the last token is len - 1
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards, non_score_rewards, kl


def compute_gae_advantages(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor,
                           gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over response tokens.

    delta_t = r_t + gamma V_{t+1} - V_t (V is 0 after the last token); A_t = delta_t + gamma lam A_{t+1}.
    Returns (whitened advantages, returns = raw advantages + values).
    """
    values, rewards = values * mask, rewards * mask
    length = values.shape[1]
    last_gae = torch.zeros_like(values[:, 0])
    advantages_reversed = []
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages_reversed.append(last_gae)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    returns = advantages + values
    return whiten(advantages, mask).detach(), returns.detach()


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip surrogate: masked mean of max(-A r, -A clip(r, 1-c, 1+c)), r = exp(logp - old_logp)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    losses = -advantages * ratio
    losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(losses, losses_clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((losses_clipped > losses).float(), mask),
            "approxkl": 0.5 * masked_mean(log_ratio ** 2, mask),
            "policykl": masked_mean(-log_ratio, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, cliprange_value: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 x masked mean of max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)."""
    values_clipped = torch.max(torch.min(values, old_values + cliprange_value), old_values - cliprange_value)
    losses = (values - returns) ** 2
    losses_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(losses, losses_clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((losses_clipped > losses).float(), mask),
                 "error": masked_mean((values - returns) ** 2, mask)}
    return loss, stats


class AdaptiveKLController:
    """Ziegler et al.'s controller: kl_coef *= 1 + clip(KL/target - 1, -0.2, 0.2) x n_steps / horizon."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = float(np.clip(current_kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:  # for accelerator.register_for_checkpointing
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    state_dict, load_state_dict = AdaptiveKLController.state_dict, AdaptiveKLController.load_state_dict


class RunningMoments:
    """Running mean/std of a stream of scores (Chan et al.'s parallel update), as TRL's score scaling uses.

    Starts at mean 0, var 1 with a negligible count, so the first batch sets the statistics.
    """

    def __init__(self) -> None:
        self.mean, self.var, self.std, self.count = 0.0, 1.0, 1.0, 1e-24

    def update(self, xs: torch.Tensor) -> tuple[float, float]:
        """Fold in a batch; returns the batch's mean and (unbiased) std."""
        xs = xs.double()
        n = xs.numel()
        batch_var, batch_mean = torch.var_mean(xs, unbiased=False)
        batch_mean, batch_var = batch_mean.item(), batch_var.item()
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.std = math.sqrt(self.var * total / (total - 1)) if total > 1 else 1.0
        self.count = total
        return batch_mean, math.sqrt(batch_var * n / (n - 1)) if n > 1 else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "std": self.std, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.std, self.count = state["mean"], state["var"], state["std"], state["count"]


def normalize_scores(scores: torch.Tensor, global_scores: torch.Tensor, running: RunningMoments,
                     use_score_scaling: bool, use_score_norm: bool, score_clip: float | None) -> torch.Tensor:
    """Score processing of the paper's run: update the running moments with this step's scores from all
    processes, then (scores - running mean) / (running std + eps), then clip to +/- score_clip."""
    scores = scores.float()
    if use_score_scaling:
        running.update(global_scores)
        factor = running.std + torch.finfo(torch.float32).eps
        scores = (scores - running.mean) / factor if use_score_norm else scores / factor
    if score_clip:
        scores = torch.clamp(scores, -score_clip, score_clip)
    return scores


def constant_with_warmup_lr(base_lr: float, step: int, warmup_steps: float) -> float:
    """`get_constant_schedule_with_warmup`, stepped once per PPO step as TRL 0.7.4 stepped it."""
    if step < warmup_steps:
        return base_lr * step / max(1.0, warmup_steps)
    return base_lr


# =========================================================================================================
# The policy with its value head.


class ValueHead(nn.Module):
    """Scalar value per position from the last hidden state (dropout active only in training mode)."""

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(self.dropout(hidden.to(self.summary.weight.dtype))).squeeze(-1)


class PolicyWithValueHead(nn.Module):
    """A LoRA causal LM (`PeftModel`) plus a value head; one forward gives logits and values.

    Only the response window goes through the LM head (it is a large share of a small model's compute) and
    it runs in float32: bf16 logits would blur the log-prob ratios PPO clips. The reference model is this
    same module under `with module.policy.disable_adapter():`.
    """

    def __init__(self, policy: nn.Module, value_head: ValueHead):
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    @property
    def causal_lm(self) -> nn.Module:
        return self.policy.get_base_model()  # the transformers model, its LoRA layers injected in place

    def _head_weight_fp32(self, head: nn.Module) -> torch.Tensor:
        """The LM head's weight in float32; a frozen bf16 weight is converted once, not at every forward."""
        weight = head.weight
        if weight.dtype == torch.float32 or weight.requires_grad:
            return weight.float()
        key = (weight.data_ptr(), weight._version, weight.device)
        if getattr(self, "_head_cache_key", None) != key:
            self._head_cache_key, self._head_cache = key, weight.detach().float()
        return self._head_cache

    def forward(self, input_ids: torch.Tensor, logit_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [b, n, vocab] and values [b, n] (float32) of the hidden states at `logit_positions` [b, n]
        (for a response, the position before each of its tokens). Rows must be right-padded."""
        lm = self.causal_lm
        # `base_model` of a transformers model is its decoder stack (LlamaModel, GPT2Model, ...).
        hidden = lm.base_model(input_ids=input_ids, use_cache=False).last_hidden_state
        window = hidden.gather(1, logit_positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        head = lm.get_output_embeddings()
        with torch.autocast(device_type=window.device.type, enabled=False):
            bias = getattr(head, "bias", None)
            logits = F.linear(window.float(), self._head_weight_fp32(head), None if bias is None else bias.float())
            values = self.value_head(window.float()).float()
        return logits, values


# =========================================================================================================
# Rollouts: generation, post-processing, the padded layout.


def left_pad(sequences: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, width - len(s):] = s
        mask[i, width - len(s):] = 1
    return ids, mask


def response_lengths(responses: torch.Tensor, eos_id: int) -> tuple[list[int], list[bool]]:
    """Length of each generated response up to and including its first EOS, and whether it had one."""
    is_eos = responses == eos_id
    ended = is_eos.any(1)
    first = torch.where(ended, is_eos.float().argmax(1), torch.full_like(ended, responses.shape[1], dtype=torch.long))
    lengths = torch.where(ended, first + 1, first)
    return lengths.tolist(), ended.tolist()


def postprocess_responses(responses: list[torch.Tensor], ended: list[bool], tokenizer, clean: Callable[[str], str],
                          stop_strings: Sequence[str], max_length: int) -> tuple[list[torch.Tensor], list[str]]:
    """The paper's rollout post-processing: decode, cut at the first stop string (role marker or
    separator, the reward's own clean-up rule), re-tokenize, and append EOS when the response is complete
    (it emitted EOS or was cut at a stop string; a response cut by the length limit gets no EOS). Every
    response keeps at least one token, so its last token can carry the score."""
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    out_ids, out_texts = [], []
    for text, done in zip(texts, ended):
        cleaned = clean(text)
        was_cut = any(stop in text.strip() for stop in stop_strings)
        add_eos = done or was_cut
        ids = tokenizer(cleaned, add_special_tokens=False)["input_ids"][: max_length - int(add_eos)]
        if add_eos or not ids:
            ids = ids + [tokenizer.eos_token_id]
        out_ids.append(torch.tensor(ids, dtype=torch.long))
        out_texts.append(cleaned)
    return out_ids, out_texts


@dataclass
class PaddedBatch:
    """Rows of [prompt | response | padding] with their prompt and response lengths."""

    input_ids: torch.Tensor
    prompt_lengths: torch.Tensor
    response_lengths: torch.Tensor

    @property
    def response_positions(self) -> torch.Tensor:
        """[b, max response length]: column of response token j in each row (clamped inside the row)."""
        width = int(self.response_lengths.max())
        positions = self.prompt_lengths.unsqueeze(1) + torch.arange(width).unsqueeze(0)
        return positions.clamp(max=self.input_ids.shape[1] - 1)

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids.gather(1, self.response_positions)

    @property
    def response_mask(self) -> torch.Tensor:
        width = int(self.response_lengths.max())
        return (torch.arange(width).unsqueeze(0) < self.response_lengths.unsqueeze(1)).float()

    def select(self, idx: torch.Tensor) -> "PaddedBatch":
        """Rows `idx`, with the columns that are padding in all of them dropped."""
        prompt_lengths, lengths = self.prompt_lengths[idx], self.response_lengths[idx]
        return PaddedBatch(self.input_ids[idx, : int((prompt_lengths + lengths).max())], prompt_lengths, lengths)


def build_padded_batch(prompts: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], pad_id: int) -> PaddedBatch:
    rows = [torch.cat([p, r]) for p, r in zip(prompts, responses)]
    input_ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = row
    return PaddedBatch(input_ids, torch.tensor([len(p) for p in prompts]), torch.tensor([len(r) for r in responses]))


# =========================================================================================================
# The trainer.


def trainable_named_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def train_chunk_size(config: PPOConfig, accumulation_steps: int) -> int:
    """Samples per training forward/backward: all mini-batches of one optimizer step, or
    --train_forward_batch_size when smaller. ValueError (one line) when the sizes do not fit together."""
    group = config.mini_batch_size * accumulation_steps
    if accumulation_steps < 1 or config.batch_size % group:
        raise ValueError(f"batch_size ({config.batch_size}) must be a multiple of mini_batch_size x accumulation "
                         f"({config.mini_batch_size} x {accumulation_steps})")
    chunk = min(config.train_forward_batch_size or group, group)
    if group % chunk:
        raise ValueError(f"train_forward_batch_size ({chunk}) must divide mini_batch_size x accumulation ({group})")
    return chunk


def optimizer_steps_per_ppo_step(config: PPOConfig, accumulation_steps: int) -> int:
    return config.ppo_epochs * config.batch_size // (config.mini_batch_size * accumulation_steps)


@dataclass
class Rollout:
    """One PPO batch after generation, reward and the no-grad forwards (tensors on CPU, float32)."""

    batch: PaddedBatch
    texts: list[str]
    raw_scores: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor


class PPOTrainer:
    """Runs PPO steps for an `accelerate`-prepared `PolicyWithValueHead` and optimizer.

    `reward_fn(examples, texts) -> list[float]` scores cleaned responses with the examples' raw fields.
    Every process runs the same number of forward/backward passes and optimizer steps, so DeepSpeed and
    DDP stay in lockstep; statistics are averaged over processes.
    """

    def __init__(self, config: PPOConfig, accelerator, model, optimizer, tokenizer, prompt_format,
                 reward_fn: Callable[[Sequence, list[str]], list[float]], warmup_steps: float = 0.0,
                 accumulation_steps: int | None = None, response_postprocess: str = "paper"):
        config.validate()
        # `paper`: the rollouts the policy generated are the ones it is trained on, as in the paper's run (its
        # clean-up raised inside a blanket except and returned them unchanged); `clean`: cut and ended with EOS.
        self.cut_rollouts = config.rollout_postprocessing and response_postprocess == "clean"
        self.rollout_cut: list[bool] = []  # of the last generate(): stopped at the token cap (rre.cutoff)
        self.config, self.accelerator, self.model, self.optimizer = config, accelerator, model, optimizer
        # Mini-batches per optimizer step: --gradient_accumulation_steps unless the launch decided otherwise
        # (see run_ppo.optimizer_accumulation: the paper's launch made it 1).
        self.accumulation_steps = accumulation_steps or config.gradient_accumulation_steps
        self.train_chunk = train_chunk_size(config, self.accumulation_steps)
        accelerator.gradient_accumulation_steps = self.optimizer_group_size // self.train_chunk
        self.tokenizer, self.prompt_format, self.reward_fn = tokenizer, prompt_format, reward_fn
        self.warmup_steps = warmup_steps
        self.kl_ctl = (AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon)
                       if config.adap_kl_ctrl else FixedKLController(config.init_kl_coef))
        self.running = RunningMoments()
        self.current_step = 0
        self.optimizer_steps_last = 0  # optimizer steps taken by the last PPO step
        self.consecutive_skips = 0
        self.skipped_steps = 0
        self.skipped_minibatches = 0
        from accelerate.utils import DistributedType
        from transformers import GenerationConfig

        self.is_deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        self.generation_config = GenerationConfig(
            # Pure sampling from the policy: each knob set explicitly, so a model's own generation_config
            # (a default temperature or repetition penalty) cannot change the rollout distribution.
            do_sample=True, top_k=0, top_p=1.0, temperature=1.0, repetition_penalty=1.0,
            max_new_tokens=config.output_max_length, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, use_cache=True)

    @property
    def optimizer_group_size(self) -> int:
        """Samples per optimizer step."""
        return self.config.mini_batch_size * self.accumulation_steps

    @property
    def optimizer_steps_per_ppo_step(self) -> int:
        return optimizer_steps_per_ppo_step(self.config, self.accumulation_steps)

    @property
    def unwrapped(self) -> PolicyWithValueHead:
        return self.accelerator.unwrap_model(self.model)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def _sync_time(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    # --- rollout ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompts: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[str]]:
        """Sample responses (batched, left padding, KV cache) and post-process them; `rollout_cut` says which
        stopped at the token cap."""
        self.model.eval()
        policy, lm = self.unwrapped.policy, self.unwrapped.causal_lm
        pad_id = self.tokenizer.pad_token_id
        size = self.config.generation_batch_size or self.config.batch_size
        responses, ended, n_tokens = [], [], []
        for start in range(0, len(prompts), size):
            ids, mask = left_pad(prompts[start:start + size], pad_id)
            ids, mask = ids.to(self.device), mask.to(self.device)
            with self.accelerator.autocast():
                if self.config.rollout_sampler == "loop":
                    with lora_merged(policy):
                        generated = decode(lm, ids, mask, self.config.output_max_length,
                                           self.tokenizer.eos_token_id, pad_id)
                else:
                    out = policy.generate(input_ids=ids, attention_mask=mask, generation_config=self.generation_config)
                    generated = out[:, ids.shape[1]:]
            generated = generated.cpu()
            lengths, done = response_lengths(generated, self.tokenizer.eos_token_id)
            responses += [generated[i, :max(n, 1)] for i, n in enumerate(lengths)]
            ended += done
            n_tokens += lengths
        # Which rollouts stopped at the token cap (rre.cutoff): a stop string ends one only where rollouts are cut
        # at stop strings.
        stops = self.prompt_format.stop_strings if self.cut_rollouts else ()
        raw = self.tokenizer.batch_decode(responses, skip_special_tokens=True) if stops else [""] * len(responses)
        self.rollout_cut = [was_cut(n, done, self.config.output_max_length, text.strip(), stops)
                            for n, done, text in zip(n_tokens, ended, raw)]
        if self.cut_rollouts:
            return postprocess_responses(responses, ended, self.tokenizer, self.prompt_format.clean,
                                         self.prompt_format.stop_strings, self.config.output_max_length)
        return responses, self.tokenizer.batch_decode(responses, skip_special_tokens=True)

    def _forward(self, batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and values of the states that predict each response token (the one before it)."""
        return self.model(batch.input_ids.to(self.device), (batch.response_positions - 1).to(self.device))

    @torch.no_grad()
    def score_forward(self, batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Old log-probs, values and entropies (one policy forward) and reference log-probs (the same
        model with its adapter disabled), all [batch, response_len] float32 on CPU."""
        self.model.eval()
        size = self.config.forward_batch_size or self.config.backward_batch_size
        n_rows, width = len(batch.input_ids), int(batch.response_lengths.max())
        logprobs, values, ref_logprobs, entropy = (torch.zeros(n_rows, width) for _ in range(4))
        for start in range(0, n_rows, size):
            idx = torch.arange(start, min(start + size, n_rows))
            sub = batch.select(idx)
            n = int(sub.response_lengths.max())
            labels = sub.response_ids.to(self.device)
            with self.accelerator.autocast():
                logits, v = self._forward(sub)
                logprobs[idx, :n] = logprobs_from_logits(logits, labels).cpu()
                entropy[idx, :n] = entropy_from_logits(logits).cpu()
                values[idx, :n] = v.cpu()
                del logits
                with self.unwrapped.policy.disable_adapter():
                    ref_logits, _ = self._forward(sub)
                ref_logprobs[idx, :n] = logprobs_from_logits(ref_logits, labels).cpu()
        return logprobs, values, ref_logprobs, entropy

    # --- helpers for multi-process consistency --------------------------------------------------------

    def _all_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar statistics over processes (one all-reduce)."""
        if self.accelerator.num_processes == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        t = self.accelerator.reduce(t, reduction="mean")
        return dict(zip(keys, t.tolist()))

    def _any(self, flag: bool) -> bool:
        """True when `flag` is true on any process."""
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def _zero_loss(self) -> torch.Tensor:
        """A loss with exactly zero gradient for every trainable parameter: used in place of a non-finite
        loss so every process still runs the same backward passes."""
        return sum(p.sum() for _, p in trainable_named_parameters(self.model)) * 0.0

    def _set_training_mode(self, dropout: bool) -> None:
        """Train mode with dropout, else eval mode (TRL 0.7.4). Gradient checkpointing only acts in train mode,
        so with it the model stays in train mode and only its dropout modules are switched off."""
        if dropout:
            self.model.train()
            return
        lm = self.unwrapped.causal_lm
        checkpointing = (lm.is_activation_checkpointing if hasattr(type(lm), "is_activation_checkpointing")
                         else getattr(lm, "is_gradient_checkpointing", False))
        if not checkpointing:
            self.model.eval()
            return
        self.model.train()
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                module.eval()

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # --- the PPO step ---------------------------------------------------------------------------------

    def step(self, examples: Sequence, prompts: Sequence[torch.Tensor]) -> dict[str, float]:
        """One PPO step on this process's batch. Returns statistics averaged over processes."""
        cfg = self.config
        if len(prompts) != cfg.batch_size:
            raise ValueError(f"expected {cfg.batch_size} prompts, got {len(prompts)}")
        lr = (constant_with_warmup_lr(cfg.learning_rate, self.current_step, self.warmup_steps)
              if cfg.use_optimizer_setup else cfg.learning_rate)
        self._set_lr(lr)
        timing = {}
        t0 = self._sync_time()
        responses, texts = self.generate(prompts)
        t1 = self._sync_time()
        timing["time/generation"] = t1 - t0

        raw = torch.tensor(self.reward_fn(examples, texts), dtype=torch.float32) - cfg.reward_baseline
        t2 = self._sync_time()
        timing["time/reward"] = t2 - t1

        batch = build_padded_batch(prompts, responses, self.tokenizer.pad_token_id)
        logprobs, values, ref_logprobs, entropy = self.score_forward(batch)
        mask = batch.response_mask
        t3 = self._sync_time()
        timing["time/forward"] = t3 - t2

        stats: dict[str, float] = {}
        skipped = self._any(not bool(torch.isfinite(raw).all()))
        if not skipped:
            global_scores = self.accelerator.gather(raw.to(self.device)).cpu()
            scores = normalize_scores(raw, global_scores, self.running, cfg.use_score_scaling,
                                      cfg.use_score_norm, cfg.score_clip)
            rewards, non_score, kl = compute_per_token_rewards(scores, logprobs, ref_logprobs, mask, self.kl_ctl.value)
            advantages, returns = compute_gae_advantages(values, rewards, mask, cfg.gamma, cfg.lam)
            rollout = Rollout(batch, texts, raw, logprobs, ref_logprobs, values, mask)
            train_stats, skipped = self._train(rollout, advantages, returns)
            stats.update(train_stats)
            stats.update({
                "objective/kl": kl.sum(1).mean().item(),
                "objective/kl_dist_std": kl.sum(1).std().item() if len(kl) > 1 else 0.0,
                "objective/logprobs": masked_mean(logprobs, mask).item(),
                "objective/ref_logprobs": masked_mean(ref_logprobs, mask).item(),
                "objective/entropy": (-logprobs * mask).sum(1).mean().item(),
                "ppo/policy/entropy": masked_mean(entropy, mask).item(),
                "ppo/scores_mean": scores.mean().item(),
                "ppo/returns/mean": masked_mean(returns, mask).item(),
                "ppo/val/mean": masked_mean(values, mask).item(),
                "ppo/mean_non_score_reward": non_score.sum(1).mean().item(),
            })
        t4 = self._sync_time()
        timing["time/update"] = t4 - t3
        timing["time/step"] = t4 - t0

        stats.update({
            "env/reward_mean": raw.mean().item() if torch.isfinite(raw).all() else float("nan"),
            "env/reward_std": raw.std().item() if len(raw) > 1 and torch.isfinite(raw).all() else 0.0,
            "tokens/responses_len_mean": batch.response_lengths.float().mean().item(),
            CUT_SHARE_STAT: sum(self.rollout_cut) / len(self.rollout_cut),
            "tokens/queries_len_mean": batch.prompt_lengths.float().mean().item(),
        })
        stats.update(timing)
        stats = self._all_mean(stats)
        if not skipped:
            # The controller sees the KL of the whole (all-process) batch, as TRL's gathered statistics.
            self.kl_ctl.update(stats["objective/kl"], cfg.batch_size * self.accelerator.num_processes)
            self.consecutive_skips = 0
        else:
            self.skipped_steps += 1
            self.consecutive_skips += 1
        stats.update({"objective/kl_coef": self.kl_ctl.value, "ppo/learning_rate": lr,
                      "ppo/skipped_steps": self.skipped_steps, "ppo/skipped_minibatches": self.skipped_minibatches,
                      "ppo/step_skipped": float(skipped), "ppo/running_score_mean": self.running.mean,
                      "ppo/running_score_std": self.running.std})
        self.current_step += 1
        if self.consecutive_skips >= cfg.max_consecutive_skips:
            raise FloatingPointError(f"{self.consecutive_skips} PPO steps in a row had a NaN/inf score or loss "
                                     f"(last at step {self.current_step}); stopping")
        return stats

    def _train(self, rollout: Rollout, advantages: torch.Tensor,
               returns: torch.Tensor) -> tuple[dict[str, float], bool]:
        """ppo_epochs passes over shuffled mini-batches, an optimizer step every `accumulation_steps` of them.
        Returns (mean statistics, step skipped).

        The forwards run in eval mode unless --train_dropout: TRL 0.7.4's `batched_forward_pass` called
        `model.eval()` before each training forward (its `model.train()` came only after, in
        `train_minibatch`), so the paper's LoRA and value-head dropout never acted on its updates.
        A NaN/inf loss (on any process) or gradient norm drops that optimizer step (no update) and ends
        the step's remaining epochs; the step then counts as skipped.
        """
        cfg = self.config
        self._set_training_mode(cfg.train_dropout)
        chunk, group = self.train_chunk, self.optimizer_group_size
        history: dict[str, list[float]] = {}
        nonfinite = False
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer_steps_last = 0
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(cfg.batch_size)
            stop = False
            for g_start in range(0, cfg.batch_size, group):
                group_idx = order[g_start:g_start + group]
                group_stats: list[dict[str, torch.Tensor]] = []
                group_nonfinite = False
                for c_start in range(0, len(group_idx), chunk):
                    with self.accelerator.accumulate(self.model):
                        idx = group_idx[c_start:c_start + chunk]
                        loss, mb_stats = self._chunk_loss(rollout, advantages, returns, idx)
                        if self._any(not bool(torch.isfinite(loss))):
                            loss = self._zero_loss()  # every process still runs the same backward passes
                            group_nonfinite = True
                        sync = self.accelerator.sync_gradients
                        if sync and group_nonfinite and self.is_deepspeed:
                            self._set_lr(0.0)  # DeepSpeed steps inside backward: make that step a no-op
                        self.accelerator.backward(loss)
                        if sync and self.is_deepspeed and not group_nonfinite:
                            self.optimizer_steps_last += 1  # the engine stepped inside backward
                        if sync and not self.is_deepspeed:
                            # (DeepSpeed clips inside its step, at the max_grad_norm put in its config.)
                            norm = self.accelerator.clip_grad_norm_(
                                [p for _, p in trainable_named_parameters(self.model)], cfg.max_grad_norm or math.inf)
                            # Gradients are already reduced over processes, so all agree on this.
                            group_nonfinite |= not bool(torch.isfinite(norm))
                            if not group_nonfinite:
                                self.optimizer.step()
                                self.optimizer_steps_last += 1
                        self.optimizer.zero_grad()
                        group_stats += mb_stats
                if group_nonfinite:
                    self._set_lr(lr)
                    nonfinite = True
                    break
                for s in group_stats:
                    for k, v in s.items():
                        history.setdefault(k, []).append(float(v))
                if cfg.early_stopping:
                    policykl = float(np.mean([float(s["ppo/policy/policykl"]) for s in group_stats]))
                    if self._all_mean({"kl": policykl})["kl"] > 1.5 * cfg.target_kl:
                        stop = True
                        break
            if nonfinite or stop:
                break
        self.model.eval()
        out = {k: float(np.mean(v)) for k, v in history.items()}
        out["ppo/early_stopped"] = float(not nonfinite and stop)
        out["ppo/optimizer_steps"] = float(self.optimizer_steps_last)
        return out, nonfinite

    def _chunk_loss(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor,
                    idx: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """One forward over `idx` (whole mini-batches); the loss is the mean of each mini-batch's own
        masked-mean loss, so it equals accumulating the mini-batches' gradients one by one."""
        cfg = self.config
        sub = rollout.batch.select(idx)
        n = int(sub.response_lengths.max())
        labels = sub.response_ids.to(self.device)
        with self.accelerator.autocast():
            logits, vpreds = self._forward(sub)
        logprobs = logprobs_from_logits(logits, labels)
        dev = self.device
        mask, old_logprobs = rollout.mask[idx, :n].to(dev), rollout.logprobs[idx, :n].to(dev)
        old_values = rollout.values[idx, :n].to(dev)
        adv, ret = advantages[idx, :n].to(dev), returns[idx, :n].to(dev)
        losses, stats = [], []
        for m in range(0, len(idx), cfg.mini_batch_size):
            s = slice(m, m + cfg.mini_batch_size)
            pg_loss, pg = clipped_policy_loss(logprobs[s], old_logprobs[s], adv[s], mask[s], cfg.cliprange)
            vf_loss, vf = clipped_value_loss(vpreds[s], old_values[s], ret[s], mask[s], cfg.cliprange_value)
            loss = pg_loss + cfg.vf_coef * vf_loss
            if pg["ratio"] > cfg.ratio_threshold:
                # TRL's guard against a diverged mini-batch: keep the backward pass, drop its gradient.
                loss = loss * 0.0
                self.skipped_minibatches += 1
            losses.append(loss)
            stats.append({"ppo/loss/policy": pg_loss.detach(), "ppo/loss/value": vf_loss.detach(),
                          "ppo/loss/total": (pg_loss + cfg.vf_coef * vf_loss).detach(),
                          "ppo/policy/clipfrac": pg["clipfrac"], "ppo/policy/approxkl": pg["approxkl"],
                          "ppo/policy/policykl": pg["policykl"], "ppo/policy/ratio": pg["ratio"],
                          "ppo/val/clipfrac": vf["clipfrac"],
                          "ppo/val/error": vf["error"], "ppo/val/vpred": masked_mean(vpreds[s].detach(), mask[s])})
        return torch.stack(losses).mean(), stats

    # --- state for checkpoints (the optimizer, RNG and weights are accelerate's: run_ppo.save_checkpoint) ----

    COUNTERS = ("current_step", "skipped_steps", "skipped_minibatches", "consecutive_skips")

    def state_dict(self) -> dict[str, int]:  # for accelerator.register_for_checkpointing
        return {name: getattr(self, name) for name in self.COUNTERS}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for name in self.COUNTERS:
            setattr(self, name, int(state[name]))
