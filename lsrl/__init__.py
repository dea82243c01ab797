"""lsrl: a compiler for recurrent models.

The Python builder and the standard library are the public API for writing programs from Python::

    import lsrl
    p = lsrl.Program()
    x = p.input(1)
    ones = p.state(0, lambda prev: prev + x, name="ones")
    zeros = p.state(0, lambda prev: prev + (1 - x), name="zeros")
    p.output(lsrl.larger(ones, zeros))
    graph = p.finish()
    lsrl.run(graph, [1, 0, 0, 1], exact=True)

The same program in the .lsrl language compiles with ``lsrl.compile_file("examples/more_ones.lsrl")``
(or ``lsrl.compile_source(text, "name.lsrl", params={...})``) to the same graph.

A graph compiles for a target with ``lsrl.compile_to(graph, "torch")`` (see ``lsrl.targets``); the
result writes its files with ``.write(directory)`` and runs with ``lsrl.run_compiled``.

Importing lsrl never imports torch, jax, triton or iree.
"""

from lsrl.builder import Program, Value, concat, gate, linear, read, relu
from lsrl.errors import LsrlError
from lsrl.ir import Graph, Matrix, run, trace, verify
from lsrl.stdlib import (
    accumulate,
    and_,
    bump,
    counter,
    delay,
    eq,
    ifelse,
    ifelse_mul,
    ifelse_step,
    ifeq,
    larger,
    mod_counter,
    neq,
    not_,
    or_,
    smaller,
    step,
)

__all__ = [
    "Graph", "LsrlError", "Matrix", "Program", "Value", "accumulate", "and_", "bump", "compile_file",
    "compile_source", "concat", "counter", "delay", "eq", "gate", "ifelse", "ifelse_mul", "ifelse_step",
    "ifeq", "larger", "linear", "mod_counter", "neq", "not_", "or_", "read", "relu", "run", "smaller", "step",
    "trace", "verify", "compile_to", "run_compiled",
]

_LAZY = {"compile_file": "lsrl.load", "compile_source": "lsrl.load", "compile_to": "lsrl.targets", "run_compiled": "lsrl.targets"}


def __getattr__(name: str) -> object:
    """The language front end (the parser) and the target driver load on first use, so that
    ``import lsrl`` stays quick for builder-only users."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lsrl' has no attribute {name!r}")
