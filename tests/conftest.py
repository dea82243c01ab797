"""Settings every test process needs before the tests import anything."""

import os
from pathlib import Path

# Triton reads TRITON_INTERPRET when it is first imported (by a test's importorskip, or by a
# generated kernels.py): without an NVIDIA GPU the triton target's kernels run in its interpreter
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")
