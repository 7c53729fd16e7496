"""Suite-wide setup: kernels run through Triton's CPU interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton is first imported, hence here, at the root.
"""

from kernels.runtime.device import use_interpreter_without_gpu

use_interpreter_without_gpu()
