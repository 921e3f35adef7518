"""The policy's forward for sampling: the prompts once, then one token per row per step over a preallocated
KV cache from which finished rows are dropped.

:func:`cached_decoder` returns a :class:`CachedDecoder` for a T5 or a LLaMA policy, plain or wrapped by PEFT,
computing with the fused weights of :mod:`motion_align.policy.sampler_weights` (read once per call, so LoRA
adapters count as they are now). Against ``model.generate`` on a small policy, on CPU, it saves:

- per step, the masks and cache objects ``generate`` builds and the cache it concatenates (a copy of the
  whole cache per step), and most operator calls (fused projections and norms);
- finished rows: :meth:`CachedDecoder.keep` compacts the cache to the live rows;
- padding: prompts are read in chunks of similar length (:data:`PREFILL_CHUNK` captions sorted by length,
  each chunk padded to its own longest; with prompts of 8 to 41 tokens, padding everything to the longest
  made half of the prefill padding), once per caption rather than once per sample, their keys/values copied
  to the rows of the caption's samples;
- attention of one query per row as batched matrix products over the columns each group of rows uses
  (:mod:`motion_align.policy.sampler_attention`): the rows are kept sorted by prompt length (``order``);
- T5: the encoder runs once per caption and each decoder layer's cross-attention keys/values once per call;
  the decoder's relative position bias is one table for all steps. LLaMA: the rotary cos/sin are one table.

The computation is the model's in exact arithmetic (in eval mode: no dropout); float results differ from
``generate``'s by rounding only (other batch shapes, fused kernels), and greedy decoding picks the same tokens
(tested). Positions follow ``generate``'s (LLaMA: ``cumsum(attention_mask) - 1`` over left-padded prompts).

Not used: ``torch.compile`` of the LLaMA step's layers (inductor, ``dynamic=True``: rows and cache length
change; measured on a first version that called the modules). On the demo LLaMA it took 71 s to compile,
then sampled 16 prompts in 1.07 s against 1.02 s eager and 256 in 4.83 s against 5.17 s (medians of 3, 2
threads, busy machine): the step is bound by reading weights and the cache, which fusing element-wise
operations does not reduce, and 71 s is more than most sampling calls take.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from motion_align.policy.sampler_attention import attend_one, compact, spans
from motion_align.policy.sampler_weights import OutputHead, Projection, activation_function, norm_function

#: ``config.model_type`` values this forward implements; other models sample with ``model.generate``.
SUPPORTED_TYPES = ("llama", "t5")
#: Rotary embeddings whose frequencies depend on the sequence length (recomputed by ``generate`` as it
#: grows): not one table, so not implemented here.
DYNAMIC_ROPE = ("dynamic", "longrope")
#: Captions per prefill chunk (sorted by prompt length, each chunk padded to its own longest prompt).
PREFILL_CHUNK = 32


def unwrap_peft(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (its LoRA layers still in place), else ``model``."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def unsupported_reason(model: Any) -> str | None:
    """Why :func:`cached_decoder` cannot run ``model``, or None when it can."""
    config = getattr(unwrap_peft(model), "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED_TYPES:
        return f"model type {kind!r} (implemented: {', '.join(SUPPORTED_TYPES)})"
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if kind == "llama" and rope in DYNAMIC_ROPE:
        return f"rotary embedding of type {rope!r}, whose frequencies change with the length"
    return None


class CachedDecoder:
    """One step per token for ``rows`` rows; subclasses hold the cache. Row i of the batch is the sample
    ``order[i]`` of the caption-major output (rows sorted for the attention groups)."""

    rows: int
    order: torch.Tensor

    def first(self) -> torch.Tensor:
        """Scores (rows, C) of the first generated token."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; the scores (rows, C) of the next token over the head's columns."""
        raise NotImplementedError

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the rows ``index`` (ascending positions in the current batch)."""
        raise NotImplementedError


def chunks(lengths: torch.Tensor, size: int = PREFILL_CHUNK) -> list[torch.Tensor]:
    """Indices by ascending ``lengths``, in chunks of ``size``."""
    order = torch.argsort(lengths.cpu(), stable=True).to(lengths.device)
    return list(order.split(size))


def sample_rows(captions: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Rows of the captions' samples, caption-major: caption c has rows c * n ... c * n + n - 1."""
    offsets = torch.arange(num_samples, device=captions.device)
    return (captions[:, None] * num_samples + offsets).reshape(-1)


