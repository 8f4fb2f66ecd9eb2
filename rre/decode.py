"""The one decode path: PPO rollouts (`ppo.py`) and `evaluation.py`'s answers both sample through `decode`.

A decode step of a small model on a CPU is a few GFLOP, tens of milliseconds; HF `generate` spends as much
again on work per token that is not arithmetic. What this path does instead, each part once:

- a preallocated KV cache (transformers' `StaticCache`), so no step copies the cache to grow it;
- one boolean mask over the whole window, built before the first step; a step switches one column on;
- positions kept in one tensor, advanced in place;
- for one query token, attention as two grouped matmuls (`_decode_attention`): the sdpa CPU kernel spends
  about 1 ms per layer on a 16-row, single-token query, over a hundred times its arithmetic;
- rows that have ended leave the batch once a quarter of it has ended (the cache is compacted), so a long
  answer does not make the short ones pay for its length;
- stop strings checked every `STOP_CHECK_EVERY` tokens, not at every one (the text after a stop string is
  cut by the prompt format's clean-up in any case);
- LoRA folded into the weights for the duration (`lora_merged`), where the weights are float32;
- the linears' weights laid out once for oneDNN's kernel (`packed_linears`);
- after the prompt, a Llama-family model's steps written out (`rre.decode_step`): the same operations and
  bits as transformers' forward, without its per-call bookkeeping.

The sampled distribution is the one `generate` samples: temperature, then top-k, then top-p, then a
softmax in float32, one draw per row (by inverse CDF, `sample_categorical`); with `do_sample=False`, argmax.
`tests/test_decode.py` checks the per-token log-probabilities against a plain full forward.
"""

from __future__ import annotations

import hashlib
import inspect
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from rre.attention import cache_argument
from rre.decode_step import DecodeStep, unsupported

DECODE_ATTENTION = "rre_decode"
STOP_CHECK_EVERY = 8  # tokens between stop-string checks
COMPACT_WHEN_ENDED = 0.25  # share of the batch's rows that must have ended before the batch drops them


# =========================================================================================================
# Sampling: what one step draws from the last position's logits.


def sample_categorical(probs: torch.Tensor, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of `probs` [b, vocab] (rows need not sum to 1), by inverse-CDF sampling; `uniforms`
    ([b] or [b, 1], float64 in [0, 1)), when given, are the rows' draws (each row's own generator: evaluation.py's
    per-prompt seeding, best_of_n.py), else the global RNG's.

    The distribution of `torch.multinomial(probs, 1)` (another random stream, the same global torch RNG, so
    seeding and checkpointed RNG state cover it) at a fraction of its CPU cost: multinomial's kernel draws an
    exponential per vocabulary entry, this draws one uniform per row. The cumulative sum runs in float64 so
    a 49k-token vocabulary's tail keeps its probabilities; token i is drawn when cdf[i-1] <= u < cdf[i], an
    empty interval for a zero-probability token, so one is never drawn.
    """
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1:]
    if not bool(((total > 0) & torch.isfinite(total)).all()):
        raise RuntimeError("probability rows must have a finite, positive sum")  # as multinomial refuses them
    if uniforms is None:
        uniforms = torch.rand_like(total)
    u = uniforms.to(total).reshape(total.shape) * total  # [0, total): float64 uniforms below 1 keep u below total
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)  # clamp: defensive


@dataclass(frozen=True)
class Sampling:
    """`generate`'s sampling settings. The defaults are TRL 0.7.4's rollouts: plain softmax sampling."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The distribution one row draws from, [b, vocab] float32, warped in generate's order."""
        logits = logits.float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.top_k > 0:  # keep the k largest (ties at the k-th value stay, as generate keeps them)
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:  # drop the low tail whose mass is at most 1 - top_p; the top token always stays
            sorted_logits, order = torch.sort(logits, dim=-1)
            tail = sorted_logits.softmax(-1).cumsum(-1) <= 1 - self.top_p
            tail[:, -1] = False
            logits = logits.masked_fill(tail.scatter(1, order, tail), float("-inf"))
        return torch.softmax(logits, dim=-1)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.do_sample:
            return logits.argmax(-1)
        return sample_categorical(self.probabilities(logits))


