"""Suite-wide setup: kernels run through Triton's CPU interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton is first imported, hence here, at the root.
"""

import os

from kernels.runtime.device import use_interpreter_without_gpu

use_interpreter_without_gpu()
# A started service freezes what it holds out of the garbage collector's reach (for its life).
# This process starts hundreds of apps in turn: freezing each would keep every earlier one.
# Live servers (tests/app/live.py) are processes of their own and freeze, as in production.
os.environ.setdefault("PITH_GC_FREEZE_AT_STARTUP", "false")
