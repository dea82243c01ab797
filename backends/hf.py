"""``--format hf``: a compiled token program as a transformers checkpoint (docs/target-hf.md).

``lsrl compile PROGRAM --target mamba --format hf -o DIR`` writes what
``transformers.MambaForCausalLM.from_pretrained(DIR)`` loads without custom code, and ``--target
hawk`` what ``RecurrentGemmaForCausalLM`` loads: the token embedding, every block behind its
RMSNorm on a residual stream, the final norm and the tied ``lm_head``. ``argmax(logits)`` at every
position is the program's output token there.

The blocks are the ``mamba`` and ``hawk`` targets' own (``_Planner``), put on a residual stream
of ``D`` slots (``backends/stream.py``):

- **slots.** Slot ``T`` holds the input token at first and the output token at the end, ``Q`` the
  readout's constant 1 (the first block writes it), then come the program's values, and last the
  constant slots that keep the norm constant. Every block reads the slots of the values it reads
  and writes each value it computes into a slot: one that holds 0, or one whose old value is an
  exact integer, which the same write takes off (``y - old``); a value that is a copy of one it
  reads keeps that one's slot and costs nothing.
- **the norm.** RMSNorm computes ``h / sqrt(mean(h^2) + eps)`` in float32 whatever the model's
  dtype. The constant slots hold powers of two ``2^(c + i)``, one per base-4 digit ``d_i`` of
  ``D`` (``d_i`` slots each), so their squares add up to ``4^c D`` and the mean to ``4^c``; ``c``
  is chosen so that the program's squares add up to at most ``2^-26`` of the constants' and
  ``eps`` to less still: float32 then rounds every partial sum that contains a constant back to
  the constants' exact sum, in any order, and the norm divides every position by exactly ``2^c``.
  The norm's weight ``2^c`` undoes that, so a block reads the stream's values exactly (where
  float32 holds them). A program whose values are unbounded gets no such ``c``: its bound is then
  infinite and the compiler warns.
- **readout.** Row k of the embedding (and of the tied ``lm_head``) is ``k`` at ``T``, ``k^2`` at
  ``Q`` and the constants; the final norm's weights make the logits ``sigma (2 k v - k^2)`` for the
  output ``v`` at ``T``: a parabola in k whose top is at ``k = v``, exact integers times ``sigma``,
  with a margin of ``sigma (1 - 2 e)`` for an output off by ``e < 1/2``. RecurrentGemma soft-caps
  the logits (``30 tanh(l / 30)``), so its ``sigma`` keeps them within the cap.
- Hawk's embedding is scaled by ``bfloat16(sqrt(D))``: ``D`` is a power of 4, so that scale is an
  exact power of two. Its accumulators are the float32 ones; transformers runs the RG-LRU's scan
  in float32 in every dtype, where the float32 construction holds, and a convolution tap of
  ``1 + 4.3e-8`` (1 in float32) makes up float64's multiplier (``accumulate_tap``).

transformers also computes Mamba's cached single-step scan in float32: the checkpoint's float64
bound is its float32 bound (the planner's, float32 row), which is 0 for integer programs.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lsrl.backends.mamba import Block
from lsrl.backends.stream import (
    READOUT_CONSTANT,
    MambaParts,
    MlpParts,
    Q,
    Stream,
    T,
    TemporalParts,
    constant_slots,
    hawk_width,
    mamba_width,
    norm_exponent,
)
from lsrl.backends.target import CONFIG_FILE, UNIT_ROUNDOFF, Compiled, Options
from lsrl.ir.errors import CompileWarning, LsrlError
from lsrl.passes.ranges import INF

FORMAT = "hf"
SOFT_CAP = 30.0  # RecurrentGemma's logits_soft_cap (its default)
MAMBA_EPS, GEMMA_EPS = 1e-5, 1e-6  # the architectures' default norm epsilons
U32 = UNIT_ROUNDOFF["float32"]


# --- the readout ---------------------------------------------------------------------------------------
def readout_scale(vocab: int, cap: float | None) -> float:
    """sigma: the logits are sigma (2 k v - k^2); under a soft cap, at most the cap."""
    if cap is None or vocab <= 1:
        return 1.0
    return 2.0 ** min(0, math.floor(math.log2(cap / (vocab - 1) ** 2)))


def margin_floor(vocab: int, error: float, cap: float | None) -> float | None:
    """The least logit margin (best minus second best) the readout guarantees for an output off
    by at most ``error``: ``sigma (1 - 2 error)``, less the logits' rounding, through the cap's
    smallest slope over the logits' range; None where ``error`` reaches 1/2."""
    if error >= 0.5:
        return None
    sigma = readout_scale(vocab, cap)
    top = vocab - 1
    exact = error == 0 and 2 * top * top < 2**24
    margin = sigma * (1 - 2 * error) - (0.0 if exact else 8 * U32 * sigma * 3 * (top + 1) ** 2)
    if cap is not None:
        largest = sigma * (top * top + 2 * error * top)
        margin = margin * (1 - math.tanh(largest / cap) ** 2) - 8 * U32 * cap
    return margin


