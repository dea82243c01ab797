"""Backends: code generators and architecture targets built from the layered model.

Pipeline position: source -> ir -> passes -> layered model -> **backends**. A backend reads a
:class:`~ir.layered.LayeredModel` and never runs passes (see ``backends/target.py`` for the
interface every target implements).

Targets are imported only when asked for, so that ``import lsrl`` loads no torch or jax.
"""

from __future__ import annotations

from importlib import import_module

from lsrl.backends.target import DTYPES, Compiled, Options, Target

# target name -> module defining it as ``TARGETS[name]``
_MODULES = {
    "torch": "lsrl.backends.torch_code",
    "jax": "lsrl.backends.jax_code",
    "linear-rnn": "lsrl.backends.linear_rnn",
    "rnn": "lsrl.backends.elman",
    "lstm": "lsrl.backends.gated_rnn",
    "gru": "lsrl.backends.gated_rnn",
    "mamba": "lsrl.backends.mamba",
    "hawk": "lsrl.backends.hawk",
    "mlir": "lsrl.backends.mlir_code",
    "triton": "lsrl.backends.triton_code",
}

TARGET_NAMES = tuple(_MODULES)


def get_target(name: str) -> Target:
    """The target called ``name`` (its module is imported now)."""
    return import_module(_MODULES[name]).TARGETS[name]


__all__ = ["DTYPES", "TARGET_NAMES", "Compiled", "Options", "Target", "get_target"]
