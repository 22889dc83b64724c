"""``ff.FaasProfile``: how the FaaS baseline mode behaves, and the paper's preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ._numbers import check_number
from .errors import FluentError

# Hellerstein et al., "Serverless Computing: One Step Forward, Two Steps Back", CIDR 2019,
# Table 1: a 1 KB message between Lambda functions through S3 (one write, one read)
# took about 108 ms, so each storage operation costs about 54 ms; section 3.1 measured
# 538 Mbit/s of network bandwidth for a Lambda function.
PAPER_MESSAGE_VIA_S3_MS = 108.0
PAPER_BANDWIDTH_MBPS = 538.0


# Table 1 again: a 1 KB item through DynamoDB (one write, one read) took about 11 ms.
PAPER_RECORD_VIA_DYNAMODB_MS = 11.0
# AWS Lambda keeps an idle execution environment for reuse for minutes (observed 5 to 15,
# not a documented constant); its default concurrency quota is 1,000 per account.
LAMBDA_KEEP_ALIVE_S = 600.0
LAMBDA_CONCURRENCY = 1000
# The platform's own share of a cold start (placing and booting an execution environment,
# before the runtime loads the function's code): AWS publishes Python cold starts of a few
# hundred ms in all (its "Operating Lambda: performance optimization" guide; measurements
# of a minimal Python 3.11 function put the init duration near 100-150 ms on top of this).
LAMBDA_COLD_START_OVERHEAD_MS = 150.0
# Lambda runs an asynchronous invocation (our ``tell``) again when it fails: twice by
# default (its MaximumRetryAttempts), about a minute and then two minutes later.
LAMBDA_ASYNC_RETRIES = 2
LAMBDA_ASYNC_RETRY_DELAY_S = 60.0


def _check_count(name: str, value: object, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise FluentError(f"{name} must be an int from 0 to {most}, not {value!r}")


@dataclass(frozen=True, slots=True)
class FaasProfile:
    """Settings of ``mode="faas"``: the platform model and the emulated storage.

    The platform (as AWS Lambda runs functions): each invocation runs in an execution
    environment (a worker process) of its type; an idle environment is reused, warm, for
    ``keep_alive_s`` after its last use, and a new one starts cold when none is idle.
    At most ``max_concurrency`` invocations of a type run at once; beyond that a call is
    throttled (``ff.Overloaded``) and a ``tell`` waits in the platform's queue.
    ``invocation_overhead_ms`` adds a fixed cost per invocation (the platform's front end).
    ``cold_start=True``: every invocation in a fresh environment (the worst case; no reuse).
    ``prestarted``: empty environments (worker processes without a function) the platform
    keeps started, as Lambda keeps capacity ready: a cold start takes one and costs what a
    cold start costs there — ``cold_start_overhead_ms`` (the platform's share, 0 unless
    set; ``paper()`` uses Lambda's) plus loading the function's code and constructor — not
    a process start. GPU types start their environments themselves.
    Nothing of an actor's state survives in memory between invocations, warm or cold;
    module-level caches of user code do survive in a warm environment, as on Lambda.

    A ``tell`` whose invocation fails in the platform (killed at its cap, its environment
    died, no environment, its state could not be written) is run again, as Lambda runs an
    asynchronous invocation again: up to ``async_retries`` times, the first
    ``async_retry_delay_s`` later and each next one twice as late. The request id makes
    the runs of an actor's turn take effect once; an error the method raised is the
    turn's outcome and is not retried.

    ``max_duration_s``: lifetime cap; an invocation past it is killed and the caller gets
    ``ff.FunctionTimeout``. ``allow_gpus``: FaaS platforms of the paper's era had none,
    so GPU types are refused unless this is set.

    Storage: messages and results are objects (as in S3): ``storage_latency_ms`` per
    operation; state records, recorded replies and reminders are items (as in DynamoDB):
    ``state_latency_ms`` per operation (None: the same as objects), except records over
    400 KB (DynamoDB's item limit), which are objects. ``bandwidth_mbps`` limits every
    transfer. All emulation is off by default, so local measurements stay honest.
    """

    cold_start: bool = False
    max_duration_s: float = 900.0
    storage_latency_ms: float = 0.0
    bandwidth_mbps: float | None = None
    allow_gpus: bool = False
    keep_alive_s: float = LAMBDA_KEEP_ALIVE_S
    max_concurrency: int = LAMBDA_CONCURRENCY
    invocation_overhead_ms: float = 0.0
    state_latency_ms: float | None = None
    prestarted: int = 2
    cold_start_overhead_ms: float = 0.0
    async_retries: int = LAMBDA_ASYNC_RETRIES
    async_retry_delay_s: float = 1.0

    def __post_init__(self) -> None:
        check_number("max_duration_s", self.max_duration_s, positive=True)
        check_number("storage_latency_ms", self.storage_latency_ms, positive=False)
        if self.bandwidth_mbps is not None:
            check_number("bandwidth_mbps", self.bandwidth_mbps, positive=True)
        check_number("keep_alive_s", self.keep_alive_s, positive=False)
        if isinstance(self.max_concurrency, bool) or not isinstance(self.max_concurrency, int):
            raise FluentError(f"max_concurrency must be an int, not {self.max_concurrency!r}")
        if self.max_concurrency < 1:
            raise FluentError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        check_number("invocation_overhead_ms", self.invocation_overhead_ms, positive=False)
        check_number("cold_start_overhead_ms", self.cold_start_overhead_ms, positive=False)
        _check_count("prestarted", self.prestarted, 64)
        _check_count("async_retries", self.async_retries, 100)
        check_number("async_retry_delay_s", self.async_retry_delay_s, positive=False)
        if self.state_latency_ms is not None:
            check_number("state_latency_ms", self.state_latency_ms, positive=False)

    @property
    def record_latency_ms(self) -> float:
        """Latency of one state-record operation."""
        return self.storage_latency_ms if self.state_latency_ms is None else self.state_latency_ms

    @classmethod
    def paper(cls, **overrides: Any) -> FaasProfile:
        """The paper's measurements (Table 1, section 3.1): a 1 KB message through S3 in
        108 ms (54 ms per operation), through DynamoDB in 11 ms (5.5 ms per operation),
        538 Mbit/s per function; warm environments as on Lambda, and Lambda's cold starts
        and retries of asynchronous invocations."""
        settings: dict[str, Any] = {
            "storage_latency_ms": PAPER_MESSAGE_VIA_S3_MS / 2,
            "state_latency_ms": PAPER_RECORD_VIA_DYNAMODB_MS / 2,
            "bandwidth_mbps": PAPER_BANDWIDTH_MBPS,
            "cold_start_overhead_ms": LAMBDA_COLD_START_OVERHEAD_MS,
            "async_retry_delay_s": LAMBDA_ASYNC_RETRY_DELAY_S,
        }
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
