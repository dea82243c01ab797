"""The residual stream of ``--format hf`` (backends/hf.py, docs/target-hf.md): where each value the
blocks pass on lives, and the constant slots that keep RMSNorm's computed norm constant.

The mamba and hawk planners' blocks each read the previous block's output units and write their
own. ``Stream.place`` puts a block on the stream: it reads the slots of the units it reads, and
writes each unit it computes into a slot that holds 0, or into one whose old value is an exact
integer no later block reads (the same write takes it off), else into a new slot; a unit that is an
exact copy of one it reads keeps that slot and costs nothing. Slot ``T`` holds the input token,
which the first block reads and clears, and the output token at the end; slot ``Q`` the readout's
constant. The constant slots come after the program's and hold ``2^(c + i)``, one per unit of each
base-4 digit of the width ``D``, so that their squares add up to ``4^c D``; ``c`` is chosen so that
the program's squares stay below ``2^-26`` of that, which float32 then rounds away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

from lsrl.backends.mamba import Block, UnitFacts, _pair, silu_scale
from lsrl.ir.numbers import ONE, ZERO, Number

T, Q = 0, 1  # the token slot (input, then output) and the readout's constant slot
RESERVED = 2
READOUT_CONSTANT = 1  # what Q holds after the first block
NORM_ROOM = 26  # the program's squares add up to at most 2^-26 of the constant slots'
MIN_EXPONENT = 10  # c: the mean 4^c is at least 2^20, where float32 drops eps = 1e-5
MAX_SQUARES = 2.0**126  # the constants' squares add up to less (float32 holds below 2^128)


@dataclass
class Held:
    """A nonzero value a slot holds: a bound on its magnitude, and whether it is an integer that
    float32 holds exactly (so that a write can take it off exactly)."""

    bound: float
    exact: bool


class Parts:
    """How one kind of block (Mamba mixer, Hawk recurrent block, Hawk MLP) reads, writes and copies."""

    def copies(self, block: Any) -> dict[int, int]:
        """Output units that are exact copies of an input unit: unit -> input unit."""
        raise NotImplementedError

    def remap(self, channel: Any, reads: Callable[[dict], dict], writes: dict[int, int]) -> Any:
        raise NotImplementedError

    def passing(self, reads: dict[int, Number], bias: Number, slot: int, bound: float) -> list:
        """Channels that write ``reads . h + bias`` (|.| <= bound) into ``slot``."""
        raise NotImplementedError


def _sole_writers(block: Any) -> dict[int, list]:
    """The channels writing each unit, for units that no channel writes together with another unit."""
    writers: dict[int, list] = {}
    shared: set[int] = set()
    for channel in block.channels:
        for unit, _ in channel.writes:
            writers.setdefault(unit, []).append(channel)
        if len(channel.writes) > 1:
            shared |= {u for u, _ in channel.writes}
    return {u: cs for u, cs in writers.items() if u not in shared and u not in block.out_bias}


def _pair_copy(channels: list, reads_of: Callable[[Any], dict], product: Number) -> int | None:
    """The input unit a pair of channels copies (``act(K x) w - act(-K x) w`` with K w = ``product``)."""
    if len(channels) != 2:
        return None
    found = set()
    for channel in channels:
        reads = reads_of(channel)
        if len(reads) != 1:
            return None
        (j, w), = reads.items()
        if w * channel.writes[0][1] != product:
            return None
        found.add((j, w > 0))
    units = {j for j, _ in found}
    return units.pop() if len(units) == 1 and len(found) == 2 else None


class MambaParts(Parts):
    def copies(self, block: Block) -> dict[int, int]:
        from lsrl.backends.mamba import PASS

        out = {}
        for unit, channels in _sole_writers(block).items():
            if all(c.bias == 0 and c.lag == 0 and c.gate is None and not c.hold for c in channels):
                j = _pair_copy(channels, lambda c: c.reads, ONE / PASS)
                if j is not None:
                    out[unit] = j
        return out

    def remap(self, channel, reads, writes):
        gate = None if channel.gate is None else (reads(channel.gate[0]), channel.gate[1])
        return replace(channel, reads=reads(channel.reads), gate=gate, writes=[(writes[u], w) for u, w in channel.writes])

    def passing(self, reads, bias, slot, bound):
        return _pair(reads, bias, slot, silu_scale(bound + abs(float(bias))))


class TemporalParts(Parts):
    def copies(self, step) -> dict[int, int]:
        out = {}
        for unit, channels in _sole_writers(step).items():
            c = channels[0]
            if len(channels) == 1 and c.mode == "forget" and c.bias == 0 and c.lag == 0 and len(c.reads) == 1:
                (j, w), = c.reads.items()
                if w == 1 and c.writes[0][1] == 1:
                    out[unit] = j
        return out

    def remap(self, channel, reads, writes):
        return replace(channel, reads=reads(channel.reads), writes=[(writes[u], w) for u, w in channel.writes])

    def passing(self, reads, bias, slot, bound):
        from lsrl.backends.hawk import TChannel

        return [TChannel(reads, bias, 0, "forget", [(slot, ONE)])]


class MlpParts(Parts):
    def copies(self, step) -> dict[int, int]:
        out = {}
        for unit, channels in _sole_writers(step).items():
            if all(c.gate_bias == 0 and not c.up and c.up_bias == 1 for c in channels):
                j = _pair_copy(channels, lambda c: c.gate, ONE)
                if j is not None:
                    out[unit] = j
        return out

    def remap(self, channel, reads, writes):
        return replace(channel, gate=reads(channel.gate), up=reads(channel.up), writes=[(writes[u], w) for u, w in channel.writes])

    def passing(self, reads, bias, slot, bound):
        from lsrl.backends.hawk import mlp_pair

        return mlp_pair(reads, bias, slot, bound + abs(float(bias)))


class Stream:
    """The residual stream's slots, block after block: which slot holds each unit of the current
    value vector, and what every slot holds (live or left behind)."""

    def __init__(self, vocab: int, embed_scale: int):
        self.width = RESERVED
        self.embed_scale = embed_scale
        top = embed_scale * (vocab - 1)
        self.held: dict[int, Held] = {T: Held(top, True), Q: Held(top * (vocab - 1), True)}
        self.peak: dict[int, float] = {slot: held.bound for slot, held in self.held.items()}
        self.live: dict[int, int] = {0: T}  # the input token
        self.started = False  # whether a block has taken T and Q over
        self.layouts: list[list[int | None]] = []  # per block placed: the slot of each output unit (None: always 0)

    def place(self, block: Any, parts: Parts, last: bool) -> Any:
        """``block`` (reading the current value vector, writing the next) on the stream; ``last``:
        its output unit 0 is the program's output, which goes to T."""
        facts: UnitFacts = block.facts
        copied = {} if last else parts.copies(block)
        outputs: dict[int, int] = {}  # unit -> slot
        for unit, j in sorted(copied.items()):
            slot = self.live.get(j)
            if slot is not None and slot not in outputs.values() and slot >= RESERVED:
                outputs[unit] = slot
        written = sorted({u for c in block.channels for u, _ in c.writes} | set(block.out_bias) | ({0} if last else set()))
        written = [u for u in written if u not in outputs]
        channels = [c for c in block.channels if not any(u in outputs for u, _ in c.writes)]
        takeoff: list[int] = []
        for unit in written:
            slot = T if last else self._free(facts.exact[unit], set(outputs.values()))
            outputs[unit] = slot
            if slot in self.held:
                takeoff.append(slot)
        scale = {T: self.embed_scale} if not self.started else {}

        def reads(terms: dict[int, Number]) -> dict[int, Number]:
            return {self.live[j]: w / scale.get(self.live[j], 1) for j, w in terms.items() if j in self.live}

        placed = [parts.remap(c, reads, outputs) for c in channels]
        for slot in takeoff:
            placed += parts.passing({slot: -ONE}, ZERO, slot, self.held[slot].bound)
        if not self.started:  # the input token is read now: T is cleared for the output, Q set
            for slot, value in ((T, ZERO), (Q, ONE * READOUT_CONSTANT)):
                if slot not in takeoff:
                    placed += parts.passing({slot: -ONE}, value, slot, self.held[slot].bound)
            self.held.pop(T)
            self.held[Q] = Held(READOUT_CONSTANT, True)
            self.started = True
        for unit in written:
            slot = outputs[unit]
            self.held[slot] = Held(facts.box[unit], facts.exact[unit])
            self.peak[slot] = max(self.peak.get(slot, 0.0), facts.box[unit])
        self.live = outputs
        self.layouts.append([outputs.get(u) for u in range(block.width)])
        return replace(block, channels=placed, out_bias={outputs[u]: v for u, v in block.out_bias.items()})

    def _free(self, exact: bool, taken: set[int]) -> int:
        """A slot for a new value: one holding 0, else (for an exact value) one whose exact value
        is no longer needed, else a new one."""
        live = set(self.live.values()) | taken
        candidates = [s for s in range(RESERVED, self.width) if s not in live]
        for slot in candidates:
            if slot not in self.held:
                return slot
        if exact:
            for slot in candidates:
                if self.held[slot].exact:
                    return slot
        self.width += 1
        return self.width - 1

    def squares(self) -> float:
        """A bound on the sum of the squares of every non-constant slot, at any time."""
        return sum(b * b for b in self.peak.values())


