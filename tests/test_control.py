"""The control plane's rooms, without Ray: what callers are told about routes."""

from __future__ import annotations

import asyncio

import pytest

from fluentfn._clusterconfig import ClusterConfig
from fluentfn._tables import Group, Part, Route
from fluentfn.control._counters import Counters
from fluentfn.control._hosts import Hosts
from fluentfn.placement import ActorOptions

pytestmark = pytest.mark.timeout(60)


def test_a_partition_marked_ready_without_a_route_is_waited_for() -> None:
    """A stop takes a partition's route; a report_down that ended meanwhile may re-arm its
    readiness. A caller resolving it then waits for the next owner's route (it failed
    with AssertionError: a loaded CI run hit it)."""

    async def main() -> Route:
        g = Group(ActorOptions(name="G", shards=1, max_hosts=1), [Part()])
        g.started = True
        config = ClusterConfig(token="t", store="sqlite:///unused", namespace="n", cluster_id="c")
        hosts = Hosts(config, object, {"G": g}, Counters({}))
        part = g.parts[0]
        part.ready.set()  # re-armed, with no route

        async def claimed_later() -> None:
            await asyncio.sleep(0.2)
            part.route = Route("127.0.0.1:1", 3, "node")
            part.ready.set()

        claim = asyncio.ensure_future(claimed_later())
        route = await hosts.resolve("G", 0)
        await claim
        return route

    assert asyncio.run(main()) == Route("127.0.0.1:1", 3, "node")
