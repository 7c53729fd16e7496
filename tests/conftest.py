"""Suite-wide setup: kernels run through Triton's CPU interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton is first imported, hence here, at the root.
"""

import os

if not os.path.exists("/dev/nvidiactl") and not os.environ.get("PITH_FORCE_GPU"):
    os.environ.setdefault("TRITON_INTERPRET", "1")
