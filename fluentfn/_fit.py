"""Waiting for a Ray node that can hold a demand.

Ray queues a task or an actor that no node can hold for ever; callers of fluentfn get a
clear error instead, after a bounded wait for such a node to join.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import _config
from .errors import FluentError
from .placement import missing_resources


async def wait_for_fit(demand: dict[str, float], what: str) -> None:
    """Return once a live node can hold ``demand``; raise FluentError naming ``what`` and the
    shortfall if none can after ``FLUENTFN_PLACEMENT_WAIT_S``. Asks Ray's GCS off the loop."""
    import ray

    demand = {k: v for k, v in demand.items() if v}
    if not demand:
        return
    wait_s = _config.PLACEMENT_WAIT_S
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        listed: list[dict[str, Any]] = await asyncio.to_thread(ray.nodes)
        why = missing_resources(demand, [n["Resources"] for n in listed if n.get("Alive")])
        if why is None:
            return
        if loop.time() > deadline:
            raise FluentError(
                f"{what} cannot be placed on this cluster ({why}); waited {wait_s:g} s for a node that fits"
            )
        await asyncio.sleep(0.5)
