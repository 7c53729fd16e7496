"""A real `pith serve` in a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .helpers import ADMIN_TOKEN

PITH = Path(sys.executable).parent / "pith"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a power cut or the OOM killer does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(db_url: str, workdir: Path, **env: str) -> LiveServer:
    """`pith serve` (migrations, seed import when empty, uvicorn) on its own port, ready."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"server-{port}.log"
    environment = {
        **os.environ,
        "PITH_DATABASE_URL": db_url,
        "PITH_KEY_FILE": str(workdir / "registry-key.json"),
        "PITH_ADMIN_TOKEN": ADMIN_TOKEN,
        "PITH_HOST": "127.0.0.1",
        "PITH_PORT": str(port),
        "PITH_ACCESS_LOG": "false",
        "PITH_RESULTS_DIR": str(workdir / "no-results"),  # the committed records only when asked
        "PITH_GC_FREEZE_AT_STARTUP": "true",  # production's default (tests/conftest.py)
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(PITH), "serve", "--log-level", "warning"],
            cwd=workdir,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pith serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"pith serve did not answer in 90 s:\n{log.read_text()}")
