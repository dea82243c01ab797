"""The program graph (IR): nodes, verifier, reference interpreter.

Pipeline position: source -> **ir** -> passes -> layered model -> backends. Nothing here imports
the front end (``lsrl``), the passes or the backends.
"""

from ir.graph import KINDS, Graph, Kind, Label, Loc, Node, Output
from ir.interpret import NotExactError, run, trace
from ir.equality import same_graph
from ir.matrix import Matrix
from ir.serialize import GraphFileError, load_graph, save_graph
from ir.text import TextParseError, parse_graph, print_graph
from ir.verify import VerifyError, verify

__all__ = [
    "KINDS", "Graph", "GraphFileError", "Kind", "Label", "Loc", "Matrix", "Node", "NotExactError",
    "Output", "TextParseError", "VerifyError", "load_graph", "parse_graph", "print_graph", "run",
    "same_graph", "save_graph", "trace", "verify",
]
