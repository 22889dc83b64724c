"""Log levels for fluentfn, Ray and gRPC: quiet unless ``FLUENTFN_LOG`` asks."""

from __future__ import annotations

import logging
import os

from ._config import log_level

__all__ = ["log_level", "quiet_logs"]


def quiet_logs() -> None:
    """Keep Ray's and gRPC's chatter off the user's terminal unless FLUENTFN_LOG asks."""
    level = log_level()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if level not in ("DEBUG", "INFO") else "INFO")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    logging.getLogger("ray").setLevel(level)
    logging.getLogger("fluentfn").setLevel(level)
