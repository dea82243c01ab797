"""The ``mamba`` target: a stack of Mamba (v1) mixer blocks that computes the program.

Weights use the parameterization and names of the reference implementation (mamba_ssm's
``Mamba``, transformers' ``MambaMixer``): ``layers.{i}.mixer.in_proj``, ``conv1d`` (depthwise,
width 4), ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``; ``d_model``, ``d_inner``,
``expand``, ``d_state``, ``d_conv``, ``dt_rank`` in the config. A mixer computes, per channel c,

    u = conv1d(in_proj_x(x))_c,  xc = silu(u),  (dt, B, C) from x_proj(xc), dt = softplus(dt_proj(.))
    h = exp(dt * A_c) h_prev + dt * B * xc,     y = (C . h + D_c xc) * silu(in_proj_z(x)_c)

and ``out_proj`` mixes the channels. The blocks are chained directly: no residual connection and no
RMSNorm (a norm divides by the stream's size, which no later weight can undo exactly; a residual
stream would need every block's output in fresh units). docs/target-mamba-hawk.md has the details.

The construction (every layer of the diagonalized model, ``passes.diagonalize``, is one block;
a state layer whose filter reaches back more than 3 steps gets blocks in front that delay copies
of its input by 3 steps each):

- One channel is the constant 64 (conv bias 64, silu(64) = 64 exactly in float32 and float64);
  ``x_proj`` reads it to make ``B = 1/32`` and ``C = 1`` at every step; ``dt = softplus(32) = 32``
  exactly (softplus returns its input above 20). So ``dt * B = 1`` and the state adds ``xc``.
- A channel holds (``A_log = -64``: ``exp(dt * A)`` rounds to exactly 1) or forgets
  (``A_log = 5``: ``exp(dt * A)`` underflows to exactly 0); ``D = 0``.
- A linear value v passes as a pair of channels silu(v) and silu(-v): silu(v) - silu(-v) = v
  exactly (as real numbers; in floating point up to rounding). The z branch is the constant 64.
- Every silu input is scaled by a power of two K (chosen from the range analysis so that K u stays
  below 2**96; at most 2**80) and the output divided by K. Where |K u| > 40, silu(K u) is exactly
  K u or within 1e-15 of 0, so pairs are exact up to the rounding of v itself.
- A ReLU unit is silu(K u) / K: error at most 0.279 / K, none at u = 0 or |K u| > 40; a gate
  unit p*q is (silu(Kp) - silu(-Kp)) (silu(Jq) - silu(-Jq)) / (K J): four channels, p on the x
  branch, q on the z branch (exact as real numbers).
- A state unit is a pair of holding channels for its accumulator, pairs of forgetting channels on
  the convolution's taps for its filter, and ``out_proj``'s bias for its constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lsrl.backends.layer_ranges import layer_bounds
from lsrl.backends.target import (
    DTYPES,
    UNIT_ROUNDOFF,
    Compiled,
    LayerReading,
    Options,
    Target,
    analysis_range,
    base_config,
    stated_bounds,
)
from lsrl.ir.errors import LsrlError
from lsrl.ir.layered import Layer, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, mul
from lsrl.passes.diagonalize import CONV_WIDTH, NotDiagonal, decompose_all, diagonalize
from lsrl.passes.ranges import INF, Interval
from torch import nn

CONSTANT = 64  # the constant channel's value, and the z branch of pass-through channels
PASS = ONE * CONSTANT  # what silu(z) multiplies a pass-through channel by
STEP = 32  # dt: softplus(32) = 32 exactly (torch's softplus is the identity above 20)
HOLD_A_LOG = -64.0  # exp(32 * -exp(-64)) = 1 exactly
FORGET_A_LOG = 5.0  # exp(32 * -exp(5)) = exp(-4749) = 0 exactly
RELU_GAP = 0.2785  # max |silu(u) - relu(u)|, at u = -1.278
MAX_SCALE = 2**80  # the largest K of silu(K u) / K (|u| up to 2**47 stays finite in float32)
MAX_SCALED = 2.0**96  # |K u| stays below this, far from float32's overflow at 2**128
GATE_SCALE, GATE_SCALED = 2**20, 2.0**48  # the same for each factor of a product
DELAY = CONV_WIDTH - 1  # the most steps one block's convolution reaches back
ROUNDOFF = np.array([UNIT_ROUNDOFF[dtype] for dtype in DTYPES])[:, None]  # per dtype, as errors are
EXACT_SCALE = 1024  # act(K u) / K is relu(u) at nonzero integers u up to exp(-1024) (0 in float64)
FLOAT32 = DTYPES.index("float32")  # the planner's row of the float32 errors
EXTRA_OPS = 8  # rounded operations of a value beyond its weighted sum (activations, scan, output sums)


@dataclass
class Channel:
    """One mixer channel: what its x branch reads (before the convolution, which delays it by
    ``lag`` steps), its z branch (None: the constant 64), whether it holds, and where ``out_proj``
    writes it (output unit, weight on ``y * silu(z)``)."""

    reads: dict[int, Number]
    bias: Number = ZERO
    lag: int = 0
    gate: tuple[dict[int, Number], Number] | None = None
    hold: bool = False
    writes: list[tuple[int, Number]] = field(default_factory=list)


@dataclass(frozen=True)
class UnitFacts:
    """What the planner knows of a block's output units: bounds on their magnitudes, and whether
    each is an integer that float32 computes exactly (what ``--format hf`` may overwrite exactly)."""

    box: list[float]
    exact: list[bool]


@dataclass
class Block:
    """The channels of one mixer block, its output width and ``out_proj``'s bias."""

    what: str
    channels: list[Channel]
    width: int
    out_bias: dict[int, Number] = field(default_factory=dict)
    facts: UnitFacts | None = None


