"""Growth of compiled models in each target's own parameters (docs/growth.md).

``grow_compiled(compiled, sizes, init, seed)`` returns a model of the same target whose sizes (the
target's constructor arguments: ``hidden_size``, ``num_layers``; ``d_model``, ``d_inner``,
``d_state``, ``dt_rank``, ``n_layer``; ``hidden_size``, ``lru_width``, ``intermediate_size``,
``num_hidden_layers``; ``state_size``, ``num_blocks``) are at least ``sizes``, computing what
``compiled`` computes; new layers go before layer ``at`` (on top by default).
The weights a proof needs are zero, a copy or the identity; every other new weight is drawn from
``init`` (``ir.free_weights``). New weights are named as the target names them, so the grown model
loads and runs exactly as a compiled one does. Each target's expansions live in its own module
(``backends/growth_rnn.py``, ``backends/growth_mamba.py``); targets without one are refused.
"""

from __future__ import annotations

import math
from importlib import import_module
from typing import Any, Mapping

import numpy as np
from lsrl.backends import get_target
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

_MODULES = {
    "rnn": "lsrl.backends.growth_rnn",
    "lstm": "lsrl.backends.growth_rnn",
    "gru": "lsrl.backends.growth_rnn",
    "mamba": "lsrl.backends.growth_mamba",
    "hawk": "lsrl.backends.growth_hawk",
    "linear-rnn": "lsrl.backends.growth_linear_rnn",
}
GROWABLE = tuple(_MODULES)
PROBE_BATCH, PROBE_STEPS = 4, 32  # the random sequences a grown model is checked on


def size_names(target: str) -> tuple[str, ...]:
    """The sizes a model of ``target`` grows in; the first is its width, the last its depth."""
    return _module(target).SIZES


def setting_names(target: str) -> tuple[str, ...]:
    """What a target's growth may also set that is not a size (hawk's ``num_attention_heads``)."""
    return getattr(_module(target), "SETTINGS", ())


def current_sizes(compiled: Compiled) -> dict[str, int]:
    return _module(compiled.target).sizes(compiled.config)


def grow_compiled(compiled: Compiled, sizes: Mapping[str, int], init: Initializer, seed: int = 0,
                  at: int | None = None) -> Compiled:
    """``compiled`` grown to ``sizes`` (missing names keep their value), its new layers inserted
    before layer ``at`` (None: on top); refuses shrinking. A target's settings (``SETTINGS``: hawk's
    ``num_attention_heads``) may also be given; they are not sizes, and may go down."""
    module = _module(compiled.target)
    settings = setting_names(compiled.target)
    if compiled.checkpoint is not None:
        raise LsrlError(f"this {compiled.target} model is a transformers checkpoint (--format hf): grow the "
                        "target's own format (lsrl compile without --format) instead")
    unknown = set(sizes) - set(module.SIZES) - set(settings)
    if unknown:
        raise LsrlError(f"the {compiled.target} target has no size {', '.join(sorted(unknown))} "
                        f"(its sizes: {', '.join(module.SIZES)})")
    now = module.sizes(compiled.config)
    smaller = [f"{name} {value} < {now[name]}" for name, value in sizes.items()
               if name not in settings and value < now[name]]
    if smaller:
        raise LsrlError(f"growth cannot shrink a model: {', '.join(smaller)}")
    depth = module.SIZES[-1]
    at = now[depth] if at is None else at
    if not 0 <= at <= now[depth]:
        raise LsrlError(f"cannot insert layers before layer {at}: the {compiled.target} model has {now[depth]} "
                        f"({depth}), so the position lies in 0..{now[depth]}")
    wanted = {**{k: v for k, v in now.items() if k not in settings}, **sizes}  # settings only where given
    grown = module.grow(compiled, wanted, np.random.default_rng(seed), init, at)
    difference = probe_difference(compiled, grown, seed)
    grown.config["growth"] = compiled.config.get("growth", []) + [
        {"from": now, "to": module.sizes(grown.config), "inserted_at": at, "init": str(init), "seed": seed,
         "probe_max_difference": difference}]
    return grown


def probe_difference(original: Compiled, grown: Compiled, seed: int = 0) -> dict[str, float]:
    """The largest difference between the outputs of ``original`` and ``grown`` per dtype, on
    random integer sequences in the input range the model states (a measurement, not a proof).

    As real numbers a new unit read with weight 0 changes nothing; in floating point a free unit
    that overflows gives ``0 * inf = nan``. Growth refuses a model where that happens on these
    inputs, rather than hand back one that computes something else."""
    target = get_target(original.target)
    low, high = (float(v) for v in original.config.get("error_bound", {}).get("input_range", ["-8", "8"]))
    low, high = max(low, -8.0), min(high, 8.0)
    rng = np.random.default_rng(seed)
    steps = min(PROBE_STEPS, original.config.get("max_len") or PROBE_STEPS)
    inputs = rng.integers(math.ceil(low), math.floor(high) + 1, (PROBE_BATCH, steps, original.config["d_in"]))
    differences = {}
    for dtype in target.dtypes(original.config["dtype"]):
        before = target.run(original, inputs.astype(np.float64), dtype)
        after = target.run(grown, inputs.astype(np.float64), dtype)
        if np.any(np.isfinite(before) & ~np.isfinite(after)):
            raise LsrlError(f"the grown {original.target} model overflows {dtype} on random inputs: a free unit grew "
                            "past the largest float, and 0 times it is nan; draw smaller free weights (--init "
                            "normal:0.001, or zeros) or grow fewer sizes at once")
        differences[dtype] = float(np.max(np.abs(after - before), initial=0.0))
    return differences


def _module(target: str) -> Any:
    if target not in _MODULES:
        raise LsrlError(f"growing a {target} model is not supported (targets that grow: {', '.join(GROWABLE)})")
    return import_module(_MODULES[target])


# --- helpers for the targets' modules ---------------------------------------------------------------
def grown_rows(matrix: np.ndarray, blocks: int, old: int, new: int, cols: int, rng: np.random.Generator,
               init: Initializer, reads_new: bool = False) -> np.ndarray:
    """``matrix`` of ``blocks`` stacked blocks of ``old`` rows (a module's gates), each grown to
    ``new`` rows and the whole to ``cols`` columns: the new rows free; the old rows read the new
    columns with 0 (free weights where ``reads_new``: the new columns are known to hold 0)."""
    out = free(init, rng, (blocks * new, cols))
    for b in range(blocks):
        if not reads_new:
            out[b * new : b * new + old] = 0
        out[b * new : b * new + old, : matrix.shape[1]] = matrix[b * old : (b + 1) * old]
    return out


def grown_vector(vector: np.ndarray, blocks: int, old: int, new: int, rng: np.random.Generator,
                 init: Initializer) -> np.ndarray:
    """``vector`` of ``blocks`` blocks of ``old`` entries, each grown to ``new``: the new ones free."""
    return grown_rows(vector[:, None], blocks, old, new, 1, rng, init)[:, 0]


def zero_columns(matrix: np.ndarray, cols: int) -> np.ndarray:
    """``matrix`` reading ``cols`` columns, the new ones with weight 0."""
    out = np.zeros((matrix.shape[0], cols))
    out[:, : matrix.shape[1]] = matrix
    return out


def free(init: Initializer, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return init.floats(rng, shape)
