"""What every target is: a builder from the layered model to files, and a runner of those files.

A target reads one :class:`~ir.layered.LayeredModel` (and the :class:`Options` the user gave) and
returns a :class:`Compiled`: the weights (float64 copies, named as the target's reference
implementation names them), a JSON-able config (constructor arguments, layer list, labels), and
for code targets the generated source files. ``Compiled.write`` puts them in a directory as
``model.safetensors``, ``config.json`` and e.g. ``model.py`` (docs/cli.md).

``Target.run`` executes a compiled model on a batch of float sequences in float32 or float64, the
way a user of the target would (the generated module, the stock torch modules), so the shared
test table checks exactly what users get.

Targets never run passes: the driver (``lsrl.targets``) lowers the program first, rebuilding
multiplicative gates from ReLUs for targets whose ``native_gates`` is false.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from lsrl.ir.errors import CompileWarning
from lsrl.ir.layered import LayeredModel
from lsrl.passes.ranges import INF

DTYPES = ("float32", "float64")
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}
DEFAULT_MAX_LEN = 1024
ASSUMED_INPUT_BOUND = 2**10  # |input| the stated error bounds assume where --input-range gives no bound
CONFIG_FORMAT = "lsrl.compiled"


@dataclass(frozen=True)
class Options:
    """What the user told the compiler about the inputs and the target.

    ``input_range``: bounds every input value lies in (a ``(lo, hi)`` pair of exact numbers or
    None for an unbounded side), ``integer_inputs``: inputs are integers, ``max_len``: the longest
    sequence the model must support where a target needs a bound, ``variant``: one of the target's
    documented construction variants (None: its default), ``dtype``: the dtype the model is built
    for (targets whose weights depend on it compute the program in that dtype only).
    """

    input_range: Optional[tuple] = None
    integer_inputs: bool = False
    max_len: int = DEFAULT_MAX_LEN
    variant: Optional[str] = None
    dtype: str = "float32"


@dataclass
class Compiled:
    """A compiled model: what ``lsrl compile`` writes, and what ``Target.run`` executes."""

    target: str
    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    files: dict[str, str] = field(default_factory=dict)  # generated source, by file name
    warnings: list[CompileWarning] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # size figures for ``lsrl stats --target``

    def write(self, directory: str | Path) -> list[str]:
        """Write ``model.safetensors``, ``config.json`` and the source files; return their names."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: np.ascontiguousarray(value, dtype=np.float64) for name, value in self.tensors.items()}
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": CONFIG_FORMAT, "target": self.target})
        (directory / "config.json").write_text(json.dumps(self.config, indent=1) + "\n")
        for name, text in self.files.items():
            (directory / name).write_text(text)
        return ["model.safetensors", "config.json", *self.files]


class Target(ABC):
    """A compilation target. Subclasses set the class attributes and implement the two methods."""

    name: str
    description: str
    native_gates: bool = True  # computes gate layers itself; if not, the driver rebuilds them from ReLUs
    # The model may rely on sequences being at most ``Options.max_len`` long (the range analysis
    # assumes it); targets without this flag compute the program for every length.
    bounded_length: bool = False
    variants: tuple[str, ...] = ()  # construction variants; the first is the default
    # The weights depend on ``Options.dtype`` and compute the program in that dtype only (hawk's
    # accumulators); the others' compute it in every dtype, whichever they were built for.
    dtype_specific: bool = False

    def dtypes(self, built: str) -> tuple[str, ...]:
        """The dtypes in which a model built for ``built`` computes the program."""
        return (built,) if self.dtype_specific else DTYPES

    @abstractmethod
    def build(self, model: LayeredModel, options: Options) -> Compiled:
        """The target's weights and files for ``model``; raises ``LsrlError`` (with the location
        of the program construct, where known) for a program it cannot compute."""

    @abstractmethod
    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        """Outputs ``[batch, time, d_out]`` (float64 numpy) for inputs ``[batch, time, d_in]``,
        computed in ``dtype`` the way a user of the target runs it."""

    def error_bound(self, compiled: Compiled, dtype: str = "float64") -> float:
        """The absolute error the construction itself may add to every output when run in
        ``dtype``, on top of rounding (0 for an exact construction). Approximate constructions state
        their bounds in ``config["error_bound"]`` (see :func:`stated_bounds`) and test them."""
        stated = compiled.config.get("error_bound")
        if not isinstance(stated, dict):
            return 0.0
        # no bound in a dtype the weights were not built for (``dtypes``), or where the analysis has none
        return INF if stated.get(dtype) is None else stated[dtype]


# above this stated bound (absolute), an approximate target warns that its outputs may be off
LOOSE_BOUND = 1e-6


def loose_bound_warnings(target: Target, bounds: dict[str, float]) -> list[CompileWarning]:
    """A warning where an approximate construction cannot promise outputs within LOOSE_BOUND in
    some dtype (``bounds``: the stated bound per dtype), so that a large (or infinite) stated bound
    never passes silently."""
    loose = {dtype: bound for dtype, bound in bounds.items() if bound > LOOSE_BOUND}
    if not loose:
        return []
    if INF in loose.values():
        reason = "the range analysis cannot bound some value it approximates (give --input-range)"
    else:
        reason = "its stated error bound for this program is " + " and ".join(
            f"{bound:.3g} in {dtype}" for dtype, bound in loose.items())
    return [CompileWarning(
        f"the {target.name} target computes this program only approximately: {reason}; "
        f"compare its outputs with --backend interp (measured errors: docs/targets.md)",
        dtype=next(iter(loose)) if len(loose) == 1 else None,
    )]


def analysis_range(options: Options) -> tuple:
    """The input range stated bounds assume: the user's, a missing side at ``ASSUMED_INPUT_BOUND``."""
    lo, hi = options.input_range if options.input_range is not None else (None, None)
    return (-ASSUMED_INPUT_BOUND if lo is None else lo, ASSUMED_INPUT_BOUND if hi is None else hi)


def stated_bounds(bounds: dict[str, float], options: Options) -> dict[str, Any]:
    """``config["error_bound"]``: the bound per dtype the model computes the program in (None:
    unbounded) and what it assumes."""
    low, high = analysis_range(options)
    return {
        **{dtype: value if value != INF else None for dtype, value in bounds.items()},
        "input_range": [str(low), str(high)], "max_len": options.max_len,
    }


def base_config(target: Target, model: LayeredModel, options: Options) -> dict[str, Any]:
    """The config entries every target writes: target, variant, shapes, labels and layer list."""
    return {
        "format": CONFIG_FORMAT,
        "target": target.name,
        "variant": options.variant or (target.variants[0] if target.variants else None),
        "dtype": options.dtype,  # built for; ``Target.dtypes`` says which dtypes it runs in
        "d_in": model.d_in,
        "d_out": model.d_out,
        "input_labels": [str(label) for label in model.input_labels],
        "output_labels": [str(label) for label in model.output_labels],
        "layers": [
            {"kind": layer.kind, "width": layer.width, "units": [str(u) for u in layer.units]}
            for layer in model.layers
        ],
        "max_len": options.max_len if target.bounded_length else None,
    }