class PromptSeededSampling:
    """`Sampling` with one random stream per prompt: row i of the batch draws its t-th token from a generator
    seeded with `seeds[i]`, so a prompt's draws do not depend on which other prompts share its batch, on their
    order or on the model answering (common random numbers across checkpoints). `decode` calls `observe` with
    the original rows still in the batch before every `__call__` (pass `observe=sampler.observe`)."""

    def __init__(self, sampling: Sampling, seeds: Sequence[int]):
        self.sampling = sampling
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.rows = list(range(len(seeds)))

    def observe(self, running: torch.Tensor, t: int, logits: torch.Tensor) -> None:
        self.rows = running.tolist()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.sampling.do_sample:
            return logits.argmax(-1)
        uniforms = torch.stack([torch.rand(1, generator=self.generators[r], dtype=torch.float64) for r in self.rows])
        return sample_categorical(self.sampling.probabilities(logits), uniforms.to(logits.device))


def prompt_seed(seed: int, prompt: str) -> int:
    """A prompt's own sampling seed: a hash of the run's seed and the prompt text (63 bits)."""
    digest = hashlib.sha256(f"{seed}\n{prompt}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)


# Generation-config fields that make `generate` add a logits processor `Sampling` does not apply, with their
# inactive values. A model whose config sets one is answered by `generate` instead (evaluation.py says so).
_PROCESSORS = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
               "min_length": 0, "min_new_tokens": 0, "bad_words_ids": None, "typical_p": 1.0, "min_p": None,
               "top_h": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "suppress_tokens": None,
               "begin_suppress_tokens": None, "sequence_bias": None, "forced_bos_token_id": None,
               "forced_eos_token_id": None, "exponential_decay_length_penalty": None, "renormalize_logits": False,
               "guidance_scale": None, "watermarking_config": None, "num_beams": 1}


def extra_processors(generation_config) -> list[str]:
    """The settings of a model's generation config that `decode` would not reproduce ("name=value")."""
    found = []
    for name, inactive in _PROCESSORS.items():
        value = getattr(generation_config, name, None)
        if value is not None and value != inactive and value != []:
            found.append(f"{name}={value!r}")
    return found


# =========================================================================================================
# LoRA folded into the weights.


def _lora_layers(model: nn.Module) -> Iterator[nn.Module]:
    for module in model.modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            yield module


def foldable(model: nn.Module) -> bool:
    """Whether `lora_merged` folds this model's adapters: only into float32 weights. A bf16 weight's spacing
    (2^-8 of its size) is coarser than a LoRA update for the first hundreds of steps: W + delta rounds back
    to W, and the rollouts would come from the base policy (tests/test_decode.py shows it)."""
    return _all_float32(list(_lora_layers(model)))


def _all_float32(layers: list[nn.Module]) -> bool:
    return all(m.base_layer.weight.dtype == torch.float32 for m in layers)


@contextmanager
def lora_merged(peft_model: nn.Module) -> Iterator[bool]:
    """Inside the block, every LoRA layer's base weight holds W + delta and the adapters are off, so a
    projection is one matmul; after it, the base layers hold their original tensors again (the same tensor
    objects, so the weights are equal bit for bit). Yields whether it folded: a model whose weights are not
    float32 (`foldable`) or that has no adapters is left as it is.

    The merged weights are new tensors; nothing is written into a parameter in place, which keeps a
    DeepSpeed ZeRO-2 engine's flat buffers (they hold only the trainable LoRA weights) untouched.
    """
    layers = list(_lora_layers(peft_model))
    if not layers or not _all_float32(layers) or not hasattr(peft_model, "disable_adapter"):
        yield False
        return
    originals = []
    with torch.no_grad():
        for layer in layers:
            weight = layer.base_layer.weight
            merged = weight.detach().clone()
            for name in layer.active_adapters:
                if name in layer.lora_A:
                    merged += layer.get_delta_weight(name).to(merged.dtype)
            originals.append((weight, weight.data))
            weight.data = merged
    try:
        with peft_model.disable_adapter():
            yield True
    finally:
        for weight, data in originals:
            weight.data = data


# =========================================================================================================
# bf16 and float32 weights packed once for the CPU kernel.


def _can_pack() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _packed_dtypes() -> tuple[torch.dtype, ...]:
    """bf16 always; float32 too, except under CPU autocast, where a float32 linear (the LoRA adapters beside
    bf16 base weights) computes in bf16 and the packed kernel would compute it in float32 instead."""
    return (torch.bfloat16,) if torch.is_autocast_enabled("cpu") else (torch.bfloat16, torch.float32)


