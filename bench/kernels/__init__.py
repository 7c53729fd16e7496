"""Benchmarks of the kernels under ``kernels/``, one module per paper (``python -m
bench.kernels.<paper>``), over the shared timing harness (``kernels.runtime.timing``) and
ceilings (``kernels.runtime.ceilings``). Launch stubs for host-path timing live here, never in
``kernels/``."""
