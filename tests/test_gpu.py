"""Real-GPU checks (marked ``gpu``): skipped on machines without CUDA and torch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

import fluentfn as ff  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]


class _MatMul:
    def run(self, n: int) -> dict[str, object]:
        import torch

        a = torch.randn(n, n, device="cuda")
        b = (a @ a).sum().item()
        return {"device": torch.cuda.get_device_name(0), "gpu_ids": list(ff.context().gpu_ids), "finite": b == b}


MatMul = ff.actor(name="GpuMatMul", shards=1, num_gpus=1)(_MatMul)


def test_torch_matmul_on_cuda(cluster: ff.Cluster) -> None:
    out = MatMul["m"].run(1024)
    assert out["finite"] and out["gpu_ids"] and out["device"]