def _packable(weight: torch.Tensor) -> bool:
    """Whether `packed_linears` (and `DecodeStep`) lay this linear weight out for oneDNN."""
    return _can_pack() and weight.device.type == "cpu" and weight.dtype in _packed_dtypes()


def packed_linear(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """`x @ weight.T + bias` through oneDNN's kernel, the weight laid out for `rows` rows at the first call (so
    a linear that is never called costs nothing). `packed_linears` and `DecodeStep` both multiply through it."""
    packed: list[torch.Tensor] = []
    bias = None if bias is None else bias.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not packed:
            packed.append(torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows))
        return torch.ops.mkldnn._linear_pointwise(x, packed[0], bias, "none", [], "")

    return forward


@contextmanager
def packed_linears(model: nn.Module, rows: int) -> Iterator[int]:
    """Inside the block, every bf16 or float32 `nn.Linear` on the CPU multiplies by a copy of its weight laid
    out once for oneDNN's kernel (`mkldnn._reorder_linear_weight`, what inductor's freezing does); a plain
    linear lays a bf16 weight out again at every call, and a float32 one goes to a GEMM that reads a decode
    step's few-row matmuls' weights at a third of this CPU's memory bandwidth.
    - bf16: the same arithmetic and the same bits out (tests/test_decode.py); 16 x 64 decode steps of
      SmolLM2-135M spent about 40% less time in matmuls.
    - float32: another kernel sums in another order, so results differ in the last bits (SmolLM2's logits by
      3e-5 of their largest, tested); 16 x 64 float32 decode steps of SmolLM2-135M took 6.0 s instead of 8.8 s.
    Each weight is laid out at its linear's first call, so a linear that is not called (an adapter switched off
    while its update is folded) costs nothing: 0.8 ms per float32 weight of SmolLM2.
    Yields how many it covers (none on a GPU or where torch lacks the op). The forwards are restored after."""
    linears = [m for m in model.modules() if type(m) is nn.Linear and _packable(m.weight)]
    for m in linears:
        m.forward = packed_linear(m.weight, m.bias, rows)
    try:
        yield len(linears)
    finally:
        for m in linears:
            del m.forward


# =========================================================================================================
# Attention for decoding.


def _decode_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """A transformers attention function (registered as `rre_decode`) for `decode`'s boolean mask [b, 1, q, L]:
    the keys are the cache's first L positions. One query token: grouped matmuls, the softmax in float32 (as
    eager attention). The prompt: sdpa on the same window."""
    width = attention_mask.shape[-1]
    key, value = key[:, :, :width], value[:, :, :width]
    if query.shape[2] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    b, heads, _, dim = query.shape
    groups = heads // key.shape[1]  # query head h reads key head h // groups, as repeat_kv lays them out
    q = query.reshape(b, key.shape[1], groups, dim)
    scale = scaling if scaling is not None else dim ** -0.5
    scores = torch.matmul(q, key.transpose(-1, -2)).float().mul_(scale)
    scores.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # [b, kv heads, groups, dim]
    return out.reshape(b, 1, heads, dim), None


def _register_decode_attention() -> None:
    from transformers import AttentionInterface

    if DECODE_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(DECODE_ATTENTION, _decode_attention)


