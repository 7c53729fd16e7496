"""`pith-worker` and `pith` behave as command-line tools: `--version`, only the result on stdout
(so `| jq` works), progress and logs on stderr, a failed claim's real error and log tail, run
directories removed unless `--keep`, and `--help` for every option."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
WORKER, PITH = BIN / "pith-worker", BIN / "pith"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [*args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )


@pytest.mark.parametrize("tool", [PITH, WORKER])
def test_version(tool: Path, tmp_path: Path) -> None:
    out = _run(tmp_path, str(tool), "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{tool.name} {version('pith')}"


def test_claim_prints_only_its_json_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = _run(tmp_path, str(WORKER), "claim", "selftest", "--profile", "smoke")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)  # the whole of stdout is one JSON document
    assert summary["error"] is None and summary["result"]["verdict"] == "replicated"
    assert summary["log"] is None and len(summary["log_sha256"]) == 64
    assert "phase" in out.stderr and "hashing" in out.stderr  # progress, on stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("claim-")] == []


def test_claim_keep_keeps_the_run_directory(tmp_path: Path) -> None:
    out = _run(tmp_path, str(WORKER), "claim", "selftest", "--keep", "--json")
    summary = json.loads(out.stdout)
    log = Path(summary["log"])
    assert log.is_file() and log.parent.parent == tmp_path
    events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    phases = [e for e in events if e["event"] == "phase"]
    assert [p["phase"] for p in phases] == ["hashing", "done"]
    assert all(p["elapsed_s"] >= 0 for p in phases)


def test_claim_runs_a_profile_across_the_gpus_it_needs(tmp_path: Path) -> None:
    """selftest's `two_gpus` profile needs two: torchrun starts two processes (no GPU used)."""
    out = _run(tmp_path, str(WORKER), "claim", "selftest", "--profile", "two_gpus")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["result"]["figures"]["world_size"] == "2"


def test_a_failed_claim_reports_its_real_error_and_log_tail(tmp_path: Path) -> None:
    out = _run(tmp_path, str(WORKER), "claim", "selftest", "--profile", "crash")
    assert out.returncode == 1
    summary = json.loads(out.stdout)
    assert summary["error"] == "claim exited with status 3: selftest: crashing on purpose"
    assert "selftest: crashing on purpose" in summary["log_tail"]
    assert "crashing on purpose" in out.stderr and "last lines of its log" in out.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("claim-")] == []


def test_a_bad_profile_shows_the_claims_own_message(tmp_path: Path) -> None:
    out = _run(tmp_path, str(WORKER), "claim", "selftest", "--profile", "no-such-profile")
    assert out.returncode == 1
    error = json.loads(out.stdout)["error"]
    assert error.startswith("claim exited with status 2: ")
    assert "no-such-profile" in error  # argparse's "invalid choice" line of the claim itself


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_option_has_help() -> None:
    from pith_core.cli import build_parser as pith_parser
    from replication.worker import build_parser as worker_parser

    missing = []
    for root in (pith_parser(), worker_parser()):
        for parser in _parsers(root):
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    continue
                if not action.help or action.help == argparse.SUPPRESS:
                    missing.append(
                        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
                    )
    assert missing == []


def test_help_documents_serve(tmp_path: Path) -> None:
    out = _run(tmp_path, str(PITH), "serve", "--help")
    assert out.returncode == 0
    for option in ("--database-url", "--host", "--port", "--workers", "--no-seeds", "--log-level"):
        assert option in out.stdout


def test_run_help_says_where_the_logs_are_kept(tmp_path: Path) -> None:
    out = _run(tmp_path, str(WORKER), "run", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "--logs" in text and "<log_sha256>.log" in text and "beside the --state file" in text