def embedding(vocab: int, width: int, exponent: int, constants: Sequence[tuple[int, int]], scale: int) -> np.ndarray:
    """Row k: k at T, k^2 at Q, the constants (divided by the model's embedding scale)."""
    table = np.zeros((vocab, width))
    k = np.arange(vocab, dtype=np.float64)
    table[:, T], table[:, Q] = k, k * k
    for slot, i in constants:
        table[:, slot] = 2.0 ** (exponent + i) / scale
    return table


def gains(width: int, exponent: int, constants: Sequence[tuple[int, int]]) -> np.ndarray:
    """A block's norm weight: 2^c undoes the norm on every slot; the constant slots read as 0."""
    gain = np.full(width, 2.0**exponent)
    gain[[slot for slot, _ in constants]] = 0.0
    return gain


def final_gains(width: int, exponent: int, sigma: float) -> np.ndarray:
    """The final norm's weight: the logits k (2 sigma v) + k^2 (-sigma) from T = v, Q = 1."""
    gain = np.zeros(width)
    gain[T], gain[Q] = 2 * sigma * 2.0**exponent, -sigma * 2.0**exponent / READOUT_CONSTANT
    return gain


def gemma_weights(gain: np.ndarray) -> np.ndarray:
    """RecurrentGemma's norm weight w for a gain ``1 + w`` (computed in float32): ``g - 1``, or
    ``g`` itself where float32 cannot hold ``g - 1`` and rounds ``1 + g`` to ``g``."""
    weight = gain - 1
    computed = 1 + torch.tensor(weight).float()
    inexact = computed.double().numpy() != gain
    weight[inexact] = gain[inexact]
    assert ((1 + torch.tensor(weight).float()).double().numpy() == gain).all(), "a norm gain float32 cannot make"
    return weight


def accumulate_tap() -> float:
    """The convolution tap of Hawk's accumulating channels: 1 in float32, and in float64 what
    makes the multiplier ``sqrt(1 - a^2)`` (float64's, as transformers computes it) exactly undo
    ``linear_x``'s 2^12 up to float64 rounding, so the float32 scan adds the exact increment."""
    from lsrl.backends.hawk import ACCUMULATE_PARAM, ACCUMULATE_SCALE, GATE_OPEN

    log_a = -8.0 * torch.sigmoid(torch.tensor(GATE_OPEN, dtype=torch.float64)) * F.softplus(
        torch.tensor(ACCUMULATE_PARAM, dtype=torch.float64))
    assert torch.exp(log_a).float().item() == 1.0, "the float32 scan must hold exactly"
    tap = 1.0 / (ACCUMULATE_SCALE * math.sqrt(1.0 - math.exp(2 * log_a.item())))
    assert np.float32(tap) == 1.0
    return tap


