"""The distributed scenarios of `test_distributed_cpu.py` on two CUDA devices with NCCL: FORGE
tensor parallel, SAGE/SinkGD/Lion under FSDP2 and data-parallel ChunkFT, each equal to one
process (fp32, TF32 off). Skipped unless two CUDA devices are present."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices"),
]

_SPEC = importlib.util.spec_from_file_location(
    "distributed_scenarios", Path(__file__).with_name("test_distributed_cpu.py")
)
scenarios = importlib.util.module_from_spec(_SPEC)  # the launcher and script, not its tests
_SPEC.loader.exec_module(scenarios)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return scenarios.launch(tmp_path_factory.mktemp("dist_gpu"), "nccl")


def test_every_sharded_path_equals_one_process_on_two_gpus(results: dict[str, Any]) -> None:
    for name in ("forge_adamw", "forge_lion"):
        res = results[name]
        scenarios._assert_equal_to_one_process(
            {k: v for k, v in res.items() if isinstance(v, dict)}
        )
        assert res["weights_have_no_grad"]
    for name in ("sage", "lion", "sinkgd", "sage_hybrid", "sinkgd_hybrid"):
        scenarios._assert_equal_to_one_process(results[name])
    scenarios._assert_equal_to_one_process(results["chunkft"]["params"])


def test_chunkft_reports_peak_device_memory_of_each_gpu(results: dict[str, Any]) -> None:
    reports = results["chunkft"]["memory"]
    assert len(reports) == 2
    assert [r["device"] for r in reports] == ["cuda:0", "cuda:1"]
    assert all(r["peak_device_bytes"] and r["peak_device_bytes"] > 0 for r in reports)
