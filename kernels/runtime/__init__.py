"""What every paper's kernels need, once: device detection, the bound direct launch, the tuner,
one timing harness, same-run ceilings, whole-step CUDA graph capture (``graphs``) and test
support.

Import the submodules (``kernels.runtime.device`` ...); this package imports nothing heavy, so
``device`` can be read before torch or triton is first imported.
"""
