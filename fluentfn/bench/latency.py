"""``fluentfn bench latency``: round trip of a 100-byte call, fluentfn vs its peers.

Also: persist="call" / "interval" / "never" writes on SQLite (and Redis when
``redis-server`` is installed), and 1 KB actor->actor messages stateful vs FaaS (local
store) vs FaaS with the paper's storage profile. Systems, all measured in this run:
``fluentfn`` (driver -> host over gRPC),
``fluentfn-actor-to-actor`` (an actor calling an actor on another host),
``fluentfn-colocated`` (an actor calling a co-located actor, in-process), ``ray-actor``
(``ray.get(actor.echo.remote(x))``), ``grpc-floor`` (a raw grpcio unary echo),
``grpc-stream-direct-floor`` / ``grpc-stream-relayed-floor`` (a raw grpc.aio stream echo,
straight and through a raw grpc.aio relay: the floor of a gateway hop),
``sqlite-commit-floor`` (the rows a ``persist="call"`` turn commits, in raw ``sqlite3``), and
``ff.Client-direct`` / ``ff.Client-via-gateway`` / ``ff.Client-via-gateway-forwarded``:
an external client (no Ray in its process) against ``fluentfn serve`` running in a process
of its own, straight to the host that owns the key, through the gateway's tunnel, or
forwarded by the gateway call by call.

Figures whose ratio is a target are taken in alternating rounds (``time_interleaved``):
the driver's call and Ray's, and the three persist modes.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import fluentfn as ff

from .._status import Status
from ..placement import shard_for
from . import _cases, _report
from ._peers import GrpcEcho, GrpcRelay, RayEcho, SqliteCommit, time_calls, time_interleaved

PAYLOAD = b"x" * 100


class _BenchTarget:
    """Echoes its argument."""

    def echo(self, x: Any) -> Any:
        return x


BenchTarget = ff.actor(name="BenchTarget", shards=2)(_BenchTarget)


class _BenchCaller:
    """Times calls from inside an actor (so the caller is a host, not the driver)."""

    def loop(self, target: ff.ActorRef, n: int, payload: bytes) -> list[float]:
        for _ in range(20):
            target.echo(payload)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            target.echo(payload)
            out.append((time.perf_counter() - t0) * 1e6)
        return out


BenchCaller = ff.actor(name="BenchCaller", colocate_with=BenchTarget)(_BenchCaller)


class _Writer:
    def __init__(self) -> None:
        self.n = 0
        self.blob = b""

    def write(self, payload: bytes) -> int:
        self.n += 1
        self.blob = payload
        return self.n


Writers = {
    mode: ff.actor(name=f"BenchWrite{mode.title()}", shards=1, persist=mode)(_Writer)
    for mode in ("call", "interval", "never")
}


class _Sized:
    """A state of a chosen size (one large field) and a 1 KB field a turn changes."""

    def __init__(self) -> None:
        self.big = b""
        self.note = b""
        self.n = 0

    def fill(self, size: int) -> int:
        self.big = bytes(range(256)) * (size // 256)
        return len(self.big)

    def change(self, note: bytes) -> int:
        self.note = note
        self.n += 1
        return self.n


Sized = ff.actor(name="BenchSized", shards=1, persist="call")(_Sized)
STATE_SIZES = {"4KB": 4 * 1024, "100MB": 100 * 1024 * 1024}


def _persist_rows(store: str, n: int) -> list[dict[str, Any]]:
    # The modes in alternating rounds: their ratio is not a comparison of two moments.
    calls = {mode: functools.partial(actor_type["w"].write, PAYLOAD) for mode, actor_type in Writers.items()}
    rows = [
        _report.summarize(f"persist={mode} ({store})", samples) for mode, samples in time_interleaved(calls, n).items()
    ]
    # Partial writes: a 1 KB change costs the same whatever the size of the rest of the state.
    note = b"n" * 1024
    for label, size in STATE_SIZES.items():
        ref = Sized[f"{label}-{time.time_ns()}"]
        ref.fill(size)
        samples = time_calls(functools.partial(ref.change, note), n)
        rows.append(_report.summarize(f"1KB change, {label} state ({store})", samples))
    return rows


def _faas_rows(n: int) -> list[dict[str, Any]]:
    """1 KB actor -> actor round trips through storage: local store, then the paper's profile."""
    from . import _cases

    messaging = _cases.load("messaging")
    rows = []
    for system, profile in (("faas", ff.FaasProfile()), ("faas-paper", ff.FaasProfile.paper())):
        with ff.init(mode="faas", faas=profile, namespace=f"bench-{system}"):
            samples = messaging.Ping["a"].pingpong(messaging.Pong["b"], n, messaging.PAYLOAD)
        rows.append(_report.summarize(system, samples, payload="1KB actor->actor"))
    return rows


