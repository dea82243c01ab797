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
from lsrl.ir.errors import CompileWarning, LsrlError
from lsrl.ir.layered import LayeredModel, UnitLabel
from lsrl.ir.schedule import DEFAULT_CHUNK, RECURRENT, Plan
from lsrl.passes.ranges import INF

DTYPES = ("float32", "float64")
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}
DEFAULT_MAX_LEN = 1024
ASSUMED_INPUT_BOUND = 2**10  # |input| the stated error bounds assume where --input-range gives no bound
CONFIG_FORMAT = "lsrl.compiled"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
CHECKPOINT_KEY = "lsrl"  # where a transformers checkpoint's config.json keeps lsrl's config
# What an lsrl compiled directory whose config.json lists no "files" (as written by versions
# before the list) may hold besides the weights and the config.
UNLISTED_SOURCES = ["model.py"]


@dataclass(frozen=True)
class Options:
    """What the user told the compiler about the inputs and the target.

    ``input_range``: bounds every input value lies in (a ``(lo, hi)`` pair of exact numbers or
    None for an unbounded side), ``integer_inputs``: inputs are integers, ``max_len``: the longest
    sequence the model must support where a target needs a bound, ``variant``: one of the target's
    documented construction variants (None: its default), ``dtype``: the dtype the model is built
    for (targets whose weights depend on it compute the program in that dtype only), ``format``:
    one of the target's ``formats`` (None: its own files), ``tokens``: the ``(lo, hi)`` token ids
    the program's input declares (the driver fills it in from the graph). ``schedule``: the form of
    the state layers' recurrences over a sequence (``ir.schedule.SCHEDULES``; one of the target's
    ``schedules``), ``chunk``: the chunk size of the chunked form, ``plan``: the schedule plan of
    the model (``passes.schedule``; the driver fills it in).
    """

    input_range: Optional[tuple] = None
    integer_inputs: bool = False
    max_len: int = DEFAULT_MAX_LEN
    variant: Optional[str] = None
    dtype: str = "float32"
    format: Optional[str] = None
    tokens: Optional[tuple[int, int]] = None
    schedule: str = RECURRENT
    chunk: int = DEFAULT_CHUNK
    plan: Optional[Plan] = None


@dataclass(frozen=True)
class LayerReading:
    """Where a hidden layer of the layered model a target was built from lives in the target's
    module: the layer's values are ``matrix @ s + offset``, ``s`` the first ``matrix.cols`` units
    of what the module's stage ``stage`` outputs (a stage per layer of a stacked cell, per block
    of mamba and hawk: docs/bench.md, "Verification"). Whatever reads the layer reads only that
    combination, so changing ``s`` along it changes the layer's values for every reader."""

    stage: int
    matrix: Any  # ir.matrix.Matrix
    offset: tuple


@dataclass
class Compiled:
    """A compiled model: what ``lsrl compile`` writes, and what ``Target.run`` executes."""

    target: str
    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    files: dict[str, str | bytes] = field(default_factory=dict)  # generated source and binaries, by file name
    warnings: list[CompileWarning] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # size figures for ``lsrl stats --target``
    checkpoint: dict[str, Any] | None = None  # --format hf: the transformers config (backends/hf.py)
    # per hidden layer of the layered model, where the module holds it (None: nowhere alone); set by
    # the targets of stock modules (rnn, lstm, gru, mamba, hawk) for lsrl bench; not written
    readings: list[LayerReading | None] | None = None

    def write(self, directory: str | Path) -> list[str]:
        """Write ``model.safetensors``, ``config.json`` and the source files; return their names.

        The directory then holds this compilation only: the files an earlier ``write`` listed in
        its ``config.json`` (``"files"``) are removed first, so that no stale ``model.py`` is left
        to load these weights; every other file is the user's and stays. A checkpoint
        (``--format hf``) writes the transformers config with lsrl's under its key ``"lsrl"``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _remove_earlier_compilation(directory)
        written = [WEIGHTS_FILE, CONFIG_FILE, *self.files]
        (directory / WEIGHTS_FILE).write_bytes(self.weights())
        config = {**self.config, "files": written}
        if self.checkpoint is not None:
            config = {**self.checkpoint, CHECKPOINT_KEY: config}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        for name, content in self.files.items():
            if isinstance(content, bytes):
                (directory / name).write_bytes(content)
            else:
                (directory / name).write_text(content)
        return written

    @classmethod
    def read(cls, directory: str | Path) -> "Compiled":
        """The compiled model ``write`` put in ``directory`` (as ``lsrl compile -o`` or ``lsrl grow``
        wrote it); a directory that holds none is the user's mistake (``LsrlError``)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        try:
            config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            checkpoint = None
            if isinstance(config, dict) and isinstance(config.get(CHECKPOINT_KEY), dict):
                checkpoint = {k: v for k, v in config.items() if k != CHECKPOINT_KEY}
                config = config[CHECKPOINT_KEY]
            if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
                raise LsrlError(f"{directory / CONFIG_FILE} is not the config of a model lsrl compiled")
            tensors = load_file(str(directory / WEIGHTS_FILE))
            names = config.get("files", [WEIGHTS_FILE, CONFIG_FILE, *UNLISTED_SOURCES])
            files = {name: (directory / name).read_text(encoding="utf-8") for name in names
                     if name not in (WEIGHTS_FILE, CONFIG_FILE) and name == Path(name).name and (directory / name).is_file()}
        except OSError as e:
            raise LsrlError(f"cannot read the compiled model in {directory}: {e.strerror or e}") from None
        except (ValueError, SafetensorError) as e:
            raise LsrlError(f"cannot read the compiled model in {directory}: {e}") from None
        config = {k: v for k, v in config.items() if k != "files"}
        return cls(config["target"], config, tensors, files, checkpoint=checkpoint)

    def weights(self) -> bytes:
        """The ``model.safetensors`` file: float64 tensors (transformers reads a checkpoint's only
        with its own metadata format, "pt")."""
        from safetensors.numpy import save

        tensors = {name: np.ascontiguousarray(value, dtype=np.float64) for name, value in self.tensors.items()}
        metadata = {"format": "pt"} if self.checkpoint is not None else {"format": CONFIG_FORMAT, "target": self.target}
        # as bytes: safetensors' own save_file creates the file with mode 0600, not by the umask
        return save(tensors, metadata=metadata)