# --- the stream's width and its norm ---------------------------------------------------------------
def constant_slots(width: int) -> list[int]:
    """Exponents i of the constant slots ``2^(c + i)`` for a stream of ``width`` slots: one per
    unit of each base-4 digit, so their squares add up to ``4^c width``."""
    out, i = [], 0
    while width:
        out += [i] * (width % 4)
        width //= 4
        i += 1
    return out


def mamba_width(used: int) -> int:
    """The smallest D that holds ``used`` slots and its own constant slots."""
    width = used + 1
    while width < used + len(constant_slots(width)):
        width += 1
    return width


def hawk_width(used: int) -> int:
    """The smallest power of 4 holding ``used`` slots and one constant slot (its square root, the
    embedding's scale, is then a power of two that bfloat16 holds exactly)."""
    width = 1
    while width < used + 1:
        width *= 4
    return width


def norm_exponent(squares: float, width: int) -> int | None:
    """c: the constants' squares ``4^c width`` exceed the program's by 2^NORM_ROOM; None where no
    c fits below float32's range."""
    if not math.isfinite(squares):
        return None
    c = max(MIN_EXPONENT, math.ceil((math.log2(max(squares, 1.0)) + NORM_ROOM) / 2))
    return c if 4.0**c * width < MAX_SQUARES else None
