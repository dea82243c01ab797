"""The program graph (IR): nodes, verifier, reference interpreter.

Pipeline position: source -> **ir** -> passes -> layered model -> backends. Nothing here imports
the front end (``lsrl``), the passes or the backends.
"""

from lsrl.ir.equality import same_graph
from lsrl.ir.graph import KINDS, Graph, Kind, Label, Loc, Node, Output
from lsrl.ir.interpret import NotExactError, run, trace
from lsrl.ir.matrix import Matrix
from lsrl.ir.serialize import GraphFileError, load_graph, save_graph
from lsrl.ir.text import TextParseError, parse_graph, print_graph
from lsrl.ir.verify import VerifyError, verify

__all__ = [
    "KINDS", "Graph", "GraphFileError", "Kind", "Label", "Loc", "Matrix", "Node", "NotExactError",
    "Output", "TextParseError", "VerifyError", "load_graph", "parse_graph", "print_graph", "run",
    "same_graph", "save_graph", "trace", "verify",
]
