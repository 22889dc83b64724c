"""Each host serves Prometheus metrics; scrape them."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import fluentfn as ff
from fluentfn.testing import host_of

from .apps import Boom, Counter

pytestmark = pytest.mark.timeout(120)


def test_host_metrics_scrape(cluster: ff.Cluster) -> None:
    ref = Counter["metrics"]
    for _ in range(5):
        ref.add(1)
    with pytest.raises(Boom):
        ref.fail("x")
    url = host_of(cluster, ref)["metrics"]
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as refused:  # no token: nothing to see
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    bad = urllib.request.Request(url, headers={"Authorization": "Bearer wrong"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(bad, timeout=10)
    scrape = urllib.request.Request(url, headers={"Authorization": f"Bearer {cluster.token}"})
    text = urllib.request.urlopen(scrape, timeout=10).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("fluentfn_calls_total", (("method", "add"), ("type", "TCounter")))] >= 5
    assert samples[("fluentfn_call_errors_total", (("method", "fail"), ("type", "TCounter")))] >= 1
    assert samples[("fluentfn_call_seconds_count", (("method", "add"), ("type", "TCounter")))] >= 5
    for phase in ("queue", "run", "write"):  # where the calls' time went
        where = (("method", "add"), ("phase", phase), ("type", "TCounter"))
        assert samples[("fluentfn_call_phase_seconds_count", where)] >= 5
        assert samples[("fluentfn_call_phase_seconds_bucket", (("le", "+Inf"), *where))] >= 5
        assert samples[("fluentfn_call_phase_seconds_sum", where)] > 0
    assert any(  # labelled with the host's id (a "shard" is a partition, never a host)
        name == "fluentfn_live_identities" and v >= 1 and dict(lab).get("host", "").startswith("h")
        for (name, lab), v in samples.items()
    )
    assert any(
        name == "fluentfn_store_operations_total" and dict(lab).get("op") == "write" and v >= 5
        for (name, lab), v in samples.items()
    )
