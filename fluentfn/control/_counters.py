"""Host counters: polled from live hosts, kept for hosts that stopped or were killed."""

from __future__ import annotations

import asyncio
import logging

from .._stats import Ledger
from .._tables import Group, Host

log = logging.getLogger("fluentfn.directory")
POLL_S = 1.0  # how often host counters are read (a killed host loses what came after)


class Counters:
    """Cluster-wide counters over the groups' hosts, past and present."""

    def __init__(self, groups: dict[str, Group]) -> None:
        self._groups = groups
        self._ledger = Ledger()

    def totals(self) -> dict[str, int]:
        return self._ledger.totals()

    async def poll(self) -> None:
        hosts = [(f"{name}/{hid}", h) for name, g in self._groups.items() for hid, h in g.hosts.items()]
        up = [(key, h) for key, h in hosts if h.up.is_set()]
        results = await asyncio.gather(
            *(asyncio.wait_for(h.handle.report.remote(), 10) for _, h in up), return_exceptions=True
        )
        for (key, _), result in zip(up, results, strict=True):
            if not isinstance(result, BaseException):
                self._ledger.seen(key, *result)

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.poll()
            except Exception:
                log.exception("polling host counters failed")

    async def retire(self, g: Group, hosts: list[Host]) -> None:
        """Last counts of hosts about to stop; they stay in the totals."""
        started = [h for h in hosts if h.up.is_set()]  # one never placed would never answer
        reports = await asyncio.gather(
            *(asyncio.wait_for(h.handle.report.remote(), 30) for h in started), return_exceptions=True
        )
        for host, report in zip(started, reports, strict=True):
            if not isinstance(report, BaseException):
                self._ledger.seen(f"{g.options.group}/{host.hid}", *report)
        for host in hosts:
            self._ledger.ended(f"{g.options.group}/{host.hid}")
