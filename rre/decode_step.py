"""One decode step of a Llama-family model, written out: what `rre.decode` runs for every token after the prompt.

Through transformers' modules a one-token step of a 30-layer model is several thousand operator calls (mask and
position bookkeeping, cache objects, PEFT's wrapper around each adapted projection), each with its own overhead.
This step does a layer's arithmetic in the same operations, order and dtypes as `LlamaDecoderLayer` (and
`rre.decode._decode_attention`), so the logits are the same bits (tests/test_decode.py compares them). What
differs is form only:

- q, k and v are one matmul, and gate and up are one, when the weights are packed for oneDNN (`rre.decode.
  packed_linears`): each output column is the same dot product, laid out beside the others; without packing
  (a GPU) the projections stay separate and no weight is copied;
- a LoRA adapter that is not folded into its weight (bf16 weights, `rre.decode.foldable`) is added to its slice
  of the output as PEFT adds it to its projection's (`base + B(A(dropout(x))) * scaling`), its A and B cast
  to the autocast dtype once instead of at every call;
- keys and values are written straight into the cache's tensors at the step's column; bf16 keys on a CPU are
  kept transposed (the bf16 CPU matmul would copy a transposed operand at every call);
- the mask is added (the float32 minimum where a slot is blocked) instead of filled in.

On SmolLM2 rollouts this took 10-20% off the time (docs/performance.md). Other architectures, LoRA variants
(DoRA), weights sharded by ZeRO-3 and weights spread over several devices (a device map over GPUs, or offload)
take transformers' forward (`unsupported` says why).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Linear = Callable[[torch.Tensor], torch.Tensor]
Packer = Callable[[torch.Tensor, torch.Tensor | None, int], Linear]  # rre.decode.packed_linear


def _base(proj: nn.Module) -> nn.Module:
    return getattr(proj, "base_layer", proj)


def _adapters(proj: nn.Module) -> list[Linear]:
    """The LoRA terms PEFT would add to this projection's output now, each as a function of its input.

    PEFT computes `B(A(dropout(x.to(A's dtype)))) * scaling`. Under autocast both matmuls run in the autocast
    dtype, casting A and B at every call; here they are cast once, to the same values (and x, already in that
    dtype, is not sent to float32 and back: both casts are exact)."""
    if not hasattr(proj, "lora_A") or proj.disable_adapters or proj.merged:
        return []
    terms = []
    for name in proj.active_adapters:
        if name not in proj.lora_A:
            continue
        a, b = proj.lora_A[name], proj.lora_B[name]
        device = a.weight.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else a.weight.dtype
        a_w, b_w = a.weight.detach().to(dtype), b.weight.detach().to(dtype)
        b_b = None if b.bias is None else b.bias.detach().to(dtype)
        terms.append(lambda x, dropout=proj.lora_dropout[name], a_w=a_w, b_w=b_w, b_b=b_b, s=proj.scaling[name],
                     dtype=dtype: F.linear(F.linear(dropout(x.to(dtype)), a_w), b_w, b_b) * s)
    return terms


def unsupported(model: nn.Module) -> str | None:
    """Why this model's steps go through transformers' forward instead; None when `DecodeStep` can run them."""
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        return f"model_type {getattr(config, 'model_type', None)!r} is not llama"
    if getattr(config, "hidden_act", None) != "silu":
        return f"hidden_act {config.hidden_act!r}"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    if any(getattr(module, "lora_variant", None) for module in model.modules()):
        return "a LoRA variant (DoRA, ...) is active"
    if any(hasattr(p, "ds_id") for p in model.parameters()):  # DeepSpeed ZeRO-3 partitions the weights
        return "ZeRO-3 partitioned weights"
    # The step multiplies a layer's tensors where they lie: weights spread over devices by a device map (several
    # GPUs, CPU and disk offload) need accelerate's hooks in each module's forward to move them.
    placed = set((getattr(model, "hf_device_map", None) or {}).values())
    devices = {p.device for p in model.parameters()}
    if len(placed) > 1 or len(devices) > 1:
        where = sorted(map(str, placed)) if len(placed) > 1 else sorted(map(str, devices))
        return f"weights on more than one device ({', '.join(where)})"
    return None


def _projection(projs: list[nn.Module], packable: Callable[[torch.Tensor], bool], packed_linear: Packer,
                rows: int) -> Linear:
    """One linear over the concatenated outputs of `projs` (LoRA adapters included), as `projs` would give them
    one by one and `torch.cat` would join them."""
    bases = [_base(p) for p in projs]
    adapters = [_adapters(p) for p in projs]
    fused = None  # unpacked: each projection its own matmul, no copy of its weight
    if all(packable(b.weight) for b in bases):
        weight = torch.cat([b.weight.detach() for b in bases]) if len(bases) > 1 else bases[0].weight
        bias = None if all(b.bias is None for b in bases) else torch.cat(
            [b.bias.detach() if b.bias is not None else weight.new_zeros(b.out_features) for b in bases])
        fused = packed_linear(weight, bias, rows)
    bounds, start = [], 0
    for b in bases:
        bounds.append((start, start + b.out_features))
        start += b.out_features

    def forward(x: torch.Tensor) -> torch.Tensor:
        if fused is not None:
            y = fused(x)
            if not any(adapters):
                return y
            pieces = [y[:, lo:hi] for lo, hi in bounds]
        else:
            pieces = [b(x) for b in bases]
        for i, loras in enumerate(adapters):
            if loras:
                piece = pieces[i]
                for lora in loras:  # as peft.tuners.lora.layer.Linear.forward adds vanilla LoRA
                    piece = piece + lora(x)
                pieces[i] = piece.to(pieces[i].dtype)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, -1)

    return forward


class DecodeStep:
    """Logits [b, vocab] (float32) of the next token for one new token per row, given the static cache that
    transformers' forward filled with the prompt. Built once per `decode` call: the weights it holds (packed or
    fused copies, the adapters' current tensors) are the model's at that moment."""

    def __init__(self, model: nn.Module, cache, packable: Callable[[torch.Tensor], bool], packed_linear: Packer):
        """`packable(weight)`: whether to multiply by a weight through `packed_linear` (rre.decode's, passed in
        because rre.decode imports this module)."""
        config, body = model.config, model.model
        rows = cache.layers[0].keys.shape[0]
        self.embed = body.embed_tokens
        self.rotary = body.rotary_emb
        self.norm = body.norm

        def projection(projs: list[nn.Module]) -> Linear:
            return _projection(projs, packable, packed_linear, rows)

        self.lm_head = projection([model.lm_head])
        self.layers = []
        for layer in body.layers[:config.num_hidden_layers]:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append((layer.input_layernorm, projection([attn.q_proj, attn.k_proj, attn.v_proj]),
                                projection([attn.o_proj]), layer.post_attention_layernorm,
                                projection([mlp.gate_proj, mlp.up_proj]), projection([mlp.down_proj])))
        attn = body.layers[0].self_attn
        self.heads, self.head_dim = config.num_attention_heads, attn.head_dim
        self.kv_heads = config.num_key_value_heads
        self.scaling = attn.scaling
        self.intermediate = _base(body.layers[0].mlp.gate_proj).out_features
        self.act = body.layers[0].mlp.act_fn
        # The cache, taken over from transformers' StaticCache. bf16 keys on a CPU are kept transposed, [b, kv
        # heads, dim, slots]: the bf16 CPU matmul copies a transposed operand on every call (same bits either
        # way, tested; float32 keeps the cache's layout, whose kernel sums in another order when transposed).
        keys = cache.layers[0].keys
        self.transposed = keys.dtype == torch.bfloat16 and keys.device.type == "cpu"
        self.keys = [layer.keys.transpose(-1, -2).contiguous() if self.transposed else layer.keys
                     for layer in cache.layers]
        self.values = [layer.values for layer in cache.layers]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows of the cache (the rows of the batch that are still decoding)."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]

    @staticmethod
    def _rms(norm: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """LlamaRMSNorm.forward: float32 statistics, cast back, then the weight."""
        x = h.to(torch.float32)  # h itself when h is float32: not written to
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(norm.variance_epsilon))
        return norm.weight * x.to(h.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """apply_rotary_pos_emb on [b, heads, dim] with cos/sin [b, 1, dim] (q's and k's heads in one call)."""
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def __call__(self, token: torch.Tensor, position: torch.Tensor, column: int,
                 key_mask: torch.Tensor) -> torch.Tensor:
        """`token` [b], `position` [b, 1], `column`: the cache slot this token's key and value go to;
        `key_mask` [b, 1, 1, width]: the slots each row may attend to (this one included)."""
        b = token.shape[0]
        h = self.embed(token[:, None])  # [b, 1, hidden], as the model's hidden states
        cos, sin = self.rotary(h, position)  # [b, 1, dim]
        h = h[:, 0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        width = key_mask.shape[-1]
        # rre.decode._decode_attention's masked_fill with the float32 minimum, as one addition: a score plus that
        # minimum rounds to the minimum itself, so the softmax sees the same numbers (and it is 5x faster).
        blocked = torch.zeros(key_mask.shape, dtype=torch.float32, device=h.device)
        blocked.masked_fill_(~key_mask, torch.finfo(torch.float32).min)
        for i, (norm1, qkv, o_proj, norm2, gate_up, down) in enumerate(self.layers):
            y = qkv(self._rms(norm1, h))
            qk = self._rotate(y[:, :(heads + kv_heads) * dim].view(b, heads + kv_heads, dim), cos, sin)
            q, k = qk[:, :heads], qk[:, heads:]
            v = y[:, (heads + kv_heads) * dim:].view(b, kv_heads, dim)
            if self.transposed:
                self.keys[i][:, :, :, column] = k
                keys_t = self.keys[i][:, :, :, :width]
            else:
                self.keys[i][:, :, column] = k
                keys_t = self.keys[i][:, :, :width].transpose(-1, -2)
            self.values[i][:, :, column] = v
            values = self.values[i][:, :, :width]
            # rre.decode._decode_attention: query head h reads key head h // groups; softmax in float32.
            scores = torch.matmul(q.view(b, kv_heads, heads // kv_heads, dim), keys_t)
            scores = scores.float().mul_(self.scaling).add_(blocked)
            probs = torch.softmax(scores, dim=-1).to(values.dtype)
            h += o_proj(torch.matmul(probs, values).reshape(b, heads * dim))  # h: this step's own tensor
            y = gate_up(self._rms(norm2, h))
            h += down(self.act(y[:, :self.intermediate]) * y[:, self.intermediate:])
        return self.lm_head(self._rms(self.norm, h)).float()
