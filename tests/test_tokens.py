"""The input's declared tokens (``input x[1] in LO..HI``, ``Program.input(tokens=)``, ``--vocab``):
kept by the IR's text form and JSON, checked by the verifier, and a promise the range analysis
assumes and the command line enforces (docs/language.md, "Tokens")."""

from __future__ import annotations

import pytest
from gmpy2 import mpq
from lsrl.ir.equality import same_graph
from lsrl.ir.graph import input_tokens
from lsrl.ir.serialize import graph_from_json, graph_to_json
from lsrl.ir.text import TextParseError, parse_graph, print_graph
from lsrl.ir.verify import VerifyError, verify
from lsrl.passes.ranges import declared_promises

import lsrl
from lsrl.cli import main
from lsrl.errors import LsrlError
from lsrl.load import compile_source


def _program(source: str):
    return compile_source(source, "prog.lsrl")


def test_the_declaration_is_an_input_attribute_that_round_trips() -> None:
    graph = _program("param n = 26\ninput x[1] in 1..n + 1\noutput x\n")
    assert input_tokens(graph.input) == (1, 27)
    text = print_graph(graph)
    assert '= input : 1 {tokens=[1, 27]} name "x"' in text
    assert same_graph(parse_graph(text), graph) and same_graph(graph_from_json(graph_to_json(graph)), graph)
    assert input_tokens(_program("input x[1]\noutput x\n").input) is None


def test_the_builder_declares_a_count_or_a_range() -> None:
    for tokens, expected in ((27, (0, 27)), (range(-1, 2), (-1, 2))):
        p = lsrl.Program()
        p.output(p.input(1, tokens=tokens))
        assert input_tokens(p.finish().input) == expected
    p = lsrl.Program()
    with pytest.raises(LsrlError, match="nonempty range"):
        p.input(1, tokens=range(0, 10, 2))


@pytest.mark.parametrize("tokens, message", [("[2, 1]", "LO must be below HI"), ("[1/2, 3]", "two integers"), ("[1]", "two integers")])
def test_the_verifier_refuses_tokens_that_are_no_range(tokens: str, message: str) -> None:
    with pytest.raises(TextParseError, match=message):
        parse_graph(f"graph {{\n  %0 = input : 1 {{tokens={tokens}}}\n  output %0\n}}\n")
    graph = _program("input x[1] in 0..2\noutput x\n")
    graph.input.attrs["tokens"] = (mpq(2), mpq(2))
    with pytest.raises(VerifyError, match="empty"):
        verify(graph)


def test_the_tokens_narrow_the_promises_and_imply_integers() -> None:
    graph = _program("input x[1] in 0..10\noutput x\n")
    assert declared_promises(graph) == ((0, 9), True)
    assert declared_promises(graph, (mpq(3), None), False) == ((3, 9), True)
    with pytest.raises(LsrlError, match=r"the input range \[20, 30\] holds none of the input's tokens 0..10") as error:
        declared_promises(graph, (mpq(20), mpq(30)))
    assert str(error.value.loc) == "prog.lsrl:1:1"
    assert declared_promises(_program("input x[1]\noutput x\n"), (mpq(0), mpq(1)), False) == ((0, 1), False)


def test_vocab_declares_the_tokens_of_a_program_that_declares_none(tmp_path, capsys) -> None:
    program = tmp_path / "sum.lsrl"
    program.write_text("input x[1]\nstate s[1] = 0 <- s + x\noutput s\n")
    assert main(["run", str(program), "--vocab", "3", "--input", "2 1 2", "--exact"]) == 0
    assert capsys.readouterr().out.split() == ["2", "3", "5"]
    assert main(["run", str(program), "--vocab", "3", "--input", "2 3"]) == 1
    assert capsys.readouterr().err == "lsrl: error: input 3 at step 2 is not one of the input's tokens 0..3 (--vocab 3)\n"
