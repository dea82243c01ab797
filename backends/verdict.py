"""What a compiled model's stated error bounds prove about its outputs, per dtype, and the warnings
where they prove nothing.

Every target states a bound on ``|computed - exact|`` per dtype (``config["error_bound"]``: one
per output unit where the target computes the layered model's arithmetic, ``backends.rounding``,
else one for all outputs). The verdict per dtype is

- ``exact``: every bound is 0;
- ``bounded``: every output is proven right: its bound is within ``OUTPUT_TOLERANCE`` of its size,
  or its values lie on a lattice (token ids, counts, 0/1 conditions; the range analysis says so)
  and its bound is below half the lattice's spacing, so that its exact value is the nearest
  lattice point;
- ``unproven``: some output is not, and a warning names the dtype, that output, its bound and what
  would help.

The bounds hold for inputs in the stated input range (``--input-range``, else the assumed
``[-1024, 1024]``) and sequences of at most ``--max-len`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lsrl.backends.layer_ranges import layer_bounds
from lsrl.backends.target import Compiled, Options, Target, analysis_range
from lsrl.ir.errors import CompileWarning
from lsrl.ir.layered import LayeredModel, UnitLabel
from lsrl.passes.lattice import Lattice
from lsrl.passes.ranges import INF, Interval

OUTPUT_TOLERANCE = 1e-3  # the error an output without a lattice may show, relative to max(1, |value|)
EXACT, BOUNDED, UNPROVEN = "exact", "bounded", "unproven"


@dataclass(frozen=True)
class OutputFacts:
    """What the range analysis knows of one output unit of the layered model."""

    label: UnitLabel
    interval: Interval
    lattice: Lattice | None

    def tolerance(self) -> float:
        return OUTPUT_TOLERANCE * max(self.interval.magnitude, 1.0)

    def proven(self, bound: float) -> bool:
        if bound == INF:  # (an output of unbounded size would tolerate it otherwise)
            return False
        on_lattice = self.lattice is not None and self.lattice.step > 0 and bound < self.lattice.step / 2
        return on_lattice or bound <= self.tolerance()

    def requirement(self) -> str:
        within = f"it must stay within {self.tolerance():.3g} ({OUTPUT_TOLERANCE:g} of the output's size)"
        if self.lattice is not None and self.lattice.step > 0:
            return f"{within} or, as the output's values are {self.lattice.step} apart, below {self.lattice.step / 2}"
        return within


def output_facts(model: LayeredModel, options: Options) -> list[OutputFacts]:
    last = layer_bounds(model, options)[-1]
    return [OutputFacts(label, v, lattice) for label, v, lattice in zip(model.layers[-1].units, last.values, last.lattices)]


def output_bounds(target: Target, compiled: Compiled, dtype: str, outputs: int) -> list[float]:
    """The stated bound of each output unit in ``dtype``."""
    stated = compiled.config.get("error_bound")
    if isinstance(stated, dict) and "outputs" in stated:
        return [INF if b is None else b for b in stated["outputs"][dtype]]
    return [target.error_bound(compiled, dtype)] * outputs


def judge(target: Target, compiled: Compiled, facts: Sequence[OutputFacts], options: Options) -> tuple[dict[str, str], list[CompileWarning]]:
    """The verdict per dtype the model runs in, and a warning per dtype that is not proven."""
    verdicts: dict[str, str] = {}
    warnings: list[CompileWarning] = []
    for dtype in target.dtypes(options.dtype, options.format):
        bounds = output_bounds(target, compiled, dtype, len(facts))
        at_risk = [(f, b) for f, b in zip(facts, bounds) if not f.proven(b)]
        if at_risk:
            verdicts[dtype] = UNPROVEN
            warnings.append(_warning(target, dtype, at_risk, options))
        else:
            verdicts[dtype] = EXACT if all(b == 0 for b in bounds) else BOUNDED
    return verdicts, warnings


def _warning(target: Target, dtype: str, at_risk: list[tuple[OutputFacts, float]], options: Options) -> CompileWarning:
    first, bound = at_risk[0]
    others = f" (and {len(at_risk) - 1} more output unit{'s' if len(at_risk) > 2 else ''})" if len(at_risk) > 1 else ""
    how_far = "has no bound" if bound == INF else f"may be off by up to {bound:.3g}"
    low, high = options.input_range if options.input_range is not None else (None, None)
    helps: list[str] = []
    if not options.integer_inputs:
        helps.append("--integer-inputs if the inputs are integers")
    if low is None or high is None:
        helps.append("--input-range LO,HI to bound them")
    if dtype == "float32":
        helps.append("--dtype float64")
    helps.extend(target.exact_alternatives)
    assumed_low, assumed_high = analysis_range(options)
    assumption = f"for inputs in [{assumed_low}, {assumed_high}] and up to {options.max_len} steps"
    return CompileWarning(
        f"{dtype} is not proven to compute output {first.label.source}{others} right on the {target.name} target: "
        f"it {how_far} {assumption}, "
        + ("as the range analysis cannot bound a value it depends on" if bound == INF else f"and {first.requirement()}")
        + (f"; what may help: {', '.join(helps)}" if helps else ""),
        node=first.label.node, dtype=dtype,
    )
