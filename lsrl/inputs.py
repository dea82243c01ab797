"""Input tokens for ``lsrl run --input``: text on the command line or a JSON file.

Text: tokens separated by spaces; a token of length > 1 is comma-separated numbers
("0.25,0.1,0,0 1,2,3,4"); a number may be an integer, a decimal or a fraction p/q, read exactly.
``@FILE.json``: a JSON list of tokens; a token is a number or a list of numbers, and a number may be
a string ("1/3") to keep it exact.
"""

from __future__ import annotations

import json

from gmpy2 import mpq

from lsrl.errors import LsrlError, UsageError, read_user_file
from lsrl.ir.graph import Loc
from lsrl.ir.numbers import exact

Token = list[mpq]


def read_tokens(spec: str) -> list[Token]:
    tokens = _read_json(spec[1:]) if spec.startswith("@") else _read_text(spec)
    if not tokens:
        raise UsageError("--input holds no tokens")
    return tokens


def check_length(tokens: list[Token], dim: int, input_name: str) -> None:
    for i, token in enumerate(tokens, 1):
        if len(token) != dim:
            raise UsageError(
                f"token {i} of --input has {len(token)} number{'s' if len(token) != 1 else ''}, but the "
                f"program's input {input_name} has length {dim}"
            )


def _read_text(text: str) -> list[Token]:
    tokens = []
    for i, word in enumerate(text.split(), 1):
        tokens.append([_number(part, f"token {i} of --input ('{word}')") for part in word.split(",")])
    return tokens


def _read_json(path: str) -> list[Token]:
    text = read_user_file(path, "input file ")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LsrlError(f"invalid JSON: {e.msg}", Loc(path, e.lineno, e.colno)) from None
    if not isinstance(data, list):
        raise UsageError(f"{path} must hold a JSON list of tokens, not {type(data).__name__}")
    tokens = []
    for i, item in enumerate(data, 1):
        what = f"token {i} of {path}"
        parts = item if isinstance(item, list) else [item]
        if not parts:
            raise UsageError(f"{what} is an empty list")
        tokens.append([_number(part, what) for part in parts])
    return tokens


def _number(value: object, what: str) -> mpq:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return exact(value)
        except (ValueError, ZeroDivisionError):
            pass
    raise UsageError(f"{what}: {json.dumps(value) if not isinstance(value, str) else repr(value)} is not a number")
