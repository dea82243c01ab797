"""The shared table of test programs (docs/architecture.md, "The shared test table").

Every row is a program with its parameters and runs (input sequence, expected outputs). Expected
outputs are computed with plain Python, independently of the compiler. The same rows drive the
interpreter (exact and float64), the text round trip, every pass and every backend: a new feature
adds rows. Rows live in topic modules (``lsrl/corpus/cases_*.py``, built on ``lsrl/corpus/rows.py``), each
exporting ``CASES``.
"""

from __future__ import annotations

from lsrl.corpus.rows import Case, Run, as_fraction, tokens

__all__ = ["CASES", "Case", "Run", "as_fraction", "case", "tokens"]


def _collect() -> list[Case]:
    """Rows live in topic modules (``lsrl/corpus/cases_*.py``), each exporting ``CASES``."""
    from lsrl.corpus import (
        cases_gated,
        cases_lsrl,
        cases_precision,
        cases_schedules,
        cases_tracr,
    )

    return [*cases_lsrl.CASES, *cases_tracr.CASES, *cases_precision.CASES, *cases_gated.CASES,
            *cases_schedules.CASES]


CASES: list[Case] = _collect()


def case(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(name)
