"""`make serve` runs from a light environment (the service's dependencies only): the service
must start, import the seeds and load the committed replication records without importing
torch, triton, numpy, transformers, the kernels or any test tool."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "torch",
    "triton",
    "numpy",
    "transformers",
    "kernels",
    "pytest",
    "hypothesis",
    "schemathesis",
)
STARTUP = """
import json, sys
from app.cli import load_results, seed_if_empty
from app.main import create_app
from app.settings import Settings
from app.storage.migrate import upgrade_database
settings = Settings(database_url=sys.argv[1], key_file=sys.argv[2])
upgrade_database(settings.database_url)
seed_if_empty(settings)
load_results(settings)
create_app(settings)
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[3])))
print(json.dumps(heavy))
"""


def test_the_service_starts_without_heavy_imports(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            STARTUP,
            f"sqlite:///{tmp_path / 'pith.db'}",
            str(tmp_path / "key.json"),
            json.dumps(HEAVY),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == []  # and nothing else on stdout: startup talks on stderr
    assert "replication results from" in out.stderr  # the committed records were loaded


def test_make_serve_installs_only_the_service() -> None:
    makefile = (REPO / "Makefile").read_text()
    serve = re.search(r"^serve: (\S+)\n\t(.+)$", makefile, re.M)
    assert (
        serve
        and serve.group(1) == "$(SERVE_STAMP)"
        and "$(SERVE_VENV)/bin/pith serve" in serve.group(2)
    )
    recipe = re.search(r"^\$\(SERVE_STAMP\):.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe
    installs = [line for line in recipe.group(1).splitlines() if "pip install" in line]
    assert installs and all("-e ." in line and "[" not in line for line in installs)
    assert "torch" not in recipe.group(1)
