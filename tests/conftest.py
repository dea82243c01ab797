import sys
from pathlib import Path

# The table imports ``tests.programs``; make the repository root importable however pytest is run.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