def _redis_server(workdir: str) -> tuple[Any, str] | None:
    """A redis-server of this run's own, its files in ``workdir``: a fixed directory let
    the next run load every earlier run's append-only file (gigabytes of 100 MB states),
    and the hosts found Redis still loading it."""
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "yes", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


_EXTERNAL = (
    ("ff.Client-direct", True, True),
    ("ff.Client-via-gateway", False, True),  # through the gateway's tunnel
    ("ff.Client-via-gateway-forwarded", False, False),  # the gateway forwards each call
)


def _external_rows(key: str, n: int) -> list[dict[str, Any]]:
    """``ff.Client`` (no Ray in its process) against ``fluentfn serve`` running this module
    in a process of its own: straight to the owning host, and through the gateway."""
    import json
    import os
    import subprocess
    import sys

    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "FLUENTFN_HOME": home}
        cmd = [sys.executable, "-m", "fluentfn.cli", "serve", __name__, "--namespace", "bench-serve"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            info_file = os.path.join(home, "bench-serve", "serve.json")
            until = time.monotonic() + 120
            while not os.path.exists(info_file):
                if proc.poll() is not None or time.monotonic() > until:
                    err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                    raise RuntimeError(f"fluentfn serve did not start: {err}")
                time.sleep(0.2)
            time.sleep(0.2)  # the file is written in one go, but let it land
            info = json.loads(Path(info_file).read_text())
            address = BenchTarget[key].address
            host: str | None = None
            for name, direct, tunnel in _EXTERNAL:
                client = ff.Client(info["gateway"], token=info["token"], direct=direct, tunnel=tunnel)
                client.call(address, "echo", PAYLOAD)
                time.sleep(1.1)  # the placement is read again at most once a second: now it lists the host
                call = functools.partial(client.call, address, "echo", PAYLOAD)
                rows.append(_report.summarize(name, time_calls(call, n)))
                if direct:
                    host = _host_of(client.status(), BenchTarget.name, key)
                client.close()
            targets = {"node-via-gateway": info["gateway"], **({"node-direct": host} if host else {})}
            rows += _node_rows(targets, info["token"], key, n)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rows


def _host_of(status: Status, type_name: str, key: str) -> str | None:
    """The endpoint of the host that owns ``type_name``/``key``, from a gateway's status."""
    known = {t.type_name: (t.group, t.shards) for t in status.types if t.shards}.get(type_name)
    if known is None:
        return None
    group, partition = known[0], shard_for(key, known[1])
    return next(
        (h.endpoint for h in status.hosts if h.group == group and partition in (h.partitions or [h.shard])), None
    )


_NODE_DIR = Path(__file__).parent / "node"
_PROTO = Path(__file__).resolve().parents[2] / "proto" / "fluentfn" / "v1" / "actorhost.proto"


def _node_rows(targets: dict[str, str], token: str, key: str, n: int) -> list[dict[str, Any]]:
    """A second-language client built only from ``proto/`` (Node.js, grpc-js + msgpack),
    unary and on one stream, when ``node`` and ``npm`` are installed and the proto file is
    at hand (a checkout); its packages are installed once under FLUENTFN_HOME."""
    import json
    import shutil
    import subprocess

    from .. import _config

    if not (shutil.which("node") and shutil.which("npm") and _PROTO.exists()):
        return []
    work = _config.home("bench-node-client")
    work.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "latency.mjs"):
        shutil.copyfile(_NODE_DIR / name, work / name)
    if not (work / "node_modules" / "@grpc" / "grpc-js").exists():
        cmd = ["npm", "install", "--no-audit", "--no-fund", "--silent"]
        if subprocess.run(cmd, cwd=work, capture_output=True, timeout=300, check=False).returncode != 0:
            return []  # no registry here: the rows are left out
    rows = []
    for label, endpoint in targets.items():
        cmd = ["node", "latency.mjs", str(_PROTO), endpoint, token, BenchTarget.name, key, str(n), label]
        out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"the Node.js client failed: {out.stderr[-2000:]}")
        rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return rows


