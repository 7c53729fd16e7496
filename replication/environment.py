"""What a replication record says about where it ran: GPU, driver, CUDA, library versions, commit.

Every value is a string (signed payloads hold no floats); what cannot be read is "unknown".
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path

UNKNOWN = "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def _command(args: list[str], cwd: Path | None = None) -> str:
    if not shutil.which(args[0]):
        return UNKNOWN
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=cwd, check=True)
    except (subprocess.SubprocessError, OSError):
        return UNKNOWN
    return out.stdout.strip() or UNKNOWN


def git_commit(repo: Path | None = None) -> str:
    """The code's commit: PITH_GIT_COMMIT when set (a copy without .git), else git's HEAD."""
    if os.environ.get("PITH_GIT_COMMIT"):
        return os.environ["PITH_GIT_COMMIT"]
    root = repo or Path(__file__).resolve().parents[1]
    return _command(["git", "rev-parse", "HEAD"], cwd=root)


def collect() -> dict[str, str]:
    """The environment of this process's machine, read without starting CUDA in this process."""
    gpus = _command(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    lines = [ln.split(",") for ln in gpus.splitlines()] if gpus != UNKNOWN else []
    env = {
        "gpu_name": lines[0][0].strip() if lines else "none",
        "gpu_count": str(len(lines)),
        "gpu_memory": lines[0][2].strip() if lines and len(lines[0]) > 2 else "none",
        "driver": lines[0][1].strip() if lines and len(lines[0]) > 1 else "none",
        "cuda": UNKNOWN,
        "torch": _version("torch"),
        "triton": _version("triton"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pith": _version("pith"),
        "git_commit": git_commit(),
    }
    try:  # torch.version.cuda is a constant of the build: no CUDA context is created
        import torch

        env["cuda"] = str(torch.version.cuda or "none")
        env["torch"] = str(torch.__version__)  # a TorchVersion: signed payloads take plain str
    except ImportError:
        pass
    return env
