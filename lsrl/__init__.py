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

Importing lsrl never imports torch, jax, triton or iree.
"""

from ir import Graph, Matrix, run, trace, verify
from lsrl.builder import Program, Value, concat, gate, linear, relu
from lsrl.errors import LsrlError
from lsrl.stdlib import (
    accumulate, and_, bump, counter, delay, eq, ifelse, ifelse_mul, ifelse_step, ifeq, larger,
    mod_counter, neq, not_, or_, smaller, step,
)

__all__ = [
    "Graph", "LsrlError", "Matrix", "Program", "Value", "accumulate", "and_", "bump", "concat",
    "counter", "delay", "eq", "gate", "ifelse", "ifelse_mul", "ifelse_step", "ifeq", "larger",
    "linear", "mod_counter", "neq", "not_", "or_", "relu", "run", "smaller", "step", "trace", "verify",
]
