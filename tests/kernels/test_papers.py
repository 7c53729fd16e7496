"""The registry of reproduced papers: every paper folder has the one layout, imports, and has a
claim; a sixth paper has a place to go."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from kernels.papers import DROP_IN_FILES, PAPERS, REQUIRED_FILES

REPO = Path(__file__).resolve().parents[2]


def test_every_paper_folder_is_registered() -> None:
    folders = {
        p.name
        for p in (REPO / "kernels").iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "runtime"
    }
    assert folders == set(PAPERS)  # a paper folder is registered, a registered paper has one
    assert {"forge", "sage"} <= folders


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_paper_folder_has_the_layout(name: str) -> None:
    paper = PAPERS[name]
    assert paper.module == f"kernels.{name}" and paper.arxiv.count(".") == 1
    folder = REPO / "kernels" / name
    missing = [f for f in REQUIRED_FILES if not (folder / f).exists()]
    assert not missing, f"{name} lacks {missing}"
    assert any((folder / f).exists() for f in DROP_IN_FILES), f"{name} has no drop-in"
    module = importlib.import_module(paper.module)
    assert module.__all__, f"{paper.module} declares its public API in __all__"
    for attr in module.__all__:
        assert hasattr(module, attr), f"{paper.module}.{attr}"
    assert not (folder / "bench.py").exists(), "benchmarks live in bench/kernels/"


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_paper_has_a_claim_and_a_bench(name: str) -> None:
    from replication.claims.registry import CLAIMS

    claim = CLAIMS.get(name)
    if claim is None:
        pytest.skip(f"{name}: no claim package yet")
    assert claim.arxiv == PAPERS[name].arxiv
    assert (REPO / "bench" / "kernels" / f"{name}.py").exists()