# --- building -------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """What ``build_mamba`` and ``build_hawk`` return: the transformers config, the tensors, and
    the figures and config entries lsrl records."""

    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    lsrl: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[CompileWarning] = field(default_factory=list)
    bound: float = 0.0  # the output's error bound in float32 and float64


def _special_tokens() -> dict[str, None]:
    # a program's vocabulary has no padding, beginning or end token
    return {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}


def _stream_facts(stream: Stream, width: int, vocab: int, output_error: float, cap: float | None,
                  exponent: int | None) -> dict[str, Any]:
    return {
        "stream": {"token": T, "readout_constant": Q, "width": width, "norm_exponent": exponent,
                   "program_squares": stream.squares()},
        "vocab": vocab, "readout_scale": readout_scale(vocab, cap),
        "logit_margin_floor": margin_floor(vocab, output_error, cap),
    }


def _norm_warning(stream: Stream, node: int | None) -> CompileWarning:
    return CompileWarning(
        "--format hf cannot keep the residual stream's norm constant: the program's values are not bounded well "
        f"enough (their squares add up to {stream.squares():.3g}); RMSNorm then scales each position by its own "
        "norm and the outputs have no stated bound", node=node)


def build_mamba(blocks: Sequence[Block], vocab: int, bound: float, loudest: int | None) -> Checkpoint:
    """MambaForCausalLM's config and tensors for the mamba planner's ``blocks``."""
    from lsrl.backends.mamba import block_tensors

    stream = Stream(vocab, 1)
    parts = MambaParts()
    placed = [stream.place(b, parts, last=(i == len(blocks) - 1)) for i, b in enumerate(blocks)]
    width = mamba_width(stream.width)
    expand = math.ceil(max(len(b.channels) + 1 for b in placed) / width)
    constants = list(zip(range(stream.width, width), constant_slots(width)))
    exponent = norm_exponent(stream.squares(), width)
    tensors: dict[str, np.ndarray] = {}
    for i, block in enumerate(placed):
        for name, value in block_tensors(block, width, expand * width).items():
            tensors[f"backbone.layers.{i}.mixer.{name}"] = value
        tensors[f"backbone.layers.{i}.norm.weight"] = gains(width, exponent or 0, constants)
    tensors["backbone.embeddings.weight"] = embedding(vocab, width, exponent or 0, constants, 1)
    tensors["backbone.norm_f.weight"] = final_gains(width, exponent or 0, readout_scale(vocab, None))
    config = {
        "architectures": ["MambaForCausalLM"], "model_type": "mamba", "vocab_size": vocab, "hidden_size": width,
        "state_size": 1, "num_hidden_layers": len(placed), "expand": expand, "conv_kernel": 4, "use_bias": True,
        "use_conv_bias": True, "hidden_act": "silu", "time_step_rank": 1, "residual_in_fp32": False,
        "layer_norm_epsilon": MAMBA_EPS, "tie_word_embeddings": True, "use_cache": True, "dtype": "float32",
        **_special_tokens(),
    }
    checkpoint = Checkpoint(config, tensors, bound=bound if exponent is not None else INF)
    checkpoint.lsrl = _stream_facts(stream, width, vocab, checkpoint.bound, None, exponent)
    checkpoint.lsrl["blocks"] = [{"what": b.what, "slots": slots} for b, slots in zip(placed, stream.layouts)]
    checkpoint.figures = {"blocks": len(placed), "d_model": width, "d_inner": expand * width,
                          "state_size": expand * width * len(placed)}
    if exponent is None:
        checkpoint.warnings.append(_norm_warning(stream, loudest))
    return checkpoint


def build_hawk(layers: Sequence[tuple[Any, Any]], vocab: int, bound: float, loudest: int | None) -> Checkpoint:
    """RecurrentGemmaForCausalLM's config and tensors for the hawk planner's (recurrent, MLP)
    pairs, None where a layer has no block of that kind."""
    from lsrl.backends.hawk import HEAD, Step, mlp_tensors, slots, temporal_tensors

    flat = [(step, kind) for pair in layers for step, kind in zip(pair, ("temporal", "mlp"))]
    last = max(k for k, (step, _) in enumerate(flat) if step is not None)
    # the stream's width is known only once every block is placed, and the embedding's scale
    # (the square root of a power of 4) with it: place for growing widths until they agree. The
    # RG-LRU is as wide as the stream: transformers' single-step decoding keeps the convolution's
    # state at the stream's width (hidden_size), so it works only where lru_width is the same
    width = 4
    while True:
        stream = Stream(vocab, int(math.isqrt(width)))
        placed = [None if step is None else stream.place(step, TemporalParts() if kind == "temporal" else MlpParts(), k == last)
                  for k, (step, kind) in enumerate(flat)]
        lru = max([HEAD] + [slots(s)[-1] + 1 for s in placed[0::2] if s is not None and s.channels])
        needed = hawk_width(max(stream.width, lru - 1))
        if needed <= width:
            break
        width = needed
    lru = width
    inter = max([1] + [len(s.channels) for s in placed[1::2] if s is not None])
    constants = [(stream.width, int(math.log2(width)) // 2)]  # one slot: 4^(c + j) = 4^c width
    exponent = norm_exponent(stream.squares(), width)
    scale = int(math.isqrt(width))
    sigma = readout_scale(vocab, SOFT_CAP)
    tap = accumulate_tap()
    block_weight = gemma_weights(gains(width, exponent or 0, constants))
    tensors: dict[str, np.ndarray] = {}
    for i in range(len(layers)):
        t, m = placed[2 * i], placed[2 * i + 1]
        t = t or Step("empty", "temporal", [], width, [])
        m = m or Step("empty", "mlp", [], width, [])
        for name, value in temporal_tensors(t, width, lru, tap).items():
            tensors[f"model.layers.{i}.temporal_block.{name}"] = value
        for name, value in mlp_tensors(m, width, inter).items():
            tensors[f"model.layers.{i}.mlp_block.{name}"] = value
        tensors[f"model.layers.{i}.temporal_pre_norm.weight"] = block_weight
        tensors[f"model.layers.{i}.channel_pre_norm.weight"] = block_weight
    tensors["model.embed_tokens.weight"] = embedding(vocab, width, exponent or 0, constants, scale)
    tensors["model.final_norm.weight"] = gemma_weights(final_gains(width, exponent or 0, sigma))
    config = {
        "architectures": ["RecurrentGemmaForCausalLM"], "model_type": "recurrent_gemma", "vocab_size": vocab,
        "hidden_size": width, "lru_width": lru, "intermediate_size": 2 * inter, "num_attention_heads": lru // HEAD,
        "num_hidden_layers": len(layers), "conv1d_width": 4, "block_types": ["recurrent"],
        "hidden_activation": "gelu_pytorch_tanh", "logits_soft_cap": SOFT_CAP, "rms_norm_eps": GEMMA_EPS,
        "tie_word_embeddings": True, "use_cache": True, "dtype": "float32", **_special_tokens(),
    }
    checkpoint = Checkpoint(config, tensors, bound=bound if exponent is not None else INF)
    checkpoint.lsrl = _stream_facts(stream, width, vocab, checkpoint.bound, SOFT_CAP, exponent)
    layouts = iter(stream.layouts)
    checkpoint.lsrl["blocks"] = [None if s is None else {"what": s.what, "slots": next(layouts)} for s in placed]
    checkpoint.figures = {"blocks": len(layers), "d_model": width, "lru_width": lru, "intermediate": inter,
                          "state_size": lru * len(layers)}
    if exponent is None:
        checkpoint.warnings.append(_norm_warning(stream, loudest))
    return checkpoint


# --- checks on the program ----------------------------------------------------------------------------
def check_options(options: Options) -> int:
    """The vocabulary size of a token program, from the tokens its input declares."""
    if options.tokens is None:
        raise LsrlError("--format hf needs a token program: declare the input's tokens (input x[1] in 0..N) or give --vocab N")
    return options.tokens[1]


def output_token_warnings(facts: Sequence[Any], vocab: int) -> list[CompileWarning]:
    """Refuse an output that is not proven an integer; warn where its range is not proven to lie
    in the vocabulary (argmax then gives the nearest token id)."""
    out = []
    for fact in facts:
        lattice = fact.lattice
        integer = lattice is not None and lattice.step == int(lattice.step) and lattice.offset == int(lattice.offset)
        if not integer:
            raise LsrlError(f"--format hf needs the output to be a token id, but output {fact.label.source} is not proven "
                            "to be an integer", node=fact.label.node)
        low, high = fact.interval.lo, fact.interval.hi
        if low < 0 or high > vocab - 1:
            out.append(CompileWarning(
                f"output {fact.label.source} is not proven to be a token id 0..{vocab - 1}: the range analysis bounds it "
                f"by [{low}, {high}]; where it is not, argmax gives the nearest token id", node=fact.label.node))
    return out


# --- running through transformers ------------------------------------------------------------------------
def load(directory: str | Path, dtype: str):
    """The checkpoint in ``directory`` as a user loads it: ``from_pretrained``, offline, in ``dtype``."""
    try:
        import transformers
    except ImportError:
        raise LsrlError("--format hf runs the checkpoint through transformers, which is not installed "
                        "(pip install 'lsrl[hf]')") from None

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    architecture = json.loads((Path(directory) / CONFIG_FILE).read_text())["architectures"][0]
    model = getattr(transformers, architecture).from_pretrained(directory, local_files_only=True, dtype=getattr(torch, dtype))
    return model.eval()


def compiled_logits(compiled: Compiled, tokens: np.ndarray, dtype: str) -> np.ndarray:
    """The logits ``[batch, time, vocab]`` of token ids ``[batch, time]``: the checkpoint written,
    loaded through transformers and run forward on the whole sequences."""
    with tempfile.TemporaryDirectory() as directory:
        compiled.write(directory)
        model = load(directory, dtype)
        with torch.no_grad():
            return model(torch.as_tensor(tokens, dtype=torch.long), use_cache=False).logits.double().numpy()


def run(compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
    """The program's outputs ``[batch, time, 1]``: argmax of the logits of the input tokens."""
    tokens = inputs[..., 0]
    assert (tokens == np.round(tokens)).all() and (tokens >= 0).all(), "token ids (the command line checks the declaration)"
    return compiled_logits(compiled, tokens.astype(np.int64), dtype).argmax(-1)[..., None].astype(np.float64)


def margins(values: np.ndarray) -> np.ndarray:
    """Best minus second-best logit at every position."""
    top = np.sort(values, axis=-1)
    return top[..., -1] - top[..., -2]
