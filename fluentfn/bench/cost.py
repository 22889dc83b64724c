"""``fluentfn bench cost``: what a call and an activation cost, in units the machine does not change.

Wall-clock figures move with the machine: a busy or slower 2-core VM can double them, or
halve one system's and not its peer's. This benchmark counts what one operation executes,
which is the same on any machine with the same Python:

- ``opcodes_per_op``: Python bytecode instructions, in every thread the operation
  crosses (each probe runs in a fresh process whose threads are traced from their start);
- ``handoffs_per_op``: voluntary context switches of the process (a thread that blocks
  to wait for another: the hand-offs that each cost a scheduler quantum on a busy machine);
- ``us_per_op``: the same operation untimed by any tracer, for reference (this one does
  depend on the machine).

Each figure is the difference between runs of N and 3N operations, divided by 2N, so
fixed costs (a batch's hops, a turn around the loop) drop out (time and switches: between
each size's least of three rounds, as a stall only ever adds to a run). The probes run the real
engine, admission, router, codec and gRPC code in one process, without Ray:

- ``colocated``: ``ref.echo(100 B)`` from a turn of a co-located actor, ``persist="call"``
  on SQLite (the callee is live);
- ``colocated-write``: the same call to a ``persist="call"`` actor whose turn changes its
  state: the turn's write (its state and reply in the SQLite store) is the difference;
- ``activation``: one item of ``Cell.bulk`` on brand-new identities, from a co-located
  actor (``persist="never"``), as in ``fluentfn bench activation``;
- ``driver``: a driver's ``ref.echo(100 B)`` over the real gRPC stream to the host;
- ``remote``: ``ref.echo(100 B)`` from a turn of an actor to one on another host (in
  this process, behind its own gRPC server), over the real stream: the shape of the
  actor-to-actor ping-pong benchmark;
- ``pipelined``: the driver's call as ``ref.echo.future(100 B)``, all ``count`` of them
  sent before the first answer is awaited (``bench throughput``'s ``fluentfn-pipelined``);
- ``gateway``: the same call from ``ff.Client(direct=False, tunnel=False)``, forwarded by a
  gateway in front of the host (judged against ``driver``: the gateway's hop is the
  difference; through the gateway's tunnel a call is the direct call's bytes, copied);
- floors, counted the same way: ``python-activation`` (the activation benchmark's floor
  loop) and ``grpc-aio-stream`` (a raw grpc.aio stream round trip from a calling thread
  through the loop, as a driver call travels).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from .._phases import EVERY, EXACT
from . import _report

PAYLOAD = b"x" * 100
TOKEN = "bench-cost"
PROBES = (
    "colocated", "colocated-write", "activation", "driver", "pipelined", "remote", "gateway", "python-activation",
    "grpc-aio-stream",
)  # fmt: skip
_KEPT: list[Any] = []  # the probe's servers, for the life of its process
_TEMP: list[str] = []  # the probe's store directories, removed when it ends
_ENGINES: list[Any] = []  # the probe's host engines (made on their first call)
FLOOR_OF = {
    "colocated-write": "colocated", "activation": "python-activation", "driver": "grpc-aio-stream",
    "pipelined": "driver", "remote": "grpc-aio-stream", "gateway": "driver",
}  # fmt: skip


class OpcodeCount:
    """Python bytecode instructions executed while ``on``, in this thread and in every
    thread started after ``install`` (each thread counts in a cell of its own).

    Python 3.12 and later count through ``sys.monitoring``'s INSTRUCTION events: there a
    trace function that sets ``f_trace_opcodes`` gets no opcode events (the count was 0).
    Earlier versions count the trace function's opcode events."""

    _TOOL = "fluentfn-cost"

    def __init__(self) -> None:
        self.on = False
        self._cells: list[list[int]] = []
        self._local = threading.local()
        self._by_thread: dict[int, int] = {}
        self._tool: int | None = None
        self._before: tuple[Any, Any] = (None, None)  # the tracers before ``install`` (coverage's, say)

    def install(self) -> None:
        if sys.version_info >= (3, 12):
            self._monitor()
            return
        self._before = (sys.gettrace(), threading.gettrace())
        sys.settrace(self._trace)
        threading.settrace(self._trace)

    def uninstall(self) -> None:
        """Stop counting and put back the tracers there were (threads already traced keep
        this trace function, counting nothing)."""
        self.on = False
        if self._tool is not None:
            monitoring: Any = getattr(sys, "monitoring")  # noqa: B009
            monitoring.set_events(self._tool, 0)
            monitoring.register_callback(self._tool, monitoring.events.INSTRUCTION, None)
            monitoring.free_tool_id(self._tool)
            self._tool = None
            return
        sys.settrace(self._before[0])
        threading.settrace(self._before[1])

    def total(self) -> int:
        return sum(cell[0] for cell in list(self._cells)) + sum(list(self._by_thread.values()))

    def _monitor(self) -> None:
        monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 (Python 3.12+; typed for 3.11 too)
        tool = next(i for i in range(monitoring.PROFILER_ID, 6) if monitoring.get_tool(i) is None)
        monitoring.use_tool_id(tool, self._TOOL)
        self._tool = tool
        counts, ident = self._by_thread, threading.get_ident

        def instruction(code: Any, offset: int) -> None:
            if self.on:
                me = ident()  # one key per thread: no two threads add to the same one
                counts[me] = counts.get(me, 0) + 1

        monitoring.register_callback(tool, monitoring.events.INSTRUCTION, instruction)
        monitoring.set_events(tool, monitoring.events.INSTRUCTION)

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        local = getattr(self._local, "fn", None)
        if local is None:
            cell = [0]
            self._cells.append(cell)

            def local(frame: FrameType, event: str, arg: Any) -> Any:
                if event == "opcode" and self.on:
                    cell[0] += 1
                return local

            self._local.fn = local
        return local


