"""Where kernels run: on a CUDA GPU, or through Triton's CPU interpreter.

The ONLY place that reads ``TRITON_INTERPRET``. Triton reads the variable when it is first
imported, so ``use_interpreter_without_gpu()`` must run before that (the test root and the claims'
entry points call it first thing); everything else asks ``interpreting()``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module imports no torch at run time: it runs before torch is loaded
    import torch

INTERPRET_ENV = "TRITON_INTERPRET"
FORCE_GPU_ENV = "PITH_FORCE_GPU"


def gpu_present() -> bool:
    """An NVIDIA driver is on this machine (read without importing torch)."""
    return os.path.exists("/dev/nvidiactl") or bool(os.environ.get(FORCE_GPU_ENV))


def use_interpreter_without_gpu() -> bool:
    """Ask for Triton's CPU interpreter when there is no GPU (an explicit setting wins);
    returns whether the interpreter is on. Call before triton is first imported."""
    if not gpu_present():
        os.environ.setdefault(INTERPRET_ENV, "1")
    return interpreting()


def interpreting() -> bool:
    """Kernels run through Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get(INTERPRET_ENV, "0") == "1"


def kernels_run_on(device: torch.device) -> bool:
    """Triton kernels can take tensors on `device`: CUDA, or the CPU under the interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def on_gpu() -> bool:
    """A CUDA device is usable by torch (and the interpreter is off)."""
    import torch

    return torch.cuda.is_available() and not interpreting()


def default_device() -> torch.device:
    """The device a claim or benchmark measures on: CUDA when usable, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe(device: torch.device) -> dict[str, str]:
    """The device's name, memory and mode, for a record's environment (plain strings)."""
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "device": torch.cuda.get_device_name(device),
            "device_memory_bytes": str(int(props.total_memory)),
            "device_capability": f"{props.major}.{props.minor}",
        }
    out = {"device": "cpu"}
    if interpreting():
        out["triton_mode"] = "interpreter"
    return out
