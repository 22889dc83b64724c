"""``ff.FaasProfile``: how the FaaS baseline mode behaves, and the paper's preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import FluentError

# Hellerstein et al., "Serverless Computing: One Step Forward, Two Steps Back", CIDR 2019,
# Table 1: a 1 KB message between Lambda functions through S3 (one write, one read)
# took about 108 ms, so each storage operation costs about 54 ms; section 3.1 measured
# 538 Mbit/s of network bandwidth for a Lambda function.
PAPER_MESSAGE_VIA_S3_MS = 108.0
PAPER_BANDWIDTH_MBPS = 538.0


@dataclass(frozen=True, slots=True)
class FaasProfile:
    """Settings of ``mode="faas"``.

    ``cold_start``: every invocation in a fresh worker process (else workers are reused,
    but nothing in memory survives an invocation). ``max_duration_s``: lifetime cap; an
    invocation past it is killed and the caller gets ``ff.FunctionTimeout``.
    ``storage_latency_ms`` and ``bandwidth_mbps`` emulate a remote store (off by
    default, so local measurements stay honest). ``allow_gpus``: FaaS platforms of the
    paper's era had none, so GPU types are refused unless this is set.
    """

    cold_start: bool = True
    max_duration_s: float = 900.0
    storage_latency_ms: float = 0.0
    bandwidth_mbps: float | None = None
    allow_gpus: bool = False

    def __post_init__(self) -> None:
        if self.max_duration_s <= 0:
            raise FluentError("max_duration_s must be positive")
        if self.storage_latency_ms < 0:
            raise FluentError("storage_latency_ms must be >= 0")
        if self.bandwidth_mbps is not None and self.bandwidth_mbps <= 0:
            raise FluentError("bandwidth_mbps must be positive")

    @classmethod
    def paper(cls, **overrides: Any) -> FaasProfile:
        """The paper's measurements: 54 ms per storage operation, 538 Mbit/s."""
        settings: dict[str, Any] = {
            "storage_latency_ms": PAPER_MESSAGE_VIA_S3_MS / 2,
            "bandwidth_mbps": PAPER_BANDWIDTH_MBPS,
        }
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