def _row(matrix: Matrix, i: int, scale: Number = ONE) -> dict[int, Number]:
    return {j: mul(w, scale) for j, w in matrix.row_items()[i]}


def _pair(reads: dict[int, Number], bias: Number, unit: int, scale: int, lag: int = 0, hold: bool = False) -> list[Channel]:
    """silu(K v) and silu(-K v), written to ``unit`` as v: silu(a) - silu(-a) = a. Where |K v| > 40
    one of the two is exactly K v and the other below 1e-15 in float64 (float32: 0), so a large K
    makes the pair exact up to the rounding of v itself."""
    return [
        Channel({j: mul(w, sign * scale) for j, w in reads.items()}, mul(bias, sign * scale), lag, None, hold,
                [(unit, sign / (PASS * scale))])
        for sign in (ONE, -ONE)
    ]


def _spread(matrix: Matrix, error: np.ndarray) -> np.ndarray:
    """Bounds on the errors of ``matrix @ v`` given bounds on v's (last axis; 0 * inf counts as 0)."""
    weights, finite = np.abs(matrix.dense()).T, np.isfinite(error)
    with np.errstate(over="ignore"):  # a bound too large for float64 is infinite, as it should be
        out = np.where(finite, error, 0.0) @ weights
    out[(~finite).astype(float) @ (weights > 0) > 0] = INF
    return out


