"""A restarted directory's tables from the live hosts' reports (pure, no Ray)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluentfn.elastic._rebuild import HostReport, rebuild, registry

pytestmark = pytest.mark.timeout(60)


def report(hid: str, owned: dict[int, int], group: str = "G", node: str = "n1") -> HostReport:
    return HostReport(
        group, hid, f"127.0.0.1:{hid}", node, owned, [(group, b"blob-" + hid.encode(), None, frozenset())]
    )


def test_the_highest_epoch_owns_a_partition_and_the_other_claimant_is_stale() -> None:
    plans = rebuild([report("h0", {0: 3, 1: 1}), report("h1", {1: 4, 2: 2})], {"G": 4})
    plan = plans["G"]
    assert plan.owner == {0: ("h0", 3), 1: ("h1", 4), 2: ("h1", 2)}
    assert plan.stale == [("h0", 1)]
    assert sum(len(ps) for ps in plan.adopt.values()) == 1 and 3 in [p for ps in plan.adopt.values() for p in ps]


def test_unknown_groups_and_partitions_out_of_range_are_ignored() -> None:
    plans = rebuild([report("h0", {0: 1, 9: 1}), report("x", {0: 5}, group="Other")], {"G": 2})
    assert set(plans) == {"G"} and plans["G"].owner == {0: ("h0", 1)} and plans["G"].adopt == {"h0": [1]}


def test_the_registry_is_the_union_of_the_hosts() -> None:
    reg = registry([report("h0", {}), report("h1", {}, group="B")])
    assert set(reg) == {"G", "B"}


@given(
    st.dictionaries(
        st.sampled_from(["h0", "h1", "h2"]),
        st.dictionaries(st.integers(0, 7), st.integers(1, 20), max_size=8),
        min_size=1,
    )
)
def test_every_partition_ends_with_exactly_one_owner_or_adopter(claims: dict[str, dict[int, int]]) -> None:
    plan = rebuild([report(h, owned) for h, owned in claims.items()], {"G": 8})["G"]
    adopted = [p for ps in plan.adopt.values() for p in ps]
    assert sorted(list(plan.owner) + adopted) == list(range(8))
    for p, (_, epoch) in plan.owner.items():
        assert epoch == max(owned[p] for owned in claims.values() if p in owned)
    for hid, p in plan.stale:
        assert plan.owner[p][0] != hid
