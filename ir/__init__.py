"""The program graph (IR): nodes, verifier, reference interpreter.

Pipeline position: source -> **ir** -> passes -> layered model -> backends. Nothing here imports
the front end (``lsrl``), the passes or the backends.
"""

from ir.graph import KINDS, Graph, Kind, Label, Loc, Node, Output
from ir.interpret import NotExactError, run, trace
from ir.matrix import Matrix
from ir.verify import VerifyError, verify

__all__ = [
    "KINDS", "Graph", "Kind", "Label", "Loc", "Matrix", "Node", "NotExactError", "Output",
    "VerifyError", "run", "trace", "verify",
]
