"""The ``hawk`` target: a stack of Hawk residual blocks (Griffin's recurrent block and gated MLP).

Weights use the parameterization and names of the reference implementation (recurrentgemma,
transformers' ``RecurrentGemma``): ``layers.{i}.temporal_block.{linear_y, linear_x, conv_1d,
rg_lru.{input_gate_weight, input_gate_bias, recurrent_gate_weight, recurrent_gate_bias,
recurrent_param}, linear_out}`` and ``layers.{i}.mlp_block.{gate_proj, up_proj, down_proj}``.
A recurrent block computes, per channel c (``gelu`` is the tanh form, ``gelu_pytorch_tanh``):

    u = conv_1d(linear_x(x))_c,   i = sigmoid(input gate(u)),   r = sigmoid(recurrent gate(u))
    a = exp(-8 r softplus(recurrent_param_c)),   m = sqrt(1 - a^2) (1 at the first step, where a = 0)
    h = a h_prev + m i u,   out = linear_out(h * gelu(linear_y(x)))

and an MLP block ``down_proj(gelu(gate_proj(x)) * up_proj(x))``. The blocks are chained directly:
no residual connection and no RMSNorm (as for ``mamba``; docs/target-mamba-hawk.md).

Construction (on the diagonalized model, ``passes.diagonalize``): a layer that is affine or a
state layer is a recurrent block, a ReLU or gate layer an MLP block; a stack layer takes one of
each (a pass-through where the program has none):

- ``linear_y`` is the constant 16 (``gelu(16) = 16`` exactly); both RG-LRU gates read nothing
  (weights 0) and their biases saturate the sigmoids to exactly 1.
- A **forgetting** channel (``recurrent_param = 100``: ``a = exp(-800) = 0``, ``m = 1``) passes
  its convolution's output through: linear values, and a filter's taps (the conv tap at the lag).
- An **exactly holding** channel (``recurrent_param = -100``: ``a = 1``, ``m = 0``) keeps its
  first step's input forever.
- An **accumulator** cannot use an exactly holding channel, which cannot add. Its weights depend on
  the dtype (``Options.dtype``; a model runs only in the dtype it was built for):
  float32: an *accumulating* channel has ``recurrent_param = -19.408...``: ``a`` rounds to exactly 1
  while ``a^2`` rounds to ``1 - 2^-24``, so ``m = 2^-12`` exactly and ``linear_x`` scales its input
  by ``2^12``: float32 accumulates exactly. At the first step (m = 1) its input gate is closed
  (``sigmoid(100 - 400 f) = 0`` where f is a "first-step" channel, the convolution of the constant
  1 with taps 1, -1, in the same gate block of width 2), and an exactly holding channel takes the
  first step's input.
  float64 cannot round ``a`` to 1 with a multiplier that is a power of two (``a = 1`` needs ``a^2 >=
  1 - 2^-53``, and ``sqrt(2^-53)`` is not one). An *offset* channel has ``a = 1 - 2^-53`` and
  ``m = 2^-26`` (``recurrent_param = -38.816...``) and keeps h in ``(2^52, 2^53)``, where floats are
  the integers and ``a h`` rounds to exactly ``h - 1``: ``linear_x`` gives it ``2^26 (lam v_t +
  2^-26 BASE)`` for the increment ``v_t`` (lam a power of two), so ``h_t = BASE + lam 2^26 v_1 + lam
  (v_2 + ... + v_t) + (t - 1) DRIFT`` exactly (integers: the first step's multiplier is 1). One
  *baseline* channel per block, with ``linear_x`` the constant ``BASE``, is ``BASE + (t - 1) DRIFT``;
  ``linear_out`` reads ``(h - baseline) / lam``, and an exactly holding channel takes off the first
  step's extra ``(2^26 - 1) v_1``. Exact for integer increments while h stays in the interval:
  ``lam`` is as large as keeps ``lam |v| (2^26 + max_len) <= 2^49``, and ``--max-len`` is at most
  ``OFFSET_MAX_LEN`` (2^25 + 1) where a program accumulates.
- In the MLP, a ReLU unit is ``gelu(K u) / K`` (``up_proj`` the constant 1; off by at most
  ``0.17 / K``, exact where |K u| is large), a gate ``p q`` is ``(gelu(K p) - gelu(-K p)) q / K``
  (exact as real numbers), and a pass-through value ``(gelu(K v) - gelu(-K v)) / K``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from lsrl.backends.mamba import (
    CompiledStack,
    DiagonalTarget,
    UnitFacts,
    _magnitude,
    _Planner,
    _row,
    causal_conv,
)
from lsrl.backends.target import DTYPES, UNIT_ROUNDOFF, Compiled, Options, base_config
from lsrl.ir.errors import LsrlError
from lsrl.ir.layered import Layer, LayeredModel
from lsrl.ir.numbers import ONE, ZERO, Number, add, is_integer, mul
from lsrl.passes.diagonalize import CONV_WIDTH
from torch import nn

Y_CONSTANT = 16.0  # linear_y bias: gelu(16) = 16 exactly in float32 and float64
GATE_OPEN = 100.0  # gate bias: sigmoid(100) = 1 exactly
FORGET_PARAM = 100.0  # softplus(100) = 100: a = exp(-800) = 0
HOLD_PARAM = -100.0  # softplus(-100) = 3.7e-44: a = 1
# float32 accumulating channel: L = -8 softplus(ACCUMULATE_PARAM) rounds to -2^-25 (1 - 2^-24), so
# exp(L) rounds to exactly 1 and exp(2 L) to 1 - 2^-24: the multiplier sqrt(1 - a^2) is exactly 2^-12
# (checked in tests/test_mamba_hawk.py). A float32 number, so that float64 computes from the same
# value: there a = exp(L) lies just above 1 - 2^-25 and rounds to 1 in a float32 scan (backends/hf.py)
ACCUMULATE_PARAM = -19.40812110900879
ACCUMULATE_SCALE = 2**12  # 1 / the multiplier
# float64 offset channel: softplus(OFFSET_PARAM) = 2^-56, so L = -2^-53, a = exp(L) rounds to
# 1 - 2^-53 and exp(2 L) to 1 - 2^-52: the multiplier is exactly 2^-26. Where h lies in (2^52, 2^53),
# a h rounds to exactly h - 1, which the channel's input makes up (module docstring)
OFFSET_PARAM = -38.816242111356935
OFFSET_GAIN = 2**26  # 1 / the multiplier: what the first step (multiplier 1) gains over the others
OFFSET_BASE = 2**52 + 2**50  # the baseline channel's h at the first step
OFFSET_DRIFT = OFFSET_BASE // OFFSET_GAIN - 1  # what h gains per step beyond the inputs: its input less the decay
VALUE_ROOM = 2**49  # |an offset channel's h - the baseline's| <= VALUE_ROOM, so h stays in (2^52, 2^53)
# the most steps for which the baseline, plus room for the values, stays below 2^53
OFFSET_MAX_LEN = 1 + (2**53 - OFFSET_BASE - VALUE_ROOM - 1) // OFFSET_DRIFT
FLOAT64 = DTYPES.index("float64")  # the planner's row of the float64 errors
RELU_GAP = 0.1701  # max |gelu_tanh(u) - relu(u)|, at u = -0.7525
MAX_SCALE = 2**40  # K of gelu(K u) / K; |K u| <= 2^40 keeps 0.044715 (K u)^3 finite in float32
MAX_SCALED = 2.0**40
DELAY = CONV_WIDTH - 1


def gelu_scale(bound: float, limit: float = MAX_SCALED, cap: int = MAX_SCALE) -> Number:
    """The power of two K for gelu(K u) of a u with |u| <= bound: as large as keeps |K u| <= limit
    (an exact fraction where the bound exceeds the limit)."""
    if bound == 0 or not math.isfinite(bound):
        return ONE * cap
    k = math.floor(math.log2(limit / bound))
    if 2.0**k >= cap:
        return ONE * cap
    return ONE * 2**k if k >= 0 else ONE / 2 ** (-k)


@dataclass
class TChannel:
    """A recurrent-block channel: what ``linear_x`` reads, the conv's lag, its mode (forget, hold,
    accumulate and first in float32, offset and baseline in float64), and where ``linear_out``
    writes h (unit, weight)."""

    reads: dict[int, Number]
    bias: Number = ZERO
    lag: int = 0
    mode: str = "forget"
    writes: list[tuple[int, Number]] = field(default_factory=list)


@dataclass
class MChannel:
    """An MLP channel: gelu(gate) * up, written to units."""

    gate: dict[int, Number]
    gate_bias: Number
    up: dict[int, Number]
    up_bias: Number
    writes: list[tuple[int, Number]] = field(default_factory=list)


@dataclass
class Step:
    what: str
    kind: str  # "temporal" or "mlp"
    channels: list
    width: int
    box: list[float]  # bounds on |output units|
    out_bias: dict[int, Number] = field(default_factory=dict)
    facts: UnitFacts | None = None


def _through_temporal(width: int, box: list[float]) -> Step:
    return Step("pass", "temporal", [TChannel({j: ONE}, writes=[(j, ONE)]) for j in range(width)], width, box)


def mlp_pair(reads: dict[int, Number], bias: Number, unit: int, bound: float) -> list[MChannel]:
    """``(gelu(K v) - gelu(-K v)) / K`` for ``v = reads . x + bias`` (|v| <= ``bound``), written
    to ``unit`` as v (exact as real numbers)."""
    scale = gelu_scale(bound, MAX_SCALED, MAX_SCALE)
    return [MChannel({j: mul(w, s * scale) for j, w in reads.items()}, mul(bias, s * scale), {}, ONE, [(unit, s / scale)])
            for s in (ONE, -ONE)]


def _through_mlp(width: int, box: list[float]) -> Step:
    return Step("pass", "mlp", [c for j in range(width) for c in mlp_pair({j: ONE}, ZERO, j, box[j])], width, box)


class _HawkPlanner(_Planner):
    def __init__(self, model: LayeredModel, options: Options):
        super().__init__(model, options)
        self.steps: list[Step] = []
        self.layer_steps: list[Step] = []  # per layer, the step whose output holds it (in its first units)
        self.dtype = options.dtype  # the accumulators' construction depends on it

    def _out_box(self, i: int) -> list[float]:
        return [max(-lo, hi) for lo, hi in self._bounds(f"layer{i}")]

    def plan_steps(self) -> list[Step]:
        for i, layer in enumerate(self.model.layers):
            getattr(self, f"_h_{layer.kind}")(i, layer)
            self.steps[-1].facts = self._facts(f"layer{i}")
            self.layer_steps.append(self.steps[-1])
        return self.steps

    def _h_affine(self, i: int, layer: Layer) -> None:
        W, b = layer.attrs["W"], layer.attrs["b"]
        channels = [TChannel(_row(W, u), b[u], writes=[(u, ONE)]) for u in range(layer.width)]
        self.steps.append(Step(f"layer {i}: affine", "temporal", channels, layer.width, self._out_box(i)))
        self._linear_errors(i, layer)

    def _h_relu(self, i: int, layer: Layer) -> None:
        W, b = layer.attrs["W"], layer.attrs["b"]
        channels, scales = [], {}
        for u, (lo, hi) in enumerate(self._bounds(f"layer{i}/in")):
            if hi <= 0:
                continue
            scales[u] = gelu_scale(max(-lo, hi), MAX_SCALED, MAX_SCALE)
            channels.append(MChannel(_row(W, u, scales[u]), mul(b[u], scales[u]), {}, ONE, [(u, ONE / scales[u])]))
        self.steps.append(Step(f"layer {i}: relu", "mlp", channels, layer.width, self._out_box(i)))
        self._relu_errors(i, layer, scales, RELU_GAP)

    def _h_gate(self, i: int, layer: Layer) -> None:
        a = layer.attrs
        p_max, q_max = self._factor_magnitudes(i)
        channels = []
        for u in range(layer.width):
            scale = gelu_scale(p_max[u], MAX_SCALED, MAX_SCALE)
            for s in (ONE, -ONE):
                channels.append(MChannel(_row(a["W"], u, s * scale), mul(a["b"][u], s * scale), _row(a["W2"], u), a["b2"][u],
                                         [(u, s / scale)]))
        self.steps.append(Step(f"layer {i}: gate", "mlp", channels, layer.width, self._out_box(i)))
        self._gate_errors(i, layer)

    def _h_state(self, i: int, layer: Layer) -> None:
        state = self.states[i]
        box = self._input_box(i)
        width_in = len(box)
        copies = self._h_delays(i, box, state.lags)
        channels = []
        baseline = TChannel({}, ONE * OFFSET_BASE, 0, "baseline")  # float64: one for the block's accumulators
        # per dtype: what the accumulators add to the error, and what their readout adds up
        added, readout = np.zeros((len(DTYPES), layer.width)), np.zeros((len(DTYPES), layer.width))
        for u in range(layer.width):
            for k in range(max(len(state.taps), CONV_WIDTH)):
                reads = _row(state.taps[k], u) if k < len(state.taps) else {}
                bias = state.warmup[k][u] if k < CONV_WIDTH else ZERO
                if not reads and bias == 0:
                    continue
                copy = min(k // DELAY, copies - 1)
                shifted = {j + copy * width_in: w for j, w in reads.items()}
                channels.append(TChannel(shifted, bias, k - copy * DELAY, "forget", [(u, ONE)]))
            if u not in state.hold_units():
                continue
            reads, slope = _row(state.hold, u), state.slope[u]
            if self.dtype == "float32":
                big = {j: mul(w, ACCUMULATE_SCALE) for j, w in reads.items()}
                channels.append(TChannel(big, mul(slope, ACCUMULATE_SCALE), 0, "accumulate", [(u, ONE)]))
                channels.append(TChannel({}, ONE, 0, "first"))  # 1 at the first step: closes the accumulator's input gate
                channels.append(TChannel(reads, slope, 0, "hold", [(u, ONE)]))
                continue
            self._check_offset_len(layer, u)
            bound = _magnitude(reads, slope, box)
            lam = gelu_scale(bound * (OFFSET_GAIN + self.max_len), VALUE_ROOM, MAX_SCALE)
            gain = lam * OFFSET_GAIN
            channels.append(TChannel({j: mul(w, gain) for j, w in reads.items()}, add(mul(slope, gain), OFFSET_BASE), 0,
                                     "offset", [(u, ONE / lam)]))
            channels.append(TChannel(reads, slope, 0, "hold", [(u, ONE - OFFSET_GAIN)]))  # less the first step's extra
            baseline.writes.append((u, -ONE / lam))
            added[FLOAT64, u] = self._offset_error(i, reads, slope, bound, lam)
            readout[FLOAT64, u] = 2 * 2.0**53 / float(lam) + OFFSET_GAIN * bound  # the two offset channels, the hold
        if baseline.writes:
            channels.append(baseline)
        out_bias = {u: v for u, v in enumerate(state.offset) if v != 0}
        self.steps.append(Step(f"layer {i}: state", "temporal", channels, layer.width, self._out_box(i), out_bias))
        self._state_errors(i, added, readout)

    def _check_offset_len(self, layer: Layer, u: int) -> None:
        if self.max_len > OFFSET_MAX_LEN:
            # the unit's program node, or (diagonalize's step counter has none) the state it counts for
            node = next((unit.node for unit in (layer.units[u], *layer.units) if unit.node is not None), None)
            raise LsrlError(
                f"--max-len {self.max_len} needs the hawk target's float64 accumulators to count {self.max_len} steps, "
                f"which they do exactly for at most {OFFSET_MAX_LEN} steps (limit {OFFSET_MAX_LEN}); give a smaller "
                f"--max-len, or compile for float32", node=node)

    def _offset_error(self, i: int, reads: dict[int, Number], slope: Number, bound: float, lam: Number) -> float:
        """What a float64 offset channel and its readout add to the error of an accumulator of
        ``v = reads . x + slope`` (|v| <= ``bound``): nothing where every ``lam v`` is an integer
        computed exactly; else the rounding of ``linear_x`` (``n + 1`` terms, below 2^53 each) at
        every step and of h (0.5, h's spacing being 1) at every step after the first, in units of
        ``lam``, and the hold's error times the first step's extra ``2^26``."""
        source = f"layer{i - 1}" if i else "x"
        exact = math.isfinite(bound) and lam >= 1 and is_integer(slope) and all(
            is_integer(w) and self.integer[source][j] and self.error[FLOAT64, j] == 0 for j, w in reads.items())
        if exact:
            return 0.0
        terms = len(reads) + 1
        per_step = 0.5 + 2 * terms / OFFSET_GAIN
        return (2 * terms + (self.max_len - 1) * per_step) / float(lam) + OFFSET_GAIN * terms * UNIT_ROUNDOFF["float64"] * bound

    def _h_delays(self, i: int, box: list[float], lags: int) -> int:
        width, copies = len(box), 1
        while copies * DELAY < lags:
            channels = [TChannel({j: ONE}, writes=[(j, ONE)]) for j in range(copies * width)]
            last = (copies - 1) * width
            channels += [TChannel({last + j: ONE}, ZERO, DELAY, "forget", [(copies * width + j, ONE)]) for j in range(width)]
            copies += 1
            facts = self._facts(f"layer{i - 1}" if i else "x")
            self.steps.append(Step(f"layer {i}: delay by {DELAY} steps", "temporal", channels, copies * width, box * copies,
                                   facts=UnitFacts(facts.box * copies, facts.exact * copies)))
        return copies


def pair_steps(steps: list[Step], d_in: int, input_box: list[float],
               through: Callable[[str, int, list[float]], Any] = None) -> list[tuple[Any, Any]]:
    """Stack layers (recurrent block, MLP block), with ``through(kind, width, box)`` where the
    program has none: by default a block that passes its input on."""
    through = through or (lambda kind, width, box: (_through_temporal if kind == "temporal" else _through_mlp)(width, box))
    layers, k = [], 0
    width, box = d_in, input_box
    while k < len(steps):
        step = steps[k]
        if step.kind == "temporal":
            if k + 1 < len(steps) and steps[k + 1].kind == "mlp":
                layers.append((step, steps[k + 1]))
                k += 2
            else:
                layers.append((step, through("mlp", step.width, step.box)))
                k += 1
        else:
            layers.append((through("temporal", width, box), step))
            k += 1
        width, box = steps[k - 1].width, steps[k - 1].box
    return layers


# --- weights ------------------------------------------------------------------------------------------------
MODE_PARAMS = {"forget": FORGET_PARAM, "first": FORGET_PARAM, "hold": HOLD_PARAM, "accumulate": ACCUMULATE_PARAM,
               "offset": OFFSET_PARAM, "baseline": OFFSET_PARAM}


HEAD = 2  # RG-LRU gate block width: an accumulating channel (even slot) and its first-step channel
FIRST_GATE = -400.0  # input gate weight on the first-step channel: sigmoid(100 - 400) = 5e-131 (float32: 0)


def slots(step: Step) -> list[int]:
    """The RG-LRU slot of each channel: an accumulating channel at an even slot, its first-step
    channel next."""
    out, slot = [], 0
    for ch in step.channels:
        if ch.mode == "accumulate" and slot % 2:
            slot += 1
        out.append(slot)
        slot += 1
    return out


def temporal_tensors(step: Step, d_model: int, lru: int, accumulate_tap: float = 1.0) -> dict[str, np.ndarray]:
    """The reference parameters of one recurrent block; ``accumulate_tap`` is the convolution tap
    of the accumulating channels (``--format hf``: what makes up float64's multiplier, backends/hf.py)."""
    lx, lx_b = np.zeros((lru, d_model)), np.zeros(lru)
    conv = np.zeros((lru, 1, CONV_WIDTH))
    out, out_b = np.zeros((d_model, lru)), np.zeros(d_model)
    r_param = np.full(lru, FORGET_PARAM)
    heads = lru // HEAD
    in_w = np.zeros((heads, HEAD, HEAD))
    for c, ch in zip(slots(step), step.channels):
        for j, w in ch.reads.items():
            lx[c, j] = float(w)
        lx_b[c] = float(ch.bias)
        conv[c, 0, CONV_WIDTH - 1 - ch.lag] = accumulate_tap if ch.mode == "accumulate" else 1.0
        if ch.mode == "first":  # 1 at the first step, 0 after (the conv's zero padding)
            conv[c, 0, CONV_WIDTH - 2] = -1.0
        if ch.mode == "accumulate":  # gate input 100 - 400 f_t: closed at the first step, open after
            in_w[c // HEAD, 1, 0] = FIRST_GATE
        r_param[c] = MODE_PARAMS[ch.mode]
        for unit, w in ch.writes:
            out[unit, c] += float(w) / Y_CONSTANT
    for unit, v in step.out_bias.items():
        out_b[unit] = float(v)
    return {
        "linear_y.weight": np.zeros((lru, d_model)), "linear_y.bias": np.full(lru, Y_CONSTANT),
        "linear_x.weight": lx, "linear_x.bias": lx_b, "conv_1d.weight": conv, "conv_1d.bias": np.zeros(lru),
        "rg_lru.recurrent_param": r_param, "rg_lru.input_gate_weight": in_w,
        "rg_lru.input_gate_bias": np.full((heads, HEAD), GATE_OPEN),
        "rg_lru.recurrent_gate_weight": np.zeros((heads, HEAD, HEAD)),
        "rg_lru.recurrent_gate_bias": np.full((heads, HEAD), GATE_OPEN), "linear_out.weight": out, "linear_out.bias": out_b,
    }


def mlp_tensors(step: Step, d_model: int, inter: int) -> dict[str, np.ndarray]:
    g, g_b, up, up_b = np.zeros((inter, d_model)), np.zeros(inter), np.zeros((inter, d_model)), np.zeros(inter)
    down, down_b = np.zeros((d_model, inter)), np.zeros(d_model)
    for c, ch in enumerate(step.channels):
        for j, w in ch.gate.items():
            g[c, j] = float(w)
        g_b[c] = float(ch.gate_bias)
        for j, w in ch.up.items():
            up[c, j] = float(w)
        up_b[c] = float(ch.up_bias)
        for unit, w in ch.writes:
            down[unit, c] += float(w)
    for unit, v in step.out_bias.items():
        down_b[unit] = float(v)
    return {"gate_proj.weight": g, "gate_proj.bias": g_b, "up_proj.weight": up, "up_proj.bias": up_b,
            "down_proj.weight": down, "down_proj.bias": down_b}


# --- the modules a user runs ------------------------------------------------------------------------------
class RGLRU(nn.Module):
    """The RG-LRU with the reference parameters (block-diagonal gates with ``heads`` blocks),
    computed in the module's dtype."""

    def __init__(self, lru_width: int, heads: int):
        super().__init__()
        self.heads, self.block = heads, lru_width // heads
        self.recurrent_param = nn.Parameter(torch.zeros(lru_width))
        self.input_gate_weight = nn.Parameter(torch.zeros(heads, self.block, self.block))
        self.input_gate_bias = nn.Parameter(torch.zeros(heads, self.block))
        self.recurrent_gate_weight = nn.Parameter(torch.zeros(heads, self.block, self.block))
        self.recurrent_gate_bias = nn.Parameter(torch.zeros(heads, self.block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, time, lru]
        batch, steps, width = x.shape
        heads = x.reshape(batch * steps, self.heads, self.block).permute(1, 0, 2)
        gate_x = torch.baddbmm(self.input_gate_bias[:, None, :], heads, self.input_gate_weight)
        gate_x = torch.sigmoid(gate_x.transpose(0, 1).reshape(batch, steps, width))
        gate_a = torch.baddbmm(self.recurrent_gate_bias[:, None, :], heads, self.recurrent_gate_weight)
        gate_a = torch.sigmoid(gate_a.transpose(0, 1).reshape(batch, steps, width))
        log_a = -8.0 * gate_a * F.softplus(self.recurrent_param)
        a, a_square = torch.exp(log_a), torch.exp(2 * log_a)
        multiplier = torch.sqrt(1 - a_square)
        multiplier[:, 0] = 1  # the first step (segment position 0) resets: multiplier 1, a 0
        drive = x * gate_x * multiplier
        out = torch.empty_like(drive)
        h = drive[:, 0]
        out[:, 0] = h
        for t in range(1, steps):
            h = a[:, t] * h + drive[:, t]
            out[:, t] = h
        return out


class RecurrentBlock(nn.Module):
    def __init__(self, d_model: int, lru_width: int, heads: int, conv_width: int = CONV_WIDTH):
        super().__init__()
        self.linear_y = nn.Linear(d_model, lru_width)
        self.linear_x = nn.Linear(d_model, lru_width)
        self.linear_out = nn.Linear(lru_width, d_model)
        self.conv_1d = nn.Conv1d(lru_width, lru_width, conv_width, groups=lru_width, padding=conv_width - 1)
        self.rg_lru = RGLRU(lru_width, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.linear_y(x), approximate="tanh")
        h = self.rg_lru(causal_conv(self.conv_1d, self.linear_x(x)))
        return self.linear_out(h * y)


class Mlp(nn.Module):
    def __init__(self, d_model: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, intermediate)
        self.up_proj = nn.Linear(d_model, intermediate)
        self.down_proj = nn.Linear(intermediate, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class HawkStack(CompiledStack):
    """The compiled model: (recurrent block, MLP block) pairs chained directly (no residual, no norm)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.d_in, self.d_out, self.d_model = config["d_in"], config["d_out"], config["hidden_size"]
        lru, heads, inter = config["lru_width"], config["num_attention_heads"], config["intermediate_size"] // 2
        self.layers = nn.ModuleList(
            nn.ModuleDict({"temporal_block": RecurrentBlock(self.d_model, lru, heads, config["conv1d_width"]),
                           "mlp_block": Mlp(self.d_model, inter)})
            for _ in range(config["num_hidden_layers"])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, self.d_model - self.d_in))
        for layer in self.layers:
            x = layer["mlp_block"](layer["temporal_block"](x))
        return x[..., : self.d_out]


class HawkTarget(DiagonalTarget):
    name = "hawk"
    description = "a stack of Hawk blocks (recurrentgemma / transformers RecurrentGemma parameter names)"
    stack_class = HawkStack
    dtype_specific = True  # the accumulators' weights

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        original, model = model, self.diagonal(model, options)
        if options.format is not None:
            # transformers scans in float32 in every dtype: the float32 accumulators (backends/hf.py)
            planner = _HawkPlanner(model, replace(options, dtype="float32"))
            steps = planner.plan_steps()
            layers = pair_steps(steps, model.d_in, planner._input_box(0), through=lambda *_: None)
            bound = planner.bounds()["float32"]
            from lsrl.backends.hf import build_hawk

            return self.checkpoint(model, options, lambda vocab, loudest: build_hawk(layers, vocab, bound, loudest), planner)
        planner = _HawkPlanner(model, options)
        steps = planner.plan_steps()
        layers = pair_steps(steps, model.d_in, planner._input_box(0))
        d_model = max([model.d_in] + [s.width for pair in layers for s in pair])
        lru = max([1] + [slots(t)[-1] + 1 for t, _ in layers if t.channels])
        lru += lru % HEAD
        inter = max([1] + [len(m.channels) for _, m in layers])
        tensors = {}
        for i, (temporal, mlp) in enumerate(layers):
            for name, value in temporal_tensors(temporal, d_model, lru).items():
                tensors[f"layers.{i}.temporal_block.{name}"] = value
            for name, value in mlp_tensors(mlp, d_model, inter).items():
                tensors[f"layers.{i}.mlp_block.{name}"] = value
        config = base_config(self, model, options)
        config.update({
            "hidden_size": d_model, "lru_width": lru, "intermediate_size": 2 * inter, "num_attention_heads": lru // HEAD,
            "conv1d_width": CONV_WIDTH, "hidden_activation": "gelu_pytorch_tanh", "num_hidden_layers": len(layers),
            "block_types": ["recurrent"], "residual": False, "norm": None,
            "blocks": [f"{t.what} / {m.what}" for t, m in layers],
        })
        figures = {
            "blocks": len(layers), "d_model": d_model, "lru_width": lru, "intermediate": inter,
            "state_size": lru * len(layers), "conv_state_size": (CONV_WIDTH - 1) * lru * len(layers),
            "parameters": int(sum(v.size for v in tensors.values())),
        }
        compiled = self.compiled(config, tensors, figures, planner, options)
        # stage 2p is pair p's recurrent block, 2p + 1 its MLP block
        stage = {id(step): 2 * p + k for p, pair in enumerate(layers) for k, step in enumerate(pair)}
        compiled.readings = self.readings(original, model, [stage[id(step)] for step in planner.layer_steps])
        return compiled


TARGETS = {"hawk": HawkTarget()}
