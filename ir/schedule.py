"""The schedule plan of a layered model: how every layer that keeps a state computes it over a
whole sequence (docs/schedules.md). ``passes.schedule`` makes it; the code targets, and the plan
evaluator (``ir.plan_eval``), read it.

A state layer's recurrence can run in three forms, all computing the same numbers (identical
over the rationals, since each only reassociates products and sums of the same terms and none
divides):

- ``recurrent``: one step after the other (a loop over time);
- ``chunk`` (chunk size ``C``): every chunk of ``C`` steps starts from zero at once (``C`` steps
  over all chunks together), the states at chunk boundaries follow by the inter-chunk recurrence
  (``T / C`` steps), and each step adds its chunk's start state times its decay since the chunk
  began. The delta rule goes through the WY / UT representation instead (see ``ir.plan_eval``);
- ``scan``: the associative form, elements ``(A_t, b_t)`` combined by
  ``(A2, b2) o (A1, b1) = (A2 A1, A2 b1 + b2)``, in ``log T`` rounds.

A constant state layer (``h_t = A h_{t-1} + u_t``) is first split into stages (``Stage``): units
that are copies, running sums or rotations need no loop over time in any form; the form applies
to its loop stages only (diagonal parts, ``SCALED_LOOP``, and other parts, ``MATRIX_LOOP``).
Gated layers (``h_t = a_t * h_{t-1} + b_t``) and delta layers take the form as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

RECURRENT, CHUNK, SCAN = "recurrent", "chunk", "scan"
FORMS = (RECURRENT, CHUNK, SCAN)
AUTO = "auto"  # not a form: passes.schedule picks one per layer
SCHEDULES = (*FORMS, AUTO)
DEFAULT_CHUNK = 64

# How a stage of a constant state layer is computed.
COPY = "copy"  # zero diagonal, no cycles: h_t = v_t, or chains of delays (shift registers)
RUNNING_SUM = "running sum"  # rows e_i: h_t = h_{t-1} + v_t, a cumulative sum over time
ROTATION = "rotation"  # cycles of a permutation: a running sum in the frame that turns with it
SCALED_LOOP = "scaled loop"  # a diagonal part of A: elementwise products over time
MATRIX_LOOP = "matrix loop"  # any other part of A: matrix products over time
METHODS = (COPY, RUNNING_SUM, ROTATION, SCALED_LOOP, MATRIX_LOOP)  # the order of stages in one phase
LOOPS = (SCALED_LOOP, MATRIX_LOOP)  # the stages a form applies to

SCHEDULED_KINDS = ("state", "gated", "matrix", "delta")  # layer kinds with a state passed from step to step


@dataclass(frozen=True)
class Stage:
    """Some units of a constant state layer computed together over the whole sequence.

    ``reads``: units of earlier stages whose previous values these units read through ``A``.
    ``depth`` (copy only): the longest chain of reads among the stage's own units (a unit reading
    the previous value of a unit that reads ...: a delay line); 0 when they read none of each other.
    ``cycles`` (rotation only): positions in ``units``; the unit at ``cycle[k]`` takes the previous
    value of the unit at ``cycle[k + 1]``, and the last that of the first.
    """

    method: str
    units: tuple[int, ...]
    reads: tuple[int, ...] = ()
    depth: int = 0
    cycles: tuple[tuple[int, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stage as ``config.json``'s ``state_plans`` hold it."""
        return {"method": self.method, "units": list(self.units), "reads": list(self.reads), "depth": self.depth,
                "cycles": [list(c) for c in self.cycles]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Stage":
        return cls(data["method"], tuple(data["units"]), tuple(data["reads"]), data["depth"],
                   tuple(tuple(c) for c in data["cycles"]))

    def describe(self) -> str:
        """What the stage computes (``v``: its input term)."""
        text = {
            COPY: "h_t = v_t (no recurrence)" if not self.depth else
            f"h_t = N h_{{t-1}} + v_t, N: delay lines, at most {self.depth} long: "
            f"{plural(self.depth, 'round')}, no loop",
            RUNNING_SUM: "h_t = h_{t-1} + v_t (rows e_i of A): a cumulative sum, no loop",
            ROTATION: "h_t = P h_{t-1} + v_t (cycles of a permutation P): no loop",
            SCALED_LOOP: "h_t = a * h_{t-1} + v_t (diagonal part of A)",
            MATRIX_LOOP: "h_t = A h_{t-1} + v_t",
        }[self.method]
        if self.reads:
            return text + f"; v_t = u_t + A h_{{t-1}} on {plural_units(self.reads)}"
        return text.replace("v_t", "u_t")


def join_order(stages: Sequence[Stage]) -> tuple[list[int], list[int] | None]:
    """How a state layer's output is made of its stages' parts: the stages in the order their parts
    are joined (of their first units, which usually gives the units in order), and the position in
    the joined parts of every unit, or None where that is the units in order."""
    ordered = sorted(range(len(stages)), key=lambda k: stages[k].units[0])
    units = [unit for k in ordered for unit in stages[k].units]
    if units == list(range(len(units))):
        return ordered, None
    return ordered, [units.index(i) for i in range(len(units))]


@dataclass(frozen=True)
class LayerPlan:
    """The form of one state layer (``chunk``: the chunk size where the form is ``chunk``, else 0)
    and, for a constant state layer, its stages."""

    layer: int
    kind: str
    form: str
    chunk: int = 0
    stages: tuple[Stage, ...] = ()

    @property
    def loops(self) -> int:
        """Sequential loops this layer runs over time in ``forward``."""
        looping = sum(1 for s in self.stages if s.method in LOOPS) if self.kind == "state" else 1
        return looping if self.form == RECURRENT else 0

    def describe(self) -> str:
        if self.kind == "state" and not any(s.method in LOOPS for s in self.stages):
            return f"layer {self.layer}: state, no loop stage (every form computes it the same way)"
        form = {RECURRENT: "recurrent (a loop over time)", CHUNK: f"chunk, C = {self.chunk}",
                SCAN: "scan (associative, log T rounds)"}[self.form]
        return f"layer {self.layer}: {self.kind}, {form}"

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "kind": self.kind, "form": self.form, "chunk": self.chunk,
                "stages": [s.to_json() for s in self.stages]}