def _weighted(weights: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """``weights @ box`` for nonnegative weights, with 0 * inf = 0."""
    with np.errstate(invalid="ignore"):
        return np.where(weights > 0, weights * np.array(box), 0.0).sum(axis=1)


def silu_scale(bound: float, limit: float = MAX_SCALED, cap: int = MAX_SCALE) -> Number:
    """The power of two K for silu(K u) of a u with |u| <= bound: as large as keeps |K u| <= limit
    (an exact fraction where the bound exceeds the limit)."""
    if bound == 0 or not math.isfinite(bound):
        return ONE * cap
    k = math.floor(math.log2(limit / bound))
    return ONE * min(cap, 2**k) if k >= 0 else ONE / 2 ** (-k)


def _magnitude(reads: dict[int, Number], bias: Number, box: list[float]) -> float:
    """A bound on |sum_j w_j x_j + b| where |x_j| <= box[j]."""
    return sum(abs(float(w)) * box[j] for j, w in reads.items()) + abs(float(bias))


class _Planner:
    """The blocks of a diagonalized layered model, and the error bounds of the construction for
    inputs in ``analysis_range(options)``."""

    def __init__(self, model: LayeredModel, options: Options):
        self.model = model
        self.states = decompose_all(model)
        low, high = analysis_range(options)
        self.ranges = {"x": [Interval(low, high)] * model.d_in}  # by to_graph's names: layer{i}, layer{i}/in, ...
        self.integer = {"x": [options.integer_inputs] * model.d_in}
        for i, bounds in enumerate(layer_bounds(model, options)):
            self.ranges[f"layer{i}"], self.integer[f"layer{i}"] = bounds.values, bounds.values_integer
            for name, operand, integer in zip(("in", "in2"), bounds.operands, bounds.integer):
                self.ranges[f"layer{i}/{name}"], self.integer[f"layer{i}/{name}"] = operand, integer
        self.max_len = options.max_len
        self.blocks: list[Block] = []
        self.layer_blocks: list[int] = []  # per layer, the block whose output holds it (in its first units)
        self.error = np.zeros((len(DTYPES), model.d_in))  # per dtype, a bound on each unit's error so far

    def bounds(self) -> dict[str, float]:
        """The error bound of the model's outputs, per dtype."""
        return {dtype: float(np.max(self.error[k], initial=0.0)) for k, dtype in enumerate(DTYPES)}

    def _bounds(self, node_name: str) -> list[tuple[float, float]]:
        try:
            return [(float(i.lo), float(i.hi)) for i in self.ranges[node_name]]
        except OverflowError:  # no power-of-two scale of a channel holds such a value in float64
            raise LsrlError(f"the range analysis bounds a value of {node_name} beyond float64's range, which no "
                            "channel of this target holds") from None

    def _input_box(self, i: int) -> list[float]:
        """Bounds on |x_j| for the units layer i reads."""
        return [max(-lo, hi) for lo, hi in self._bounds(f"layer{i - 1}" if i else "x")]

    def loudest_node(self) -> int | None:
        """The program node of the unit whose bound is the largest over every layer."""
        sizes = [(max(-lo, hi), unit.node) for i, layer in enumerate(self.model.layers)
                 for (lo, hi), unit in zip(self._bounds(f"layer{i}"), layer.units) if unit.node is not None]
        return max(sizes, key=lambda size: size[0], default=(0, None))[1]

    def _facts(self, node: str) -> UnitFacts:
        """The facts of the units of graph node ``node`` (``x`` or ``layer{i}``) with the errors so far."""
        box = [max(-lo, hi) for lo, hi in self._bounds(node)]
        return UnitFacts(box, [bool(e == 0 and integer) for e, integer in zip(self.error[FLOAT32], self.integer[node])])

    def _pairs(self, i: int, matrix: Matrix, bias: tuple) -> list[Channel]:
        box = self._input_box(i)
        channels = []
        for u in range(matrix.rows):
            reads = _row(matrix, u)
            channels += _pair(reads, bias[u], u, silu_scale(_magnitude(reads, bias[u], box)))
        return channels

    def plan(self) -> list[Block]:
        for i, layer in enumerate(self.model.layers):
            getattr(self, f"_{layer.kind}")(i, layer)
            self.blocks[-1].facts = self._facts(f"layer{i}")
            self.layer_blocks.append(len(self.blocks) - 1)
        return self.blocks

    # --- error bounds: what each layer adds, per dtype --------------------------------------------
    def _settle(self, node: str, error: np.ndarray, magnitude: np.ndarray, terms: np.ndarray) -> np.ndarray:
        """``error`` plus the rounding of each unit of the graph node ``node``: none where its value
        is an integer below ``1 / u`` computed from values without error (integer arithmetic is
        exact in floating point), else ``(terms + EXTRA_OPS) u magnitude`` (a sum of ``terms``
        products with sizes adding up to ``magnitude``)."""
        integer = np.array(self.integer[node], dtype=bool)
        exact = integer & (magnitude * ROUNDOFF < 1) & (error == 0)
        with np.errstate(invalid="ignore"):  # inf * 0
            rounding = np.nan_to_num((terms + EXTRA_OPS) * ROUNDOFF * magnitude, nan=INF)
        return error + np.where(exact, 0.0, rounding)

    def _combination(self, i: int, node: str, W: Matrix, b: Sequence[Number]) -> np.ndarray:
        """The errors of ``W x + b`` (the graph node ``node``) for the input of layer i."""
        weights = np.abs(W.dense())
        magnitude = _weighted(weights, self._input_box(i)) + np.abs([float(v) for v in b])
        return self._settle(node, _spread(W, self.error), magnitude, (weights > 0).sum(axis=1))

    def _linear_errors(self, i: int, layer: Layer) -> None:
        self.error = self._combination(i, f"layer{i}", layer.attrs["W"], layer.attrs["b"])

    def _relu_errors(self, i: int, layer: Layer, scales: dict[int, Number], gap: float) -> None:
        """Unit u is ``act(K u) / K`` with K = ``scales[u]``: its input's error plus the
        activation's ``gap / K``, except at an integer input computed exactly with K >= EXACT_SCALE."""
        pre = self._combination(i, f"layer{i}/in", layer.attrs["W"], layer.attrs["b"])
        integer = self.integer[f"layer{i}/in"]
        added = np.zeros_like(pre)
        for u, scale in scales.items():
            exact = (pre[:, u] == 0) & integer[u] & (scale >= EXACT_SCALE)
            added[:, u] = np.where(exact, 0.0, gap / float(scale))
        self.error = pre + added

    def _factor_magnitudes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on |p| and |q| of the gate layer ``i``'s factors, unit by unit."""
        return tuple(np.array([max(-lo, hi) for lo, hi in self._bounds(f"layer{i}/{name}")]) for name in ("in", "in2"))

    def _gate_errors(self, i: int, layer: Layer) -> None:
        """The error of ``p * q`` from the errors of its factors (exact products of approximate
        values), and the product's rounding."""
        a = layer.attrs
        p_max, q_max = self._factor_magnitudes(i)
        p_err = self._combination(i, f"layer{i}/in", a["W"], a["b"])
        q_err = self._combination(i, f"layer{i}/in2", a["W2"], a["b2"])
        # inf * 0: no error on an unbounded factor; an overflow: an infinite (unproven) error bound
        with np.errstate(invalid="ignore", over="ignore"):
            terms = [np.where(q_err > 0, p_max * q_err, 0), np.where(p_err > 0, q_max * p_err, 0), p_err * q_err]
            self.error = self._settle(f"layer{i}", sum(terms), p_max * q_max, np.ones(layer.width))

    def _state_errors(self, i: int, added: np.ndarray | float = 0.0, readout: np.ndarray | float = 0.0) -> None:
        """A state unit is its filter of the input, max_len times its accumulator's, its constant,
        and (hawk, per dtype) what its accumulator's channels ``added`` to the error, and the sizes
        of the terms their ``readout`` adds up beyond those."""
        state = self.states[i]
        box = self._input_box(i)
        weights = sum(np.abs(t.dense()) for t in state.taps) + self.max_len * np.abs(state.hold.dense())
        constant = np.abs([float(v) for v in state.offset]) + self.max_len * np.abs([float(v) for v in state.slope])
        constant += sum(np.abs([float(v) for v in warmup]) for warmup in state.warmup)
        error = sum(_spread(t, self.error) for t in state.taps) + self.max_len * _spread(state.hold, self.error) + added
        magnitude = _weighted(weights, box) + constant + readout
        self.error = self._settle(f"layer{i}", error, magnitude, (weights > 0).sum(axis=1) + len(state.taps))

    # --- one method per layer kind ----------------------------------------------------------------
    def _affine(self, i: int, layer: Layer) -> None:
        self.blocks.append(Block(f"layer {i}: affine", self._pairs(i, layer.attrs["W"], layer.attrs["b"]), layer.width))
        self._linear_errors(i, layer)

    def _relu(self, i: int, layer: Layer) -> None:
        W, b = layer.attrs["W"], layer.attrs["b"]
        channels, scales = [], {}
        for u, (lo, hi) in enumerate(self._bounds(f"layer{i}/in")):
            # a unit that is never negative still takes a channel of its own rather than the exact
            # pair: the program relies on the ReLU to clamp the rounding noise of values that are 0
            if hi <= 0:
                continue  # always 0
            scales[u] = silu_scale(max(-lo, hi))
            channels.append(Channel(_row(W, u, scales[u]), mul(b[u], scales[u]), writes=[(u, ONE / (PASS * scales[u]))]))
        self.blocks.append(Block(f"layer {i}: relu", channels, layer.width))
        self._relu_errors(i, layer, scales, RELU_GAP)

    def _gate(self, i: int, layer: Layer) -> None:
        a = layer.attrs
        p_max, q_max = self._factor_magnitudes(i)
        channels = []
        for u in range(layer.width):
            p_scale = silu_scale(p_max[u], GATE_SCALED, GATE_SCALE)
            q_scale = silu_scale(q_max[u], GATE_SCALED, GATE_SCALE)
            for sx in (ONE, -ONE):
                for sz in (ONE, -ONE):
                    gate = (_row(a["W2"], u, sz * q_scale), mul(a["b2"][u], sz * q_scale))
                    writes = [(u, sx * sz / (p_scale * q_scale))]
                    channels.append(Channel(_row(a["W"], u, sx * p_scale), mul(a["b"][u], sx * p_scale), gate=gate, writes=writes))
        self.blocks.append(Block(f"layer {i}: gate", channels, layer.width))
        self._gate_errors(i, layer)

    def _state(self, i: int, layer: Layer) -> None:
        state = self.states[i]
        box = self._input_box(i)
        width_in = len(box)
        copies = self._delay_blocks(i, box, state.lags)
        channels = []
        for u in range(layer.width):
            for k in range(max(len(state.taps), CONV_WIDTH)):
                reads = _row(state.taps[k], u) if k < len(state.taps) else {}
                bias = state.warmup[k][u] if k < CONV_WIDTH else ZERO
                if not reads and bias == 0:
                    continue
                copy = min(k // DELAY, copies - 1)
                scale = silu_scale(_magnitude(reads, bias, box))
                shifted = {j + copy * width_in: w for j, w in reads.items()}
                channels += _pair(shifted, bias, u, scale, lag=k - copy * DELAY)
            if u in state.hold_units():
                reads = _row(state.hold, u)
                scale = silu_scale(_magnitude(reads, state.slope[u], box) * self.max_len)
                channels += _pair(reads, state.slope[u], u, scale, hold=True)
        out_bias = {u: v for u, v in enumerate(state.offset) if v != 0}
        self.blocks.append(Block(f"layer {i}: state", channels, layer.width, out_bias))
        self._state_errors(i)

    def _delay_blocks(self, i: int, box: list[float], lags: int) -> int:
        """Blocks that turn the stream x_t into [x_t, x_{t-3}, x_{t-6}, ...] for a filter of ``lags``
        steps; returns the number of copies."""
        width, copies = len(box), 1
        while copies * DELAY < lags:
            channels = [c for j in range(copies * width) for c in _pair({j: ONE}, ZERO, j, silu_scale(box[j % width]))]
            last = (copies - 1) * width
            for j in range(width):
                channels += _pair({last + j: ONE}, ZERO, copies * width + j, silu_scale(box[j]), lag=DELAY)
            copies += 1
            facts = self._facts(f"layer{i - 1}" if i else "x")
            self.blocks.append(Block(f"layer {i}: delay by {DELAY} steps", channels, copies * width,
                                     facts=UnitFacts(facts.box * copies, facts.exact * copies)))
        return copies


# --- weights -------------------------------------------------------------------------------------------------
def block_tensors(block: Block, d_model: int, d_inner: int) -> dict[str, np.ndarray]:
    """The reference parameters of one mixer (names without the ``layers.{i}.mixer.`` prefix)."""
    in_proj, in_bias = np.zeros((2 * d_inner, d_model)), np.zeros(2 * d_inner)
    conv, conv_bias = np.zeros((d_inner, 1, CONV_WIDTH)), np.zeros(d_inner)
    a_log, out_proj, out_bias = np.full((d_inner, 1), FORGET_A_LOG), np.zeros((d_model, d_inner)), np.zeros(d_model)
    x_proj = np.zeros((3, d_inner))  # rows: dt (rank 1), B, C (d_state 1); all read the constant channel 0
    conv_bias[0] = CONSTANT
    x_proj[1, 0], x_proj[2, 0] = 1 / (STEP * CONSTANT), 1 / CONSTANT
    in_bias[d_inner:] = CONSTANT  # z branch of every channel, unless it gates
    for c, channel in enumerate(block.channels, start=1):
        for j, w in channel.reads.items():
            in_proj[c, j] = float(w)
        in_bias[c] = float(channel.bias)
        conv[c, 0, CONV_WIDTH - 1 - channel.lag] = 1.0
        if channel.gate is not None:
            reads, bias = channel.gate
            for j, w in reads.items():
                in_proj[d_inner + c, j] = float(w)
            in_bias[d_inner + c] = float(bias)
        if channel.hold:
            a_log[c, 0] = HOLD_A_LOG
        for unit, w in channel.writes:
            out_proj[unit, c] += float(w)
    for unit, v in block.out_bias.items():
        out_bias[unit] = float(v)
    return {
        "in_proj.weight": in_proj, "in_proj.bias": in_bias, "conv1d.weight": conv, "conv1d.bias": conv_bias,
        "x_proj.weight": x_proj, "dt_proj.weight": np.zeros((d_inner, 1)), "dt_proj.bias": np.full(d_inner, float(STEP)),
        "A_log": a_log, "D": np.zeros(d_inner), "out_proj.weight": out_proj, "out_proj.bias": out_bias,
    }


# --- the modules a user runs ------------------------------------------------------------------------------
def causal_conv(conv: nn.Conv1d, u: torch.Tensor) -> torch.Tensor:
    """``conv``'s depthwise causal convolution of ``u`` [batch, time, channels] (what
    ``conv(u.transpose(1, 2))[..., :time]`` computes with padding ``width - 1``), as a sum of shifted
    copies: torch's grouped conv1d is two orders of magnitude slower on CPU at these sizes."""
    width, steps = conv.weight.shape[-1], u.shape[1]
    padded = F.pad(u, (0, 0, width - 1, 0))
    out = conv.bias.expand_as(u)
    for j in range(width):  # weight j reads the input width - 1 - j steps back
        out = out + conv.weight[:, 0, j] * padded[:, j : j + steps]
    return out


class MambaMixer(nn.Module):
    """A Mamba (v1) mixer with the reference parameters, computed as the reference's sequential
    scan does (in the module's dtype throughout)."""

    def __init__(self, d_model: int, d_inner: int, d_state: int = 1, d_conv: int = CONV_WIDTH, dt_rank: int = 1):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=True)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.zeros(d_inner, d_state))
        self.D = nn.Parameter(torch.zeros(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, time, d_model]
        steps = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        xc = F.silu(causal_conv(self.conv1d, u))
        dt, B, C = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        decay = torch.exp(dt[..., None] * -torch.exp(self.A_log))  # [batch, time, d_inner, d_state]
        drive = dt[..., None] * B[:, :, None, :] * xc[..., None]
        states = torch.empty_like(drive)
        h = torch.zeros_like(decay[:, 0])
        for t in range(steps):  # the sequential scan, in the reference's order of operations
            h = decay[:, t] * h + drive[:, t]
            states[:, t] = h
        y = (states * C[:, :, None, :]).sum(-1) + xc * self.D
        return self.out_proj(y * F.silu(z))


class CompiledStack(nn.Module):
    """A stack of blocks built from a compiled model's config (mamba, hawk)."""

    @classmethod
    def from_compiled(cls, config: dict[str, Any], tensors: dict[str, np.ndarray], dtype: torch.dtype) -> "CompiledStack":
        stack = cls(config).to(dtype)
        stack.load_state_dict({k: torch.as_tensor(v, dtype=dtype) for k, v in tensors.items()})
        return stack


class MambaStack(CompiledStack):
    """The compiled model: mixers chained directly (no residual, no norm), the input zero-padded
    to ``d_model`` and the output the first ``d_out`` units of the last mixer's."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.d_in, self.d_out, self.d_model = config["d_in"], config["d_out"], config["d_model"]
        dims = (config["d_model"], config["d_inner"], config["d_state"], config["d_conv"], config["dt_rank"])
        self.layers = nn.ModuleList(nn.ModuleDict({"mixer": MambaMixer(*dims)}) for _ in range(config["n_layer"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, self.d_model - self.d_in))
        for layer in self.layers:
            x = layer["mixer"](x)
        return x[..., : self.d_out]


class DiagonalTarget(Target):
    """What the diagonal targets (mamba, hawk) share: the diagonalize pass, running their pure
    PyTorch stack (``stack_class``), the error bound stated in the config, and ``--format hf``
    (backends/hf.py)."""

    bounded_length = True
    formats = ("hf",)
    stack_class: type

    def diagonal(self, model: LayeredModel, options: Options) -> LayeredModel:
        try:
            return diagonalize(model, options.max_len)
        except NotDiagonal as e:
            node = e.units[0].node if e.units else None
            raise LsrlError(f"the {self.name} target cannot hold {e}", node=node) from None

    @staticmethod
    def readings(model: LayeredModel, diagonal: LayeredModel, stages: Sequence[int]) -> list[LayerReading | None]:
        """Where each hidden layer of ``model`` is in the stack: layer j of ``diagonal`` in the first
        units of the output of stage ``stages[j]``; a layer that ``diagonalize`` rewrote (a state
        looked up over the step, and the layer that reads it) is held by no stage alone (None)."""
        stage = {id(layer): k for layer, k in zip(diagonal.layers, stages)}
        return [LayerReading(stage[id(layer)], Matrix.eye(layer.width), (ZERO,) * layer.width) if id(layer) in stage
                else None for layer in model.layers[:-1]]

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        if compiled.checkpoint is not None:
            from lsrl.backends import hf

            return hf.run(compiled, inputs, dtype)
        stack = self.stack_class.from_compiled(compiled.config, compiled.tensors, getattr(torch, dtype))
        # silu/gelu of large negative inputs leave subnormal numbers, which make CPU arithmetic
        # ~100x slower; flushing them to 0 changes values by less than 1e-307 (float32: 1e-37)
        torch.set_flush_denormal(True)
        try:
            with torch.no_grad():
                out = stack(torch.as_tensor(inputs, dtype=getattr(torch, dtype)))
        finally:
            torch.set_flush_denormal(False)
        return out.double().numpy()

    def compiled(self, config: dict[str, Any], tensors: dict[str, np.ndarray], figures: dict[str, Any],
                 planner: _Planner, options: Options) -> Compiled:
        """The compiled model, with the planner's error bounds per dtype it runs in (the
        approximations' errors, and the rounding, propagated with the range analysis's bounds)
        stated in the config and figures (the driver judges them: ``backends.verdict``)."""
        bounds = {dtype: bound for dtype, bound in planner.bounds().items() if dtype in self.dtypes(options.dtype, options.format)}
        return self._stated(Compiled(self.name, config, tensors, figures=figures), bounds, options)

    def _stated(self, compiled: Compiled, bounds: dict[str, float], options: Options) -> Compiled:
        compiled.config["error_bound"] = stated_bounds(bounds, options)
        compiled.figures.update({f"error_bound_{dtype}": bound for dtype, bound in bounds.items()})
        return compiled

    def checkpoint(self, model: LayeredModel, options: Options, build: Any, planner: _Planner) -> Compiled:
        """``--format hf``: the checkpoint ``build(vocab, loudest)`` makes of the planned blocks
        (``loudest``: the program node of the largest value, where a norm that cannot stay
        constant is warned about), its bound stated for both dtypes (transformers computes the
        norms and the scans in float32 in both)."""
        from lsrl.backends import hf

        vocab = hf.check_options(options)
        made = build(vocab, planner.loudest_node())
        config = {**base_config(self, model, options), "checkpoint": hf.FORMAT, **made.lsrl}
        compiled = Compiled(self.name, config, made.tensors, warnings=made.warnings, checkpoint=made.config)
        compiled.figures = {**made.figures, "parameters": int(sum(v.size for v in made.tensors.values())),
                            "checkpoint_bytes": len(compiled.weights()), "logit_margin_floor": made.lsrl["logit_margin_floor"]}
        return self._stated(compiled, {dtype: made.bound for dtype in DTYPES}, options)


class MambaTarget(DiagonalTarget):
    name = "mamba"
    description = "a stack of Mamba (v1) mixer blocks (mamba_ssm / transformers parameter names)"
    stack_class = MambaStack

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        original, model = model, self.diagonal(model, options)
        planner = _Planner(model, options)
        blocks = planner.plan()
        if options.format is not None:
            from lsrl.backends.hf import build_mamba

            bound = planner.bounds()["float32"]
            return self.checkpoint(model, options, lambda vocab, loudest: build_mamba(blocks, vocab, bound, loudest), planner)
        d_model = max([model.d_in] + [b.width for b in blocks])
        channels = max(len(b.channels) + 1 for b in blocks)
        expand = math.ceil(channels / d_model)
        d_inner = expand * d_model
        tensors = {}
        for i, block in enumerate(blocks):
            for name, value in block_tensors(block, d_model, d_inner).items():
                tensors[f"layers.{i}.mixer.{name}"] = value
        config = base_config(self, model, options)
        config.update({
            "d_model": d_model, "d_inner": d_inner, "expand": expand, "d_state": 1, "d_conv": CONV_WIDTH,
            "dt_rank": 1, "n_layer": len(blocks), "use_bias": True, "conv_bias": True, "residual": False,
            "norm": None, "blocks": [b.what for b in blocks],
        })
        figures = {
            "blocks": len(blocks), "d_model": d_model, "d_inner": d_inner,
            "state_size": d_inner * len(blocks),  # d_state = 1 number per channel and block
            "conv_state_size": (CONV_WIDTH - 1) * d_inner * len(blocks),
            "parameters": int(sum(v.size for v in tensors.values())),
        }
        compiled = self.compiled(config, tensors, figures, planner, options)
        compiled.readings = self.readings(original, model, planner.layer_blocks)
        return compiled


TARGETS = {"mamba": MambaTarget()}