def _keys_on_shards() -> tuple[str, str]:
    """Two keys of BenchTarget on different shards."""
    first = "k0"
    for i in range(1, 1000):
        if shard_for(f"k{i}", 2) != shard_for(first, 2):
            return first, f"k{i}"
    raise RuntimeError("no second shard")


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    n = 1000 if quick else 5000
    rows: list[dict[str, Any]] = []
    # A store of this run's own: the partial-write rows write a 100 MB state under a new
    # key each run, which piled up in the default store (2.3 GB after 22 runs).
    with (
        tempfile.TemporaryDirectory(prefix="fluentfn-bench-sqlite-") as workdir,
        ff.init(store=f"sqlite:///{workdir}/state.db"),
    ):
        same, other = _keys_on_shards()
        target = BenchTarget[same]
        ray_echo = RayEcho()
        # The driver's call and Ray's in alternating rounds: their ratio is the target.
        driver = time_interleaved(
            {"fluentfn": lambda: target.echo(PAYLOAD), "ray-actor": lambda: ray_echo.call(PAYLOAD)}, n
        )
        ray_echo.close()
        rows.append(_report.summarize("fluentfn", driver["fluentfn"]))
        caller = BenchCaller[same]
        rows.append(_report.summarize("fluentfn-actor-to-actor", caller.loop(BenchTarget[other], n, PAYLOAD)))
        rows.append(_report.summarize("fluentfn-colocated", caller.loop(BenchTarget[same], n, PAYLOAD)))
        messaging = _cases.load("messaging")
        msg = messaging.Ping["a"].pingpong(messaging.Pong["b"], n, messaging.PAYLOAD)
        rows.append(_report.summarize("stateful-1KB-actor-to-actor", msg, payload="1KB actor->actor"))
        rows.append(_report.summarize("ray-actor", driver["ray-actor"]))
        rows += _persist_rows("sqlite", n)
    floor_db = SqliteCommit()
    record = b"r" * 128
    rows.append(_report.summarize("sqlite-commit-floor", time_calls(lambda: floor_db.commit(PAYLOAD, record), n)))
    floor_db.close()
    with tempfile.TemporaryDirectory(prefix="fluentfn-bench-redis-") as workdir:
        redis = _redis_server(workdir)
        if redis is not None:
            try:
                with ff.init(store=redis[1], namespace="bench-redis"):
                    rows += _persist_rows("redis", n)
            finally:  # even if the rows failed: no server (holding gigabytes) is left behind
                redis[0].terminate()
                redis[0].wait(30)
    rows += _external_rows(same, n)
    rows += _faas_rows(5 if quick else 20)
    floor = GrpcEcho()
    rows.append(_report.summarize("grpc-floor", time_calls(lambda: floor.call(PAYLOAD), n)))
    floor.close()
    relay = GrpcRelay()
    for how in ("direct", "relayed"):
        rows.append(_report.summarize(f"grpc-stream-{how}-floor", relay.round_trips(how, PAYLOAD, n)))
    relay.close()
    by = {r["system"]: r for r in rows}
    ray_p50 = by["ray-actor"]["p50_us"]
    for r in rows:
        r["vs_ray_actor"] = round(r["p50_us"] / ray_p50, 3)
    stateful_msg = by["stateful-1KB-actor-to-actor"]["p50_us"]
    notes = [
        f"1KB actor->actor: faas / stateful = {by['faas']['p50_us'] / stateful_msg:.0f}x, "
        f"faas-paper / stateful = {by['faas-paper']['p50_us'] / stateful_msg:.0f}x (paper: 108 ms / 290 us = 372x)",
        "persist=call / never (sqlite) p50 = "
        f"{by['persist=call (sqlite)']['p50_us'] / by['persist=never (sqlite)']['p50_us']:.2f} (target <= 1.3); "
        f"call - never = {by['persist=call (sqlite)']['p50_us'] - by['persist=never (sqlite)']['p50_us']:.0f} us, "
        f"floor: a raw SQLite commit of the same rows = {by['sqlite-commit-floor']['p50_us']:.0f} us",
        *(
            f"1KB change to a 100MB / a 4KB state ({store}) p50 = {_ratio(by, store):.2f} (target <= 2)"
            for store in ("sqlite", "redis")
            if f"1KB change, 4KB state ({store})" in by
        ),
        f"fluentfn / ray-actor p50 = {by['fluentfn']['p50_us'] / ray_p50:.2f} (target <= 0.45); floor: a raw "
        f"grpcio unary echo from the calling thread = {by['grpc-floor']['p50_us'] / ray_p50:.2f} x ray-actor "
        f"(fluentfn / that floor = {by['fluentfn']['p50_us'] / by['grpc-floor']['p50_us']:.2f})",
        f"fluentfn-actor-to-actor / ray-actor p50 = {by['fluentfn-actor-to-actor']['p50_us'] / ray_p50:.2f}",
        f"fluentfn-colocated p50 = {by['fluentfn-colocated']['p50_us']} us = "
        f"{by['fluentfn-colocated']['p50_us'] / ray_p50:.3f} x ray-actor (target <= 0.03)",
        f"external client / driver call p50: direct {by['ff.Client-direct']['p50_us'] / by['fluentfn']['p50_us']:.2f} "
        f"(target <= 1.2), via the gateway {by['ff.Client-via-gateway']['p50_us'] / by['fluentfn']['p50_us']:.2f} "
        "(target <= 1.5; its tunnel); the clients call `fluentfn serve` in a process of its own",
        f"forwarded by the gateway (tunnel=False) / driver call p50 = "
        f"{by['ff.Client-via-gateway-forwarded']['p50_us'] / by['fluentfn']['p50_us']:.2f}; forwarded / direct "
        f"(ff.Client) = {by['ff.Client-via-gateway-forwarded']['p50_us'] / by['ff.Client-direct']['p50_us']:.2f}, "
        "floor: a raw grpc.aio relay / a raw grpc.aio stream = "
        f"{by['grpc-stream-relayed-floor']['p50_us'] / by['grpc-stream-direct-floor']['p50_us']:.2f}",
    ]
    node = [r for r in rows if r["system"].startswith("node-")]
    if node:
        notes.append(
            "Node.js client (grpc-js, from proto/) / driver call p50: "
            + ", ".join(f"{r['system']} {r['p50_us'] / by['fluentfn']['p50_us']:.2f}" for r in node)
        )
    return rows, notes


def _ratio(by: dict[str, dict[str, Any]], store: str) -> float:
    """A 1 KB change's p50 on a 100 MB state over the same on a 4 KB state."""
    return float(by[f"1KB change, 100MB state ({store})"]["p50_us"] / by[f"1KB change, 4KB state ({store})"]["p50_us"])


def main(argv: list[str] | None = None) -> int:
    return _report.cli("latency", __doc__, run, "p50_us", argv)