@contextmanager
def decode_attention(model: nn.Module) -> Iterator[None]:
    """Inside the block the model's attention layers run `_decode_attention` (restored after)."""
    _register_decode_attention()
    original = model.config._attn_implementation
    model.set_attn_implementation(DECODE_ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(original)


# =========================================================================================================
# The decode loop.


def _windows(attention_mask: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The allowed-key mask for all `total` positions ([b, 1, 1, total]; the prompt's real tokens on, the
    rest off) and the prompt's causal mask ([b, 1, p, p]). A pad query may see itself, so no row of the
    prompt's mask is empty (its output is never read)."""
    b, p = attention_mask.shape
    real = attention_mask.bool()
    keys = torch.zeros(b, 1, 1, total, dtype=torch.bool, device=attention_mask.device)
    keys[:, 0, 0, :p] = real
    causal = torch.ones(p, p, dtype=torch.bool, device=attention_mask.device).tril()
    prompt = causal & real[:, None, None, :]
    prompt |= torch.eye(p, dtype=torch.bool, device=attention_mask.device)
    return keys, prompt


def _static_cache(model: nn.Module, rows: int, total: int):
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    extra = {"max_batch_size": rows} if "max_batch_size" in params else {}
    return StaticCache(config=model.config, max_cache_len=total, **extra)


@torch.no_grad()
def decode(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           eos_token_id: int | Sequence[int], pad_token_id: int,
           sample: Callable[[torch.Tensor], torch.Tensor] = Sampling(),
           stop: Callable[[list[int]], bool] | None = None,
           compact_when_ended: float = COMPACT_WHEN_ENDED,
           observe: Callable[[torch.Tensor, int, torch.Tensor], None] | None = None,
           written_out: bool = True) -> torch.Tensor:
    """New tokens [b, n <= max_new_tokens] for left-padded prompts, laid out as HF generate's
    `out[:, prompt_width:]`: a row that emitted EOS (or whose text `stop` accepts) continues with pad, and
    the loop ends once all rows have.

    `sample(logits)` draws one token per row from float32 logits [rows still in the batch, vocab];
    `observe(rows, t, logits)`, when given, sees the same logits at step t with each batch row's index in the
    input (the tests compare them with a full forward). The prompt runs through the model's forward with its
    attention switched to `_decode_attention` and its linears packed (`packed_linears`); the tokens after it
    through `DecodeStep` where `unsupported` finds nothing against it and `written_out` is on (off: the model's
    forward all the way, which tests/test_decode.py compares it with).
    """
    device = input_ids.device
    rows, width = input_ids.shape
    total = width + max_new_tokens
    eos = torch.as_tensor(eos_token_id, device=device).reshape(-1)  # an id or a list of ids
    keys, prompt_mask = _windows(attention_mask, total)
    # Left padding: positions count each row's real tokens from 0 (pads sit at 0, masked out), as generate's.
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = _static_cache(model, rows, total)
    params = inspect.signature(model.forward).parameters
    extra = {cache_argument(model): cache, "use_cache": True}
    # The LM head only on the last position, kept by an index tensor (a bf16 CPU linear on the strided view an
    # int would keep materializes the weight expanded over the batch: 1.1 s per SmolLM2 prompt batch).
    if "logits_to_keep" in params:
        extra["logits_to_keep"] = torch.tensor([-1], device=device)
    with_cache_position = "cache_position" in params  # transformers 5.0's StaticCache writes by it

    out = torch.full((rows, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    running = torch.arange(rows, device=device)  # the original row of each row still in the batch
    alive = torch.ones(rows, dtype=torch.bool, device=device)  # False: ended, carried until the next compaction
    ids, mask, pos = input_ids, prompt_mask, positions
    steps = 0
    step = None  # after the prompt: DecodeStep where it supports the model, else transformers' forward
    with decode_attention(model), ExitStack() as packing:
        packing.enter_context(packed_linears(model, rows))
        for t in range(max_new_tokens):
            if step is not None:  # the token fed now goes to the cache's column width + t - 1
                logits = step(ids[:, 0], pos, width + t - 1, mask)
            else:
                if with_cache_position:  # the fed tokens' places: 0..width-1 first, then width + t - 1
                    extra["cache_position"] = torch.arange(width + t - ids.shape[1], width + t, device=device)
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **extra).logits[:, -1]
                logits = logits.float()
            if t == 0 and written_out and unsupported(model) is None:
                packing.close()  # the step packs its own (fused) copies; the prompt's are dropped first
                step = DecodeStep(model, cache, _packable, packed_linear)
            if observe is not None:
                observe(running, t, logits)
            token = torch.where(alive, sample(logits), pad_token_id)
            out[running, t] = token
            steps = t + 1
            ended = torch.isin(token, eos)
            if stop is not None and steps % STOP_CHECK_EVERY == 0:
                for i in (alive & ~ended).nonzero().flatten().tolist():
                    ended[i] = stop(out[running[i], :steps].tolist())
            alive &= ~ended
            if not bool(alive.any()):
                break
            keys[:, 0, 0, width + t] = True  # the token fed next is written at this position of the cache
            pos = pos[:, -1:] + 1
            if int((~alive).sum()) >= max(1.0, compact_when_ended * len(alive)):
                # Drop the rows that have ended: a smaller batch (and cache) from here on.
                live = alive.nonzero().flatten()
                if step is not None:
                    step.reorder(live)
                else:
                    cache.reorder_cache(live)
                running, alive, keys, pos, token = running[live], alive[live], keys[live], pos[live], token[live]
            ids, mask = token.unsqueeze(1), keys[:, :, :, :width + t + 1]
    return out[:, :steps]
