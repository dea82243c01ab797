"""Running a compiled model's files the way a user without lsrl does: in a fresh Python process
whose import system refuses the compiler's packages (tests/test_codegen.py, tests/test_mlir.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

COMPILER_PACKAGES = ("lsrl", "ir", "passes", "backends", "tests")

# The start of every such script: the compiler's packages made unimportable, and checked to be.
NO_COMPILER = f'''
import importlib.abc, json, os, sys

class NoCompiler(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {COMPILER_PACKAGES!r}:
            raise ImportError("the generated model imports " + name)
        return None

sys.meta_path.insert(0, NoCompiler())
try:
    import lsrl
except ImportError:
    pass
else:
    raise SystemExit("the compiler can still be imported")
'''


def run_alone(script: str, argument: Any, cwd: str) -> Any:
    """The JSON that ``NO_COMPILER + script`` prints, given ``argument`` as JSON in ``sys.argv[1]``."""
    done = subprocess.run([sys.executable, "-c", NO_COMPILER + script, json.dumps(argument)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