def switches() -> int | None:
    """Voluntary context switches of this process's threads so far (None off Linux)."""
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            for line in Path(f"/proc/self/task/{tid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue  # the thread ended
    return total


# -- the probes: each is set up, then ``op(count)`` performs ``count`` operations --------------------


class _Echo:
    def echo(self, x: Any) -> Any:
        return x


class _Counter:
    def __init__(self) -> None:
        self.n = 0
        self.last = b""

    def add(self, x: bytes) -> bytes:
        self.n += 1
        self.last = x
        return x


def _host(persist: str, serve: bool, gateway: bool = False) -> tuple[Any, Any, str]:
    """The probe types on in-process hosts (no Ray, no directory: ``route_to``): (the echo
    type, the type of a caller co-located with it and with the cells, and the endpoint of
    a gateway in front of the host if ``gateway``, else ""). ``serve``: calls to the
    echo's host travel over its gRPC endpoint. The caller's ``reach`` calls ``CostFar``, an
    echo on a host of its own behind its own gRPC server, as an actor on another host would."""
    import fluentfn as ff

    from .._clusterconfig import ClusterConfig
    from .._ioloop import io_loop
    from .._ref import set_invoker
    from ..runtime._gateway import Gateway
    from ..runtime._stateful import StatefulRuntime
    from ..state import open_store
    from ._floorloop import Cell  # the activation benchmark's cell, activated the same way

    echo = ff.actor(name="CostEcho", persist=persist, shards=1)(_Echo)
    cell = ff.actor(name="CostCell", colocate_with=echo, persist="never", idle_timeout_s=3600.0)(Cell)
    far = ff.actor(name="CostFar", persist=persist, shards=1)(_Echo)
    counter = ff.actor(name="CostCounter", colocate_with=echo, persist="call")(_Counter)

    class _Caller:
        def calls(self, count: int) -> int:
            return _echoes(echo["k"], count)

        def reach(self, count: int) -> int:
            return _echoes(far["k"], count)

        def writes(self, count: int) -> int:
            target = counter["k"]
            for _ in range(count):
                if target.add(PAYLOAD) != PAYLOAD:
                    raise AssertionError("the counter answered something else")
            return count

        def spawn(self, start: int, count: int) -> int:
            out = cell.bulk("touch", {f"c{i}": () for i in range(start, start + count)})
            if len(out) != count:
                raise AssertionError(f"a bulk call of {count} items answered {len(out)}")
            return count

    caller = ff.actor(name="CostCaller", colocate_with=echo, persist="never")(_Caller)
    io = io_loop()  # the process's loop, which an ff.Client in it uses too: one loop, as in a process of each
    tmp = tempfile.mkdtemp(prefix="fluentfn-cost-")
    _TEMP.append(tmp)
    url = f"sqlite:///{tmp}/state.db"
    store = open_store(url)
    parts = _partitions(io, store, (echo, cell, caller, counter))
    config = ClusterConfig(token=TOKEN, store=url, namespace="bench-cost", cluster_id="bench-cost")
    runtime = StatefulRuntime(directory=None, config=config, io=io, local=parts, endpoint="cost-host")
    endpoint = _serve(io, parts) if serve else None
    for t in (echo, cell, caller, counter):
        runtime.route_to(t.name, echo.options.group, 1, endpoint)
    runtime.route_to(far.name, far.options.group, 1, _serve(io, _partitions(io, store, (far,))))
    set_invoker(runtime)
    if not gateway:
        return echo, caller, ""
    return echo, caller, _serve(io, Gateway(runtime, None))


def _echoes(target: Any, count: int) -> int:
    for _ in range(count):
        if target.echo(PAYLOAD) != PAYLOAD:
            raise AssertionError("the echo answered something else")
    return count


def _partitions(io: Any, store: Any, types: tuple[Any, ...]) -> Any:
    """A host of ``types`` (one co-location group) in this process: its one partition, claimed."""
    from .._actordef import ActorDef
    from ..host._engine import HostEngine
    from ..host._partitions import PartitionSet

    group = types[0].options.group

    def make(partition: int, epoch: int) -> HostEngine:
        async def load_type(name: str) -> None:
            return None

        engine = HostEngine(
            group=group, shard=partition, loop=io.loop, loop_thread=io.thread.ident or 0,
            load_type=load_type, store=store, shards=1, mailbox_limit=1_000_000,
        )  # fmt: skip
        for t in types:
            engine.add_type(ActorDef(t.cls, t.options))
        engine.persistence.epoch = epoch
        _ENGINES.append(engine)
        return engine

    parts = PartitionSet(group=group, host_id=f"cost-{group}", partitions=1, node_id="cost", make=make)
    parts.adopt(0, 1)
    for engine in parts.engines.values():
        engine.persistence.claim()
    return parts


def _serve(io: Any, dispatcher: Any) -> str:
    """The endpoint of a gRPC server for ``dispatcher`` (kept for the life of the process:
    a grpc.aio server stops when it is collected)."""
    from ..transport._server import start_server

    server, port = io.run(start_server(dispatcher, TOKEN))
    _KEPT.append(server)
    return f"127.0.0.1:{port}"


def _probe(name: str) -> Callable[[int], None]:
    """Set up probe ``name``; its ``op(count)``."""
    if name == "python-activation":
        from ._floorloop import floor

        def loop(count: int) -> None:
            floor(count)

        return loop
    if name == "grpc-aio-stream":
        return _grpc_floor()
    persist = "call" if name.startswith("colocated") else "never"
    echo, caller, gateway = _host(persist, serve=name in ("driver", "pipelined", "gateway"), gateway=name == "gateway")
    if name == "colocated":
        ref = caller["c"]

        def calls(count: int) -> None:
            ref.calls(count)

        return calls
    if name == "colocated-write":
        writer = caller["w"]

        def writes(count: int) -> None:
            writer.writes(count)

        return writes
    if name == "remote":
        reacher = caller["r"]

        def reach(count: int) -> None:
            reacher.reach(count)

        return reach
    if name == "activation":
        ref = caller["s"]
        start = [0]

        def spawn(count: int) -> None:
            ref.spawn(start[0], count)
            start[0] += count

        return spawn
    if name == "driver":
        target = echo["k"]

        def calls(count: int) -> None:
            for _ in range(count):
                if target.echo(PAYLOAD) != PAYLOAD:
                    raise AssertionError("the echo answered something else")

        return calls
    if name == "pipelined":
        target = echo["k"]

        def pipelined(count: int) -> None:
            for future in [target.echo.future(PAYLOAD) for _ in range(count)]:
                if future.result() != PAYLOAD:
                    raise AssertionError("the echo answered something else")

        return pipelined
    if name == "gateway":
        import fluentfn as ff

        client = ff.Client(gateway, token=TOKEN, direct=False, tunnel=False)
        address = echo["k"].address

        def through(count: int) -> None:
            for _ in range(count):
                if client.call(address, "echo", PAYLOAD) != PAYLOAD:
                    raise AssertionError("the echo answered something else")

        return through
    raise ValueError(f"no probe {name!r}")


def _grpc_floor() -> Callable[[int], None]:
    """A raw grpc.aio stream echo, both ends on one loop; each round trip is sent from the
    calling thread and awaited there, as a driver's call is."""
    from .._ioloop import IoLoop
    from ..transport._raw import serve_stream_echo_on, stream_echo_client

    io = IoLoop()
    server, port = io.run(serve_stream_echo_on("127.0.0.1"))
    _KEPT.append(server)
    round_trip = io.run(stream_echo_client(f"127.0.0.1:{port}", PAYLOAD))

    def calls(count: int) -> None:
        for _ in range(count):
            io.run(round_trip())

    return calls


def _no_housekeeping() -> None:
    """Stop the probe's hosts' background loops (the reaper's and the reminders' polls):
    they run by the clock, not by the operation, so they would add more opcodes to a
    slower run (on a busy machine) than to a fast one."""
    for engine in _ENGINES:
        asyncio.run_coroutine_threadsafe(engine.upkeep.stop(), engine.loop).result(30)


def probe(name: str, count: int, traced: bool) -> dict[str, float | None]:
    """Run probe ``name`` in this process (a fresh one: ``traced`` installs the opcode
    count before any thread starts); its figures per operation."""
    from .. import _gc

    _gc.tune(user_process=False)  # as in a host, and in a driver that called ff.init
    counter = OpcodeCount()
    if traced:
        counter.install()
    op = _probe(name)
    # Warm (first activations, routes, streams) past the turns every method has timed,
    # and count whole sampling periods, so that the same tree gives the same count.
    count = -(-count // EVERY) * EVERY
    op(EXACT + EVERY)
    _no_housekeeping()
    sizes = (count, 3 * count)
    # Opcodes are the same each time: one round. Time and switches are not: a stall (a busy
    # machine's scheduler) only adds to a run, so each size's least of ``TIMED_ROUNDS``
    # (one stall in the N run made its difference from the 3N run negative).
    rounds = 1 if traced else TIMED_ROUNDS
    figures: dict[int, list[tuple[float, int, int | None]]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            s0, o0, t0 = switches(), counter.total(), time.perf_counter()
            counter.on = traced
            op(n)
            counter.on = False
            t1, o1, s1 = time.perf_counter(), counter.total(), switches()
            figures[n].append((t1 - t0, o1 - o0, None if s0 is None or s1 is None else s1 - s0))
    small, large = figures[count], figures[3 * count]
    span = 2 * count
    if traced:
        return {"opcodes_per_op": round((large[0][1] - small[0][1]) / span, 1)}
    took = min(f[0] for f in large) - min(f[0] for f in small)
    if any(f[2] is None for f in small + large):
        handoffs = None
    else:  # (a thread that ended between the readings takes its switches with it: never below 0)
        extra = min(f[2] or 0 for f in large) - min(f[2] or 0 for f in small)
        handoffs = max(0.0, round(extra / span, 2))
    return {"us_per_op": round(took / span * 1e6, 2), "handoffs_per_op": handoffs}


def _in_process(name: str, count: int, traced: bool) -> dict[str, float | None]:
    """``probe`` in a fresh Python process (so tracing sees every thread from its start)."""
    cmd = [sys.executable, "-m", "fluentfn.bench.cost", "--probe", name, "--count", str(count)]
    if traced:
        cmd.append("--traced")
    out: dict[str, float | None] = json.loads(_report.last_line(cmd, f"cost probe {name}"))
    return out


TIMED_ROUNDS = 3
"""Untraced runs of each size: their time and switches are each size's least."""

BUDGET_PYTHON = (3, 11)
BUDGET = {"colocated": 1_865, "colocated-write": 2_480, "activation": 790}
"""Opcodes an operation may cost, on ``BUDGET_PYTHON`` (a Python version's compiler makes
its own bytecode): ``tests/test_bench_cost.py`` fails a change that exceeds them. The counts
are 1,831, 2,435 and 755 today. A co-located call whose turn writes was 2,525 before a
turn's write took fewer steps in the store and its meter (the write is 604 of its opcodes).
A bulk item was 1,745 before its turns ran in batches, 1,414 before a reply of None was
recorded once per process, 1,367 before a batch counted its calls once and made no reply
object for an item answered by the shared record of None, 1,343 before a batch's turns made
their context and call only when asked for, 1,032 before a bulk call travelled as flat lists
and an idle identity was two objects. A change that must cost more raises its budget and
says why."""

COUNTS = {
    "colocated": 960, "colocated-write": 960, "activation": 1920, "driver": 480, "pipelined": 1920, "remote": 480,
    "gateway": 480, "python-activation": 19_200, "grpc-aio-stream": 480,
}  # fmt: skip


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    for name in PROBES:
        count = COUNTS[name] // (3 if quick else 1)
        row: dict[str, Any] = {"system": name, "floor": FLOOR_OF.get(name, "")}
        row.update(_in_process(name, count, traced=True))
        row.update(_in_process(name, count, traced=False))
        rows.append(row)
    by = {r["system"]: r for r in rows}
    notes = []
    for name, floor in FLOOR_OF.items():
        r, f = by[name], by[floor]
        notes.append(
            f"{name}: {r['opcodes_per_op']:,.0f} opcodes and {r['handoffs_per_op']} hand-offs an operation, "
            f"{r['opcodes_per_op'] / f['opcodes_per_op']:.1f}x the opcodes of the {floor} floor "
            f"({f['opcodes_per_op']:,.0f}, {f['handoffs_per_op']} hand-offs); "
            f"{r['us_per_op'] / f['us_per_op']:.1f}x its time in this run"
        )
    c = by["colocated"]
    notes.append(
        f"colocated: {c['opcodes_per_op']:,.0f} opcodes and {c['handoffs_per_op']} hand-offs a call "
        "(the call runs in the calling thread: no hand-off)"
    )
    if sys.version_info[:2] == BUDGET_PYTHON:
        for name, budget in BUDGET.items():
            spent = by[name]["opcodes_per_op"]
            verdict = "within" if spent <= budget else "OVER"
            notes.append(f"{name}: {spent:,.0f} opcodes of a budget of {budget:,} ({verdict})")
    notes.append("opcode counts are the same on any machine with this Python; compare them across commits")
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:
        parser = argparse.ArgumentParser(prog="fluentfn.bench.cost")
        parser.add_argument("--probe", choices=PROBES, required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--traced", action="store_true")
        args = parser.parse_args(argv)
        figures = probe(args.probe, args.count, args.traced)
        for tmp in _TEMP:
            shutil.rmtree(tmp)
        print(json.dumps(figures), flush=True)
        os._exit(0)  # the probe's threads and servers end with the process
    return _report.cli("cost", __doc__, run, "opcodes_per_op", argv)


if __name__ == "__main__":
    sys.exit(main())
