"""Real-GPU checks (marked ``gpu``): skipped on machines without CUDA and torch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

import fluentfn as ff  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _free_gpus(cluster: ff.Cluster) -> Iterator[None]:
    """A machine may have a single GPU: each test's GPU hosts give it back when it ends."""
    yield
    for gpu_type in ("GpuMatMul", "GpuServer"):
        cluster.stop_hosts(gpu_type)


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


class _TorchMlp:
    def __init__(self) -> None:
        self.seed = 0

    def serve(self, device: str, batches: int, size: int) -> dict[str, float]:
        """Batched MLP inference; seconds per batch and a checksum of the answers."""
        import time

        import torch

        torch.manual_seed(self.seed)
        model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10)).to(device)
        data = torch.randn(batches, size, 512)
        with torch.no_grad():
            model(data[0].to(device))  # warm up (CUDA context, kernels)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            total = 0
            for batch in data:
                total += int(model(batch.to(device)).argmax(dim=1).sum().item())
            elapsed = time.perf_counter() - t0
        return {"s_per_batch": elapsed / batches, "checksum": float(total)}


GpuServer = ff.actor(name="GpuServer", shards=1, num_gpus=1)(_TorchMlp)
CpuServer = ff.actor(name="CpuServer", shards=1)(_TorchMlp)


def test_serving_gpu_actor_vs_cpu_actor(cluster: ff.Cluster) -> None:
    gpu = GpuServer["s"].serve("cuda", 50, 256)
    cpu = CpuServer["s"].serve("cpu", 50, 256)
    # Same model and inputs: the answers agree (up to rare float ties); the speed-up is reported.
    assert abs(gpu["checksum"] - cpu["checksum"]) <= 0.01 * max(1.0, cpu["checksum"])
    print(f"serving MLP batch of 256: gpu {gpu['s_per_batch'] * 1e3:.2f} ms, cpu {cpu['s_per_batch'] * 1e3:.2f} ms, "
          f"speed-up {cpu['s_per_batch'] / gpu['s_per_batch']:.1f}x")  # fmt: skip
