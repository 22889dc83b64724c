"""Elasticity policies without Ray: partition placement and autoscaling decisions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn.elastic._assign import assign, moves, quotas
from fluentfn.elastic._autoscale import Autoscale, AutoscalePolicy, Sample

pytestmark = pytest.mark.timeout(120)

hosts_st = st.dictionaries(
    st.sampled_from([f"h{i}" for i in range(10)]), st.sampled_from(["n1", "n2", "n3"]), min_size=1
)


@settings(max_examples=300, deadline=None)
@given(partitions=st.integers(1, 96), before=hosts_st, after=hosts_st)
def test_placement_is_complete_even_and_moves_little(
    partitions: int, before: dict[str, str], after: dict[str, str]
) -> None:
    old = assign(partitions, before, {})
    new = assign(partitions, after, old)
    assert sorted(new) == list(range(partitions))  # every partition, once
    assert set(new.values()) <= set(after)  # only on live hosts
    counts = [list(new.values()).count(h) for h in after]
    assert max(counts) - min(counts) <= 1  # even over hosts
    share = quotas(after, partitions)
    for p, host in old.items():  # a partition moves only if its host left or was over its share
        if new[p] != host:
            kept = sum(1 for q, h in new.items() if h == host and old.get(q) == host)
            assert host not in after or kept == share[host]
    assert assign(partitions, after, new) == new  # placement settles: no moves without a change


def test_placement_spreads_onto_a_joining_node_and_says_what_moves() -> None:
    one = {"a": "n1", "b": "n1"}
    old = assign(64, one, {})
    two = {**one, "c": "n2"}
    new = assign(64, two, old)
    # 21, 21 and 22: the odd partition goes to the node with fewer hosts (n2)
    assert [list(new.values()).count(h) for h in ("a", "b", "c")] == [21, 21, 22]
    changed = moves(old, new, set(one))
    assert len(changed) == 22 and all(m.dst == "c" and m.src in one for m in changed)
    gone = {"a": "n1", "c": "n2"}  # b left: its partitions have no host to drain
    after = assign(64, gone, new)
    assert all(m.src is None for m in moves(new, after, set(gone)) if new[m.partition] == "b")
    with pytest.raises(ValueError):
        assign(0, one, {})


def test_autoscale_settings_are_checked() -> None:
    for bad in ({"target_inflight": 0}, {"target_inflight": -1}, {"up_after_s": -1}, {"down_after_s": float("nan")}):
        with pytest.raises(ff.FluentError):
            Autoscale(**bad)  # type: ignore[arg-type]
    with pytest.raises(ff.FluentError):
        AutoscalePolicy(Autoscale(), min_hosts=3, max_hosts=2)


def test_autoscale_follows_sustained_load_only() -> None:
    policy = AutoscalePolicy(Autoscale(target_inflight=8, up_after_s=2, down_after_s=10), min_hosts=0, max_hosts=4)
    assert policy.handle(Sample(0.0, hosts=1, load=40)) is None  # a burst: wait
    assert policy.handle(Sample(1.0, hosts=1, load=3)) is None  # gone already: nothing
    assert policy.handle(Sample(2.0, hosts=1, load=30)) is None
    assert policy.handle(Sample(4.0, hosts=1, load=25)) == 4  # sustained for 2 s: the lowest wanted, capped at 4
    assert policy.handle(Sample(5.0, hosts=4, load=0)) is None
    assert policy.handle(Sample(16.0, hosts=4, load=0)) == 0  # idle for 10 s with min_hosts=0: scale to zero
    assert policy.handle(Sample(17.0, hosts=0, load=1)) is None  # a call: the mechanism cold-starts one host


def test_autoscale_never_stops_a_host_that_is_still_starting() -> None:
    """A cold start slower than ``down_after_s`` (a GPU host on a slow machine): the host
    is kept until it is up, and only then may a lull stop it."""
    policy = AutoscalePolicy(Autoscale(target_inflight=1, up_after_s=0, down_after_s=1), min_hosts=0, max_hosts=1)
    for t in range(10):  # ten seconds of starting, no load seen (the waiting call is on no host yet)
        assert policy.handle(Sample(float(t), hosts=1, load=0, starting=1)) is None
    assert policy.handle(Sample(10.0, hosts=1, load=1)) is None  # up, serving the call
    assert policy.handle(Sample(10.5, hosts=1, load=0)) is None  # the lull begins now, not at the start
    assert policy.handle(Sample(11.5, hosts=1, load=0)) == 0
    # Growing is not held back by a host still starting.
    grow = AutoscalePolicy(Autoscale(target_inflight=1, up_after_s=0, down_after_s=1), min_hosts=0, max_hosts=3)
    assert grow.handle(Sample(0.0, hosts=1, load=3, starting=1)) == 3


@settings(max_examples=200, deadline=None)
@given(
    loads=st.lists(st.floats(0, 100), min_size=1, max_size=40),
    bounds=st.tuples(st.integers(0, 3), st.integers(1, 6)).filter(lambda b: b[0] <= b[1]),
)
def test_autoscale_stays_within_bounds_and_never_overshoots(loads: list[float], bounds: tuple[int, int]) -> None:
    lo, hi = bounds
    policy = AutoscalePolicy(Autoscale(target_inflight=4, up_after_s=1, down_after_s=3), min_hosts=lo, max_hosts=hi)
    hosts = max(lo, 1)
    for i, load in enumerate(loads):
        decided = policy.handle(Sample(float(i), hosts=hosts, load=load))
        if decided is not None:
            assert lo <= decided <= hi and decided != hosts
            if decided > hosts:
                assert decided <= policy.wanted(load) or decided <= max(policy.wanted(x) for x in loads[: i + 1])
            hosts = decided


@settings(max_examples=200, deadline=None)
@given(samples=st.lists(st.tuples(st.floats(0, 100), st.booleans()), min_size=1, max_size=40))
def test_autoscale_never_shrinks_while_a_host_starts(samples: list[tuple[float, bool]]) -> None:
    policy = AutoscalePolicy(Autoscale(target_inflight=4, up_after_s=1, down_after_s=3), min_hosts=0, max_hosts=4)
    hosts, since_all_up = 1, 0.0
    for i, (load, starting) in enumerate(samples):
        now = float(i)
        if starting:
            since_all_up = now + 1  # the lull can begin at the next sample at the earliest
        decided = policy.handle(Sample(now, hosts=hosts, load=load, starting=int(starting) * hosts))
        if decided is not None and decided < hosts:
            assert not starting and now - since_all_up >= 3  # a whole lull, every host up
        if decided is not None:
            hosts = decided


@settings(max_examples=200, deadline=None)
@given(samples=st.lists(st.tuples(st.floats(0, 100), st.integers(0, 3)), min_size=1, max_size=40))
def test_autoscale_counts_a_silent_host_as_full_and_never_shrinks_for_it(samples: list[tuple[float, int]]) -> None:
    # ``silent``: hosts that are up but gave no load sample (saturated, hung): never a reason
    # for fewer hosts, and counted as full (target_inflight) when deciding to grow.
    policy = AutoscalePolicy(Autoscale(target_inflight=4, up_after_s=1, down_after_s=3), min_hosts=0, max_hosts=6)
    hosts, since_all_said = 4, 0.0
    for i, (load, silent) in enumerate(samples):
        now = float(i)
        silent = min(silent, hosts)
        if silent:
            since_all_said = now + 1
        decided = policy.handle(Sample(now, hosts=hosts, load=load, silent=silent))
        if decided is not None and decided < hosts:
            assert not silent and now - since_all_said >= 3  # a whole lull in which every host answered
        if decided is not None and decided > hosts:
            assert decided <= policy.wanted(max(x + s * 4 for x, s in samples[: i + 1]))
        if decided is not None:
            hosts = decided


def test_a_silent_host_does_not_hold_growth_back() -> None:
    policy = AutoscalePolicy(Autoscale(target_inflight=4, up_after_s=0, down_after_s=0), min_hosts=1, max_hosts=8)
    # Two hosts answered 8 turns each, the third is silent (counted as 4): 20 turns, 5 hosts.
    assert policy.handle(Sample(0.0, hosts=3, load=16, silent=1)) == 5
    # Idle answers beside a silent host: no fewer hosts while it is silent ...
    assert policy.handle(Sample(1.0, hosts=5, load=0, silent=1)) is None
    # ... and fewer once every host says its load again.
    assert policy.handle(Sample(2.0, hosts=5, load=0)) == 1
