"""A two-node Ray cluster on this machine, driven by fluentfn (run by test_multinode.py).

Usage: python -m tests.multinode_app PORT REDIS_URL WORKDIR. Prints one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["RAY_AUTH_MODE"] = "token"  # a `ray start` cluster checks Ray's token; Ray reads this on import

import grpc

import fluentfn as ff
from fluentfn.testing import hosts, wait_for

RAY = str(Path(sys.executable).parent / "ray")
RAY_DID_NOT_START = 3  # the exit status when Ray itself could not start the cluster
# Ray's own node start has fixed waits: the raylet aborts when its Python dashboard agent has
# not written its port file within about 15 s (a `sitecustomize` that delays the agent's
# start reproduces it on a quiet machine; no RAY_* setting and no explicit agent port lifts
# it), which a loaded machine can miss on every try. Where this process may raise priority
# (root), the test's nodes and what they start run ahead of background load; the test runs
# before the suite's shared cluster starts (the `own_ray` marker, tests/conftest.py).
AHEAD = ["nice", "-n", "-10"] if os.geteuid() == 0 and shutil.which("nice") else []


class _Spread:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def node(self) -> str:
        return ff.context().node_id

    def bump(self, other: ff.ActorRef, k: int) -> int:
        return int(other.add(k))


class _Near:
    def node(self) -> str:
        return ff.context().node_id


Spread = ff.actor(name="MSpread", shards=4)(_Spread)
Near = ff.actor(name="MNear", colocate_with=Spread)(_Near)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    # Ray's agent listens on a fixed default port: another cluster on this machine holds it.
    ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
    command = [*AHEAD, RAY, "start", *args, *ports, "--block", "--disable-usage-stats"]
    if log is None:
        quiet = subprocess.DEVNULL
        return subprocess.Popen(command, env=env, stdout=quiet, stderr=quiet, start_new_session=True)
    with open(log, "wb") as out:  # the child has its own copy of the file
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_node(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def make_certs(workdir: Path) -> ff.TlsConfig:
    key, cert = str(workdir / "key.pem"), str(workdir / "cert.pem")
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fluentfn"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
    subprocess.run(["openssl", *args], check=True, capture_output=True)
    return ff.TlsConfig(str(workdir / "cert.pem"), str(workdir / "key.pem"), str(workdir / "cert.pem"))


class RayDidNotStart(RuntimeError):
    """``ray start`` could not bring a node up (Ray's own startup timeouts on an overloaded
    machine): the test's subject never ran."""


def wait_head_ready(head: subprocess.Popen[bytes], log: Path, temp: str, port: int) -> None:
    """Wait until ``ray start --head`` says the runtime started and the GCS lists a live
    node: on a busy machine the GCS port listens well before the head's raylet has
    registered, and a driver joining in that gap fails ("Failed to connect to Ray
    cluster"). On failure, what Ray itself logged."""
    from ray._raylet import GcsClient

    deadline = time.monotonic() + 150
    last: BaseException | str = "no word from `ray start` yet"
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RayDidNotStart(f"`ray start --head` exited ({head.returncode}):\n{_tail(log)}")
        if b"Ray runtime started" in log.read_bytes():
            try:
                infos = GcsClient(address=f"127.0.0.1:{port}").get_all_node_info(timeout=5)
                if any(info.state == 0 for info in infos.values()):  # 0: ALIVE
                    return
                last = f"the GCS lists no live node yet ({len(infos)} known)"
            except Exception as exc:  # the GCS client or the call: not up yet
                last = exc
        time.sleep(0.5)
    logs = Path(temp) / "session_latest" / "logs"
    ray_logs = "\n".join(f"--- {name}\n{_tail(logs / name)}" for name in ("gcs_server.err", "raylet.err", "raylet.out"))
    raise RayDidNotStart(f"head node did not start: {last}\n--- ray start\n{_tail(log)}\n{ray_logs}")


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def join(port: int, redis_url: str, tls: ff.TlsConfig) -> ff.Cluster:
    """``ff.init`` on the started head, with two more tries: the address is known good, so a
    refused join is Ray's own connect timeout on a loaded machine."""
    for attempt in range(3):
        try:
            return ff.init(address=f"127.0.0.1:{port}", store=redis_url, tls=tls, namespace="multinode")
        except ff.FluentError as exc:
            if attempt == 2 or "cannot join" not in str(exc):
                raise
            print(f"join failed, again: {exc}", file=sys.stderr)
            time.sleep(2.0)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def reported(out: dict[str, Any]) -> Iterator[None]:
    """A failure said at once, while the head and this driver still live (once the head
    stops, Ray may end this process before Python prints the exception at its exit): the
    traceback, what the run had found so far and the nodes Ray sees alive, on stderr, so a
    Ray node that died on its own is told apart from fluentfn failing to recover."""
    try:
        yield
    except Exception:
        traceback.print_exc()
        print(f"found so far: {json.dumps(out)}", file=sys.stderr)
        try:
            import ray

            if ray.is_initialized():
                alive = [(n["NodeID"][:8], n["Alive"]) for n in ray.nodes()]
                print(f"ray nodes (id, alive): {alive}", file=sys.stderr)
        except Exception as exc:  # the report must not hide the failure it reports
            print(f"ray nodes unknown: {exc!r}", file=sys.stderr)
        sys.stderr.flush()
        raise