def _clamp_fp16(hidden: torch.Tensor) -> torch.Tensor:
    """T5's clamp of float16 activations after each sub-layer (``T5Block``); other dtypes pass."""
    if hidden.dtype != torch.float16:
        return hidden
    top = torch.finfo(hidden.dtype).max
    limit = torch.where(torch.isinf(hidden).any(), top - 1000, top)
    return torch.clamp(hidden, min=-limit, max=limit)


class LlamaDecoder(CachedDecoder):
    """A LLaMA-style decoder-only policy (``LlamaForCausalLM``) over left-padded prompts."""

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        num_samples: int,
        max_new_tokens: int,
        columns: torch.Tensor | None,
    ) -> None:
        core, config = model.model, model.config
        self.embed, self.final_norm = core.embed_tokens, norm_function(core.norm)
        self.output = OutputHead(model.lm_head, columns)
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        self.layers = [
            (
                norm_function(layer.input_layernorm),
                Projection([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                Projection([layer.self_attn.o_proj]),
                norm_function(layer.post_attention_layernorm),
                Projection([layer.mlp.gate_proj, layer.mlp.up_proj]),
                activation_function(layer.mlp.act_fn),
                Projection([layer.mlp.down_proj]),
            )
            for layer in core.layers
        ]
        captions, prompt = input_ids.shape
        device, self.rows, self.length = input_ids.device, captions * num_samples, prompt
        real = attention_mask.bool()
        width = prompt - real.to(torch.int8).argmax(1)  # columns from each row's first real token
        width[~real.any(1)] = 1
        # rows by their first real column (longest prompts first), caption-major within a length
        first = (prompt - width).repeat_interleave(num_samples)
        self.order = torch.argsort(first.cpu(), stable=True).to(device)
        self.first_column = first[self.order]
        self.slot = torch.empty_like(self.order)  # the batch row of each output row
        self.slot[self.order] = torch.arange(self.rows, device=device)
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(~real, 1)
        self.position = (positions[:, -1] + 1).repeat_interleave(num_samples)[self.order]  # of the next token
        probe = self.embed(input_ids[:1, :1])
        table = torch.arange(int(self.position.max()) + max_new_tokens, device=device)[None]
        cos, sin = core.rotary_emb(probe, table)
        self.cos, self.sin = cos[0], sin[0]  # (positions, head_dim)
        total, dtype = prompt + max_new_tokens, probe.dtype
        # added to the scores: -inf-like at the padding of the prompt, 0 at every other column
        self.add = torch.zeros(self.rows, 1, total, dtype=dtype, device=device)
        blocked = ~real.repeat_interleave(num_samples, 0)[self.order]
        self.add[:, 0, :prompt].masked_fill_(blocked, torch.finfo(dtype).min)
        shape = (self.rows, self.kv_heads, total, self.head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in self.layers]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in self.layers]
        for cache in (*self.keys, *self.values):
            cache[:, :, :prompt].zero_()  # padding columns are read (masked): they must be finite
        self.last = torch.empty(self.rows, probe.shape[-1], dtype=dtype, device=device)
        for chunk in chunks(width):
            self._prefill(input_ids, real, positions, chunk, int(width[chunk].max()), num_samples)

    def _split(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Fused projections (..., (H + 2 KV) * D) -> rotated queries and keys, and values (..., heads, D)."""
        qkv = qkv.view(*qkv.shape[:-1], self.heads + 2 * self.kv_heads, self.head_dim)
        qk, v = qkv[..., : self.heads + self.kv_heads, :], qkv[..., self.heads + self.kv_heads :, :]
        half = self.head_dim // 2
        qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin  # as rotate_half
        return qk[..., : self.heads, :], qk[..., self.heads :, :], v

    @staticmethod
    def _feed_forward(layer: tuple, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        _, _, out, post_norm, gate_up, act, down = layer
        hidden = hidden + out(attended)
        gate, up = gate_up(post_norm(hidden)).chunk(2, dim=-1)
        return hidden + down(act(gate) * up)

    def _prefill(
        self,
        input_ids: torch.Tensor,
        real: torch.Tensor,
        positions: torch.Tensor,
        captions: torch.Tensor,
        width: int,
        num_samples: int,
    ) -> None:
        """The last ``width`` prompt columns of ``captions``: their keys/values into the cache rows of their
        samples, and their last hidden state."""
        start = self.length - width
        ids, mask, pos = (t[captions, start:] for t in (input_ids, real, positions))
        rows = self.slot[sample_rows(captions, num_samples)]
        causal = torch.ones(width, width, dtype=torch.bool, device=ids.device).tril()
        diagonal = torch.eye(width, dtype=torch.bool, device=ids.device)
        allowed = ((causal & mask[:, None, :]) | diagonal)[:, None]  # a padding query sees itself only
        cos, sin = self.cos[pos][:, :, None], self.sin[pos][:, :, None]
        hidden = self.embed(ids)
        grouped = self.kv_heads != self.heads
        for layer, keys, values in zip(self.layers, self.keys, self.values):
            q, k, v = (t.transpose(1, 2) for t in self._split(layer[1](layer[0](hidden)), cos, sin))
            keys[rows, :, start : self.length] = k.repeat_interleave(num_samples, 0)
            values[rows, :, start : self.length] = v.repeat_interleave(num_samples, 0)
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, scale=self.scale, enable_gqa=grouped
            ).transpose(1, 2)
            hidden = self._feed_forward(layer, hidden, attended.reshape(*hidden.shape[:2], -1))
        self.last[rows] = hidden[:, -1].repeat_interleave(num_samples, 0)

    def first(self) -> torch.Tensor:
        return self.output(self.final_norm(self.last))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        column, self.length = self.length, self.length + 1
        hidden = self.embed(tokens)
        cos, sin = self.cos[self.position][:, None], self.sin[self.position][:, None]
        groups = spans(self.first_column, None, self.rows, self.length)
        for layer, keys, values in zip(self.layers, self.keys, self.values):
            q, k, v = self._split(layer[1](layer[0](hidden)), cos, sin)
            keys[:, :, column], values[:, :, column] = k, v
            attended = attend_one(q, keys, values, self.add, self.scale, groups)
            hidden = self._feed_forward(layer, hidden, attended)
        self.position = self.position + 1
        return self.output(self.final_norm(hidden))

    def keep(self, index: torch.Tensor) -> None:
        self.rows, self.order = int(index.numel()), self.order[index]
        self.first_column = self.first_column[index]
        self.position, self.add = self.position[index], self.add[index]
        self.keys = [compact(k, index, self.length) for k in self.keys]
        self.values = [compact(v, index, self.length) for v in self.values]


class T5Decoder(CachedDecoder):
    """A T5 policy (``T5ForConditionalGeneration``) over right-padded prompts."""

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        num_samples: int,
        max_new_tokens: int,
        columns: torch.Tensor | None,
    ) -> None:
        config, decoder = model.config, model.decoder
        self.embed, self.final_norm = decoder.embed_tokens, norm_function(decoder.final_layer_norm)
        self.output = OutputHead(model.lm_head, columns)
        self.heads, self.head_dim = config.num_heads, config.d_kv
        self.output_scale = config.d_model**-0.5 if getattr(config, "scale_decoder_outputs", False) else None
        start = getattr(model.generation_config, "decoder_start_token_id", None)
        start = config.decoder_start_token_id if start is None else start
        if start is None:
            raise ValueError("the T5 policy has no decoder_start_token_id in its config")
        captions = input_ids.shape[0]
        device, self.rows, self.length = input_ids.device, captions * num_samples, 0
        self.start = torch.full((self.rows,), int(start), dtype=torch.long, device=device)
        real = attention_mask.bool()
        encoded = self._encode(model.encoder, input_ids, real)
        # rows by encoder length (longest first), caption-major within a length: the cross-attention groups
        lengths = real.sum(1).clamp(min=1).repeat_interleave(num_samples)
        self.order = torch.argsort(-lengths.cpu(), stable=True).to(device)
        self.encoded_length = lengths[self.order]
        expand = torch.arange(captions, device=device).repeat_interleave(num_samples)[self.order]
        self.layers, self.cross = [], []  # per block: its weights; the encoder's keys and values per row
        for block in decoder.block:
            own, cross, feed_forward = block.layer[0], block.layer[1], block.layer[-1]
            attention, dense = cross.EncDecAttention, feed_forward.DenseReluDense
            gated = hasattr(dense, "wi_0")
            self.layers.append((
                norm_function(own.layer_norm),
                Projection([own.SelfAttention.q, own.SelfAttention.k, own.SelfAttention.v]),
                Projection([own.SelfAttention.o]),
                norm_function(cross.layer_norm),
                Projection([attention.q]),
                Projection([attention.o]),
                norm_function(feed_forward.layer_norm),
                Projection([dense.wi_0, dense.wi_1] if gated else [dense.wi]),
                activation_function(dense.act),
                Projection([dense.wo]),
                gated,
            ))  # fmt: skip
            keys, values = Projection([attention.k, attention.v])(encoded).chunk(2, dim=-1)
            self.cross.append(tuple(self._heads(t).index_select(0, expand) for t in (keys, values)))
        dtype = encoded.dtype
        blocked = torch.zeros(real.shape, dtype=dtype, device=device).masked_fill(
            ~real, torch.finfo(dtype).min
        )
        self.cross_add = blocked[:, None, :].index_select(0, expand)  # (rows, 1, S)
        bias = decoder.block[0].layer[0].SelfAttention.compute_bias(max_new_tokens, max_new_tokens, device)
        self.bias = bias[0].to(dtype)  # (heads, query, key)
        shape = (self.rows, self.heads, max_new_tokens, self.head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in self.layers]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in self.layers]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, heads * D) -> (B, heads, L, D), contiguous."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2).contiguous()

    @staticmethod
    def _encode(encoder: Any, input_ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Encoder states (B, S, d) of the right-padded prompts, by chunks of similar length (zeros at the
        padding, which the cross-attention mask hides)."""
        lengths = real.sum(1).clamp(min=1)
        encoded = None
        for chunk in chunks(lengths):
            width = int(lengths[chunk].max())
            ids, mask = input_ids[chunk, :width], real[chunk, :width]
            states = encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            if encoded is None:
                encoded = states.new_zeros(input_ids.shape[0], input_ids.shape[1], states.shape[-1])
            encoded[chunk, :width] = states
        return encoded

    def first(self) -> torch.Tensor:
        return self.step(self.start)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        column, self.length = self.length, self.length + 1
        hidden = self.embed(tokens)
        bias = self.bias[None, :, column]
        shape = (self.rows, self.heads, self.head_dim)
        own_groups = [(0, self.rows, 0, self.length)]
        cross_groups = spans(None, self.encoded_length, self.rows, self.cross_add.shape[-1])
        for layer, keys, values, (cross_k, cross_v) in zip(self.layers, self.keys, self.values, self.cross):
            norm, qkv, out, cross_norm, cross_q, cross_out, ff_norm, wi, act, wo, gated = layer
            q, k, v = qkv(norm(hidden)).view(self.rows, 3, self.heads, self.head_dim).unbind(1)
            keys[:, :, column], values[:, :, column] = k, v
            attended = attend_one(q, keys, values, bias, 1.0, own_groups)
            hidden = _clamp_fp16(hidden + out(attended))
            q = cross_q(cross_norm(hidden)).view(shape)
            attended = attend_one(q, cross_k, cross_v, self.cross_add, 1.0, cross_groups)
            hidden = _clamp_fp16(hidden + cross_out(attended))
            inner = wi(ff_norm(hidden))
            if gated:
                gate, linear = inner.chunk(2, dim=-1)
                inner = act(gate) * linear
            else:
                inner = act(inner)
            hidden = _clamp_fp16(hidden + wo(inner.to(wo.weight.dtype) if wo.weight is not None else inner))
        hidden = self.final_norm(hidden)
        return self.output(hidden if self.output_scale is None else hidden * self.output_scale)

    def keep(self, index: torch.Tensor) -> None:
        self.rows, self.order = int(index.numel()), self.order[index]
        self.encoded_length = self.encoded_length[index]
        self.cross = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross]
        self.cross_add = self.cross_add.index_select(0, index)
        self.keys = [compact(k, index, self.length) for k in self.keys]
        self.values = [compact(v, index, self.length) for v in self.values]


def cached_decoder(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_samples: int,
    max_new_tokens: int,
    columns: torch.Tensor | None = None,
) -> CachedDecoder:
    """The cached forward of ``model`` (T5 or LLaMA, plain or PEFT-wrapped) over the prompts, with
    ``num_samples`` rows per prompt (caption-major) and room for ``max_new_tokens``."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(
            f"the motion sampler cannot run this policy ({reason}): sample with engine='generate'"
        )
    base = unwrap_peft(model)
    decoder = LlamaDecoder if base.config.model_type == "llama" else T5Decoder
    return decoder(base, input_ids, attention_mask, num_samples, max_new_tokens, columns)