def _remove_earlier_compilation(directory: Path) -> None:
    """Remove the files of the compilation whose lsrl ``config.json`` is in ``directory``."""
    try:
        earlier = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no config.json, or not JSON: nothing here is known to be lsrl's
        return
    if isinstance(earlier, dict) and isinstance(earlier.get(CHECKPOINT_KEY), dict):
        earlier = earlier[CHECKPOINT_KEY]  # a checkpoint's config: lsrl's part
    if not isinstance(earlier, dict) or earlier.get("format") != CONFIG_FORMAT:
        return
    names = earlier.get("files", UNLISTED_SOURCES)
    for name in names if isinstance(names, list) else ():
        # only plain names in the directory itself, whatever an edited config.json says
        if isinstance(name, str) and name == Path(name).name and (directory / name).is_file():
            (directory / name).unlink()


class Target(ABC):
    """A compilation target. Subclasses set the class attributes and implement the two methods."""

    name: str
    description: str
    native_gates: bool = True  # computes gate layers itself; if not, the driver rebuilds them from ReLUs
    schedules: tuple[str, ...] = (RECURRENT,)  # the forms (ir.schedule) it computes state layers in
    # layer kind -> the shortest sequence from which --schedule auto chunks it (docs/schedules.md)
    crossovers: dict[str, int] = {}
    # The model may rely on sequences being at most ``Options.max_len`` long (the range analysis
    # assumes it); targets without this flag compute the program for every length.
    bounded_length: bool = False
    variants: tuple[str, ...] = ()  # construction variants; the first is the default
    # the kinds of layer (ir.layered.LAYER_KINDS) it computes; the driver refuses a program whose
    # layered model has another, at the source line of the node that needs it
    layer_kinds: tuple[str, ...] = ("affine", "relu", "gate", "state")
    exact_alternatives: tuple[str, ...] = ()  # what a warning about precision suggests besides the options
    # The weights depend on ``Options.dtype`` and compute the program in that dtype only (hawk's
    # accumulators); the others' compute it in every dtype, whichever they were built for.
    dtype_specific: bool = False
    formats: tuple[str, ...] = ()  # what --format may ask for besides the target's own files

    def dtypes(self, built: str, format: Optional[str] = None) -> tuple[str, ...]:
        """The dtypes in which a model built for ``built`` (in ``format``) computes the program."""
        return (built,) if self.dtype_specific and format is None else DTYPES

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
    """The config entries every target writes: target, variant, shapes, labels and layer list.

    Every unit's label is an object (``UnitLabel.to_json`` and ``"loc"``, docs/cli.md); the model
    knows no source locations, nor the nodes of its input and output units: the driver, which
    holds the program graph, fills them in."""
    return {
        "format": CONFIG_FORMAT,
        "target": target.name,
        "variant": options.variant or (target.variants[0] if target.variants else None),
        "dtype": options.dtype,  # built for; ``Target.dtypes`` says which dtypes it runs in
        "d_in": model.d_in,
        "d_out": model.d_out,
        "input_labels": [_unit_json(UnitLabel(label, unit=label.index)) for label in model.input_labels],
        "output_labels": [_unit_json(UnitLabel(label)) for label in model.output_labels],
        "layers": [
            {"kind": layer.kind, "width": layer.width, "units": [_unit_json(u) for u in layer.units]}
            for layer in model.layers
        ],
        "max_len": options.max_len if target.bounded_length else None,
    }


def _unit_json(label: UnitLabel) -> dict[str, Any]:
    return {**label.to_json(), "loc": None}
