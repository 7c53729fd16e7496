"""docker-compose.yml, checked with what runs here (no Docker engine): its shape, that it is
configured only through environment variables the programs really read, and nginx's config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_and_their_order() -> None:
    assert set(SERVICES) == {"postgres", "migrate", "api", "proxy", "worker"}
    assert SERVICES["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    replicas = SERVICES["api"]["deploy"]["replicas"]
    assert re.fullmatch(r"\$\{PITH_API_REPLICAS:-([2-9]|\d\d+)\}", str(replicas))


def test_worker_reserves_a_gpu_and_stops_cleanly() -> None:
    worker = SERVICES["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["stop_signal"] == "SIGTERM"  # the worker releases its lease on SIGTERM


def test_api_is_configured_only_by_settings_it_reads() -> None:
    known = {f"PITH_{name.upper()}" for name in Settings.model_fields}
    for name in ("migrate", "api"):
        env = SERVICES[name]["environment"]
        assert set(env) <= known, set(env) - known
        assert "PITH_DATABASE_URL" in env and "PITH_ADMIN_TOKEN" in env
        # secrets come from the environment, never written into the file
        assert env["PITH_ADMIN_TOKEN"].startswith("${")
        assert "${POSTGRES_PASSWORD" in env["PITH_DATABASE_URL"]


def test_worker_reads_the_variables_compose_sets() -> None:
    from replication.worker import build_parser

    env = SERVICES["worker"]["environment"]
    source = (ROOT / "replication" / "worker.py").read_text()
    for name in env:
        assert f'"{name}"' in source, f"pith-worker does not read {name}"
    assert build_parser().parse_args(["claim", "selftest"]).profile == "smoke"


def test_proxy_forwards_to_the_api_service() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api:8000" in conf
    assert SERVICES["proxy"]["volumes"][0].startswith("./deploy/nginx.conf:")


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed here")
def test_nginx_accepts_the_proxy_config(tmp_path: Path) -> None:
    # `api` resolves only inside compose's network: check the syntax with it mapped to loopback
    conf = (
        (ROOT / "deploy" / "nginx.conf")
        .read_text()
        .replace("server api:8000", "server 127.0.0.1:8000")
    )
    conf = conf.replace(
        "events {", f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/e.log;\nevents {{", 1
    )
    (tmp_path / "nginx.conf").write_text(conf)
    out = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