@dataclass(frozen=True)
class Plan:
    """The schedule of every state layer of a model, in layer order; ``requested``: the schedule
    asked for (a form or ``auto``), ``length``: the sequence length ``auto`` chose for (0: none)."""

    requested: str
    layers: tuple[LayerPlan, ...]
    length: int = 0

    def of(self, layer: int) -> LayerPlan:
        return next(p for p in self.layers if p.layer == layer)

    def format(self) -> str:
        """The plan as text (``lsrl ir PROGRAM --after chunk``)."""
        chosen = f", for sequences of {self.length} steps" if self.requested == AUTO and self.length else ""
        lines = [f"schedule {self.requested}{chosen}: {plural(len(self.layers), 'state layer')}"]
        for plan in self.layers:
            lines.append(plan.describe())
            for stage in plan.stages:
                looping = f" [{plan.form}]" if stage.method in LOOPS else ""
                lines.append(f"  {plural_units(stage.units)}: {stage.describe()}{looping}")
        return "\n".join(lines)

    __str__ = format

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "length": self.length, "layers": [p.to_json() for p in self.layers]}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def plural_units(units: Sequence[int]) -> str:
    return f"unit{'s' if len(units) > 1 else ''} {unit_ranges(units)}"


def unit_ranges(units: Sequence[int]) -> str:
    """``0-5, 9, 12-18``."""
    parts: list[str] = []
    start = previous = units[0]
    for unit in list(units[1:]) + [None]:
        if unit is not None and unit == previous + 1:
            previous = unit
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if unit is not None:
            start = previous = unit
    return ", ".join(parts)