def main(port: int, redis_url: str, workdir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    temp = tempfile.mkdtemp(prefix="ffmn", dir="/tmp")  # Ray's socket paths must stay short
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", f"--temp-dir={temp}"]
    head_log = workdir / "ray-start-head.log"
    head = start_node(
        ["--head", f"--port={port}", "--include-dashboard=false", '--resources={"head_node": 1}', *common],
        env,
        head_log,
    )
    worker: subprocess.Popen[bytes] | None = None
    out: dict[str, Any] = {}
    try:
        wait_head_ready(head, head_log, temp, port)
        worker = start_node([f"--address=127.0.0.1:{port}", '--resources={"worker_node": 1}', *common], env)
        tls = make_certs(workdir)
        with join(port, redis_url, tls) as cluster, reported(out):
            import ray

            try:
                wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, timeout=120)
            except Exception as exc:
                raise RayDidNotStart(f"the second node did not join: {exc}") from None
            keys = [f"k{i}" for i in range(12)]
            # Partitions may still be moving onto the second node's hosts: a placement read
            # twice, the co-located type's between, counts once all three agree.
            deadline = time.monotonic() + 30
            while True:
                nodes = {k: Spread[k].node() for k in keys}
                near = {k: Near[k].node() for k in keys}
                settled = nodes == {k: Spread[k].node() for k in keys}
                if (settled and near == nodes) or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            out["host_nodes"] = len({h["node_id"] for h in hosts(cluster)})
            out["colocated_same_node"] = near == nodes
            a, b = (next(k for k in keys if nodes[k] == n) for n in sorted(set(nodes.values())))
            out["cross_node_call"] = Spread[a].bump(Spread[b], 5) == 5
            out["endpoints"] = sorted({h["endpoint"].split(":")[0] for h in hosts(cluster)})
            # TLS everywhere: a plaintext peer gets nowhere, a TLS client with the token works.
            plain = grpc.insecure_channel(cluster.gateway)
            try:
                grpc.channel_ready_future(plain).result(timeout=3)
                out["plaintext_refused"] = False
            except grpc.FutureTimeoutError:
                out["plaintext_refused"] = True
            out["tls_client"] = ff.Client(cluster.gateway, token=cluster.token, tls=tls).call(f"MSpread/{a}", "add", 1)
            # Stop the worker node: its shards move to the head node, state comes back from Redis.
            worker_node = next(n for n in set(nodes.values()) if n != ray.get_runtime_context().get_node_id())
            on_worker = [k for k in keys if nodes[k] == worker_node]
            before = {k: Spread[k].add(10) for k in on_worker}
            stop_node(worker)
            worker = None
            after = {k: Spread[k].add(1) for k in on_worker}
            out["moved"] = len(on_worker)
            out["state_back"] = all(after[k] == before[k] + 1 for k in on_worker)
            out["now_on_head"] = {Spread[k].node() for k in on_worker} == {ray.get_runtime_context().get_node_id()}
            # A node joins: hosts spread onto it (partitions move live), state intact.
            values = {k: Spread[k].add(0) for k in keys}
            worker = start_node([f"--address=127.0.0.1:{port}", '--resources={"worker_node": 1}', *common], env)

            def spread() -> bool:  # settled: two nodes, four hosts with a partition each
                nodes = {h["node_id"] for h in hosts(cluster) if h["group"] == "MSpread"}
                return len(nodes) == 2 and sorted(map(len, cluster.placement(Spread).values())) == [1, 1, 1, 1]

            wait_for(spread, timeout=90)
            out["joined_nodes"] = len({Spread[k].node() for k in keys})
            out["state_after_join"] = {k: Spread[k].add(0) for k in keys} == values
    finally:
        if worker is not None:
            stop_node(worker)
        stop_node(head)
    return out


if __name__ == "__main__":
    try:
        print(json.dumps(main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))))
    except RayDidNotStart as exc:
        print(f"ray did not start: {exc}", file=sys.stderr)
        sys.exit(RAY_DID_NOT_START)
