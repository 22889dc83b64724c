"""``fluentfn bench reliability``: chaos, fuzzing and overload, with the figures users get.

- chaos: bank transfers from several clients while a killer SIGKILLs a random host
  every 2 s; audits conservation and exactly-once against the accounts' ledgers, and
  measures recovery time after each kill.
- fuzz: malformed gRPC calls (random bytes, truncated and oversize frames, msgpack bombs,
  unknown types and methods, wrong argument types, huge keys); counts statuses.
- overload: 1,000 concurrent callers against one identity.
The functions run on the current cluster; the test suite runs CI-sized versions.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

import fluentfn as ff

from ..placement import shard_for
from ..testing import hosts
from . import _cases, _report
from ._fuzz import fuzz


class _Slow:
    def nap(self, s: float) -> float:
        time.sleep(s)
        return s


Slow = ff.actor(name="OverloadSlow", shards=1, persist="never")(_Slow)


# -- chaos ----------------------------------------------------------------------------------


def chaos(
    cluster: ff.Cluster, *, accounts: int = 8, transfers: int = 200, clients: int = 4, kill_every_s: float = 2.0
) -> dict[str, Any]:
    """Transfers under a host killer; returns the audit plus kills and recovery times."""
    bank = _cases.load("bank")
    names = bank.open_accounts(accounts)
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    recoveries: list[float] = []
    kills = 0
    retries = 0
    run_id = os.urandom(3).hex()

    def client(c: int) -> None:
        nonlocal retries
        rng = random.Random(c)
        for i in range(c, transfers, clients):
            tid = f"{run_id}-t{i}"
            src, dst = rng.sample(names, 2)
            amount = rng.randint(1, 50)
            deadline = time.monotonic() + 120
            while True:  # a client retries until the transfer is acknowledged
                try:
                    bank.Teller[tid].transfer(src, dst, amount)
                    break
                except ff.FluentError:
                    with lock:
                        retries += 1
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            with lock:
                acked.add(tid)

    def killer() -> None:
        nonlocal kills
        rng = random.Random(99)
        while not stop.wait(kill_every_s):
            victims = [h for h in hosts(cluster) if h["group"] in ("BankAccount", "BankTeller")]
            if not victims:
                continue
            victim = rng.choice(victims)
            try:
                os.kill(int(victim["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills += 1
            t0 = time.monotonic()
            probe = next(n for n in (f"probe-{i}" for i in range(10_000)) if shard_for(n, 4) == victim["shard"])
            ref = bank.Account[probe] if victim["group"] == "BankAccount" else bank.Teller[probe]
            method = "statement" if victim["group"] == "BankAccount" else "status"
            while not stop.is_set():
                try:
                    getattr(ref, method)()
                    recoveries.append(time.monotonic() - t0)
                    break
                except ff.FluentError:
                    time.sleep(0.02)

    killer_thread = threading.Thread(target=killer, daemon=True)
    killer_thread.start()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    stop.set()
    killer_thread.join(30)
    result: dict[str, Any] = bank.audit(names, acked)
    result.update(
        kills=kills,
        client_retries=retries,
        recovery_max_s=round(max(recoveries), 2) if recoveries else None,
        recovery_p50_s=round(sorted(recoveries)[len(recoveries) // 2], 2) if recoveries else None,
    )
    return result


# -- overload -------------------------------------------------------------------------------


def overload(callers: int = 1_000, nap_s: float = 0.005, timeout_s: float = 2.0) -> dict[str, Any]:
    """``callers`` concurrent calls to one identity; counts each outcome."""
    ref = Slow["hot"]
    ref.nap(0.0)
    outcomes: collections.Counter[str] = collections.Counter()
    futures = [ref.nap.with_timeout(timeout_s).future(nap_s) for _ in range(callers)]
    for f in futures:
        try:
            f.result(timeout=120)
            outcomes["ok"] += 1
        except ff.FluentError as exc:
            outcomes[type(exc).__name__] += 1
    outcomes["after_ok"] = int(ref.nap(0.0) == 0.0)
    return dict(outcomes)


_ATTACK = r"""
import sys, threading, grpc
from fluentfn.wire._gen import actorhost_pb2 as pb, actorhost_pb2_grpc as pb_grpc
target, n, conns, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
big = pb.Call(type_name="T", key="k", method="m", args=b"x" * size)
opts = [("grpc.max_send_message_length", 2 * size + (1 << 20)), ("grpc.use_local_subchannel_pool", 1)]
codes = []
def attack():
    stub = pb_grpc.ActorHostStub(grpc.insecure_channel(target, options=opts))
    for _ in range(n // conns):
        try:
            stub.Invoke(big, timeout=120, metadata=(("authorization", "Bearer wrong"),))  # busy: slow to send
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
threads = [threading.Thread(target=attack) for _ in range(conns)]
[t.start() for t in threads]
[t.join() for t in threads]
print(" ".join(sorted(set(codes))), len(codes))
"""


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _probe_while(probe: Callable[[], Any], done: threading.Event, out: dict[str, Any]) -> None:
    """Authenticated calls, one after another, until ``done``: their latencies and errors."""
    samples: list[float] = []
    errors = 0
    while not done.is_set():
        t0 = time.perf_counter()
        try:
            probe()
        except Exception:
            errors += 1
        samples.append((time.perf_counter() - t0) * 1e6)
    out["samples"], out["errors"] = samples, errors


def preauth(
    endpoint: str,
    pid: int,
    n: int = 200,
    conns: int = 20,
    size_mb: int = 30,
    probe: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """``n`` unauthenticated ``size_mb`` MB calls over ``conns`` connections at ``endpoint``
    (from another process); how much the serving process ``pid`` grew meanwhile, and, with
    ``probe`` (an authenticated call), its latency when quiet and during the attack."""
    import subprocess
    import sys

    quiet: list[float] = []
    if probe is not None:
        for _ in range(200):
            t0 = time.perf_counter()
            probe()
            quiet.append((time.perf_counter() - t0) * 1e6)
    before, peak, done = rss_mib(pid), [0.0], threading.Event()
    probed: dict[str, Any] = {"samples": [], "errors": 0}

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            done.wait(0.05)

    threads = [threading.Thread(target=watch)]
    if probe is not None:
        threads.append(threading.Thread(target=_probe_while, args=(probe, done, probed)))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    try:
        cmd = [sys.executable, "-c", _ATTACK, endpoint, str(n), str(conns), str(size_mb << 20)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    finally:
        done.set()
        for t in threads:
            t.join()
    result: dict[str, Any] = {
        "requests": n,
        "connections": conns,
        "sent_mb": n * size_mb,
        "statuses": out.stdout.strip() or out.stderr[-500:],
        "rss_before_mib": round(before, 1),
        "rss_growth_mib": round(peak[0] - before, 1),
        "seconds": round(time.monotonic() - t0, 1),
    }
    if probe is not None:
        during = sorted(probed["samples"]) or [float("nan")]
        result.update(
            auth_calls=len(probed["samples"]),
            auth_errors=probed["errors"],
            auth_p50_quiet_us=round(statistics.median(quiet), 1),
            auth_p50_attack_us=round(statistics.median(during), 1),
            auth_p99_attack_us=round(during[min(len(during) - 1, int(len(during) * 0.99))], 1),
        )
    return result


def malformed(endpoint: str, token: str) -> dict[str, str]:
    """Garbage bytes sent to each of the four RPCs: the status each one gets."""
    channel = grpc.insecure_channel(endpoint)
    md = (("authorization", f"Bearer {token}"),)
    garbage = b"\xff\xff\xff\xff not a protobuf message"
    out: dict[str, str] = {}
    try:
        for method in ("Invoke", "Tell", "Status"):
            try:
                channel.unary_unary(f"/fluentfn.v1.ActorHost/{method}", None, None)(garbage, metadata=md, timeout=10)
                out[method] = "OK"
            except grpc.RpcError as exc:
                out[method] = exc.code().name
        try:
            stream = channel.stream_stream("/fluentfn.v1.ActorHost/InvokeStream", None, None)
            list(stream(iter([garbage]), metadata=md, timeout=10))
            out["InvokeStream"] = "OK"
        except grpc.RpcError as exc:
            out["InvokeStream"] = exc.code().name
    finally:
        channel.close()
    return out


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fluentfn-reliability-") as home, contextlib.ExitStack() as stack:
        os.environ["FLUENTFN_HOME"] = home  # a fresh store: the audit covers this run only
        cluster = stack.enter_context(ff.init(num_cpus=2))
        c = chaos(cluster, transfers=1_000 if quick else 10_000, clients=4, accounts=8, kill_every_s=2.0)
        rows.append({"system": "chaos (sqlite)", **{k: v for k, v in c.items()}})
        f = fuzz(cluster, 2_000 if quick else 10_000)
        rows.append({"system": "fuzz", "cases": f["cases"], **f["statuses"], "state_unchanged": f["state_unchanged"]})
        o = overload()
        rows.append({"system": "overload 1000 callers", **o})
        probe = _cases.load("bank").Account["preauth-probe"].statement
        probe()
        p = preauth(cluster.gateway, os.getpid(), n=200 if quick else 1_000, conns=20 if quick else 50, probe=probe)
        rows.append({"system": "unauthenticated 30 MB calls at the gateway", **p})
        m = malformed(cluster.gateway, cluster.token)
        rows.append({"system": "malformed frames", **m})
    notes.append(
        f"chaos: kills survived {c['kills']}, acknowledged {c['acked']}, lost {c['lost']} (must be 0), "
        f"duplicated {c['duplicated']} (must be 0), recovery max {c['recovery_max_s']} s (target <= 2 s)"
    )
    notes.append(f"fuzz statuses: {f['statuses']}")
    notes.append(f"overload outcomes: {o}")
    notes.append(
        f"pre-authentication: {p['requests']} unauthenticated 30 MB calls over {p['connections']} connections "
        f"({p['sent_mb']} MB offered): gateway RSS +{p['rss_growth_mib']} MiB (target < 200), {p['statuses']}; "
        f"authenticated calls meanwhile: {p['auth_calls']} with {p['auth_errors']} errors, p50 "
        f"{p['auth_p50_attack_us']} us (quiet: {p['auth_p50_quiet_us']} us), p99 {p['auth_p99_attack_us']} us"
    )
    notes.append(f"malformed frames (target INVALID_ARGUMENT for all four RPCs): {m}")
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("reliability", __doc__, run, "kills", argv)
