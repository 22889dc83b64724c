"""The FaaS platform: execution environments, warm reuse, cold starts, throttling, lifetime caps.

One named async Ray actor per cluster in ``mode="faas"`` plays the platform's front end
(what Lambda's invoke service does): every invocation asks it for an environment of its
function, and it carries out what the pure policy (``_envpool.EnvPool``) decides. An
environment is a Ray actor of its own (a worker process) that runs one invocation at a
time; stopping one kills its process. Data never passes through the platform: the
request and the result travel through the store, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from .._call import Call
from .._clusterconfig import ClusterConfig
from .._ioloop import spawn
from .._phases import TALLY
from .._stats import new_counters
from ..errors import FluentError, FunctionTimeout, Overloaded, Unavailable
from ._envpool import Done as EnvDone
from ._envpool import EnvPool, Fail, Instruction, Lost, Request, Start, Started, StartFailed, Stop, Throttle, Tick, Use
from ._faasretry import run_async_invocation
from ._raycall import unwrap

PLATFORM_NAME = "fluentfn-faas-platform"
# A start fails when no environment of its kind (its GPUs) started for START_STALL_S while it
# waited (Ray cannot place it), or when it waited START_LIMIT_S in all. On a busy machine
# starts queue behind each other (Ray starts a few worker processes at a time): slow, not
# failed, while others of the kind still start.
START_STALL_S = 120.0
START_LIMIT_S = 600.0
log = logging.getLogger("fluentfn.faas")
ENV_START = "faas.environment"  # what the time breakdown calls environment starts (phase "start")


Body = Callable[[str, Any, Call, str, ClusterConfig, str], dict[str, int]]
Shape = tuple[float, str | None]  # a kind of environment: (num_gpus, accelerator)


class Environment:
    """One execution environment: a worker process that runs one invocation at a time.

    ``body`` is what an invocation does (``_faasinvoke.faas_invoke``, handed down by whoever
    started the platform, so this module does not import the runtime)."""

    def __init__(self, config: ClusterConfig, body: Body) -> None:
        self._config = config
        self._body = body

    def ready(self) -> tuple[int, str]:
        """This environment's pid and node (where the lab's kill and pause find it)."""
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def invoke(
        self, kind: str, code: Any, call: Call, waiting: str, faults: Any = None, row: str = ""
    ) -> dict[str, int]:
        """Run one invocation; ``faults``: the lab's faults, when they changed since this
        environment's last invocation (put in force here first); ``row``: see ``FaasPlatform.invoke``."""
        if faults is not None:
            from ..lab._nemesis import install

            install(faults)
        return self._body(kind, code, call, waiting, self._config, row)


def start_deadline(began: float, progress: float) -> float:
    """When a start that began at ``began`` fails, the last start of its kind having ended at
    ``progress`` (monotonic seconds; it moves later while others of the kind start)."""
    return min(max(began, progress) + START_STALL_S, began + START_LIMIT_S)


def start_failure(shape: Shape, waited: float) -> str:
    """Why a start that waited ``waited`` seconds failed (see ``start_deadline``)."""
    gpus, accelerator = shape
    kind = f"{gpus:g} GPU{'' if gpus == 1 else 's'}{f' ({accelerator})' if accelerator else ''}" if gpus else "no GPU"
    if waited >= START_LIMIT_S:
        return f"it did not start in {START_LIMIT_S:g} s"
    return (
        f"no environment of its kind ({kind}) started in the {START_STALL_S:g} s it waited: Ray could not "
        "place it (`ray status` shows the cluster's resources) or start a worker process that long"
    )


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still exists (a zombie not yet reaped counts
    as gone: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: it exists
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc here: os.kill's answer stands


class FaasPlatform:
    """The platform's front end (a named async Ray actor): environments per function."""

    def __init__(self, config: ClusterConfig, body: Body) -> None:
        self._config = config
        self._body = body
        self._profile = profile = config.faas
        self._pool = EnvPool(
            keep_alive_s=profile.keep_alive_s,
            max_concurrency=profile.max_concurrency,
            always_cold=profile.cold_start,
        )
        self._envs: dict[int, Any] = {}  # env id -> Ray actor handle
        self._gpus: dict[str, tuple[float, str | None]] = {}  # function -> (num_gpus, accelerator)
        self._waiting: dict[int, asyncio.Future[Instruction]] = {}
        self._totals = new_counters()
        self._next_rid = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._store: Any = None  # opened to clean up after a failed tell
        self._where: dict[int, tuple[int, str]] = {}  # env id -> (pid, node id)
        self._busy: dict[int, Call] = {}  # env id -> the call it runs now
        self._faults: Any = None  # the lab's faults, and their version ...
        self._faults_version = 0
        self._env_faults: dict[int, int] = {}  # ... that each environment has
        self._spares: list[tuple[Any, int, str]] = []  # started, empty environments: (handle, pid, node)
        self._filling = 0  # spares being started
        self._starts: set[int] = set()  # environments being started (their Start is carried out)
        self._pending: dict[int, Any] = {}  # ... of those, new processes not yet up: env -> handle
        self._called_off: set[int] = set()  # ... and those nobody waits for any more (the pool's Stop)
        self._progress: dict[Shape, float] = {}  # kind of environment -> when one last started

    # -- the one entry point -------------------------------------------------------------------

    async def invoke(
        self,
        fn: str,
        gpus: tuple[float, str | None],
        kind: str,
        code: Any,
        call: Call,
        waiting: str,
        cap: float,
        row: str = "",
    ) -> None:
        """Run one invocation in an environment of ``fn``; its result is in the store.
        ``row``: the store rows of this delivery, when it is a second delivery of the call
        (the lab's duplicate: same request id, its own message row, no result row).

        Raises ``Overloaded`` (throttled), ``FunctionTimeout`` (killed at ``cap``) or
        ``Unavailable`` (no environment could be started, or it crashed: the invocation
        may have run, so it is not retried). A ``tell``'s sender does not wait: the
        platform runs a failed one again, as Lambda does an asynchronous invocation
        (``_faasretry``), and logs and removes the one that failed every time.
        """
        if not call.one_way:
            await self._invoke(fn, gpus, kind, code, call, waiting, cap, row)
            return
        failure = await run_async_invocation(
            lambda: self._invoke(fn, gpus, kind, code, call, waiting, cap, row), self._profile, fn, self._totals
        )
        if failure is not None:
            log.warning("one-way invocation of %s failed: %s: %s", fn, type(failure).__name__, failure)
            self._totals["async_failures"] = self._totals.get("async_failures", 0) + 1
            await asyncio.get_running_loop().run_in_executor(None, self._discard, row or call.request_id)

    def _discard(self, rid: str) -> None:
        from ..state import open_store

        if self._store is None:
            self._store = open_store(self._config.store)
        self._store.delete(f"msg:{rid}")

    async def _invoke(
        self,
        fn: str,
        gpus: tuple[float, str | None],
        kind: str,
        code: Any,
        call: Call,
        waiting: str,
        cap: float,
        row: str,
    ) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
            self._refill()
        if self._profile.invocation_overhead_ms:
            await asyncio.sleep(self._profile.invocation_overhead_ms / 1000.0)
        self._gpus[fn] = gpus
        rid = self._next_rid
        self._next_rid += 1
        got: asyncio.Future[Instruction] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = got
        self._apply(self._pool.handle(Request(rid, fn, time.monotonic(), queue=call.one_way)))
        decision = await got
        if isinstance(decision, Throttle):
            raise Overloaded(
                f"{fn}: {self._profile.max_concurrency} invocations are running (the concurrency limit); "
                "the call was throttled and did not run"
            )
        if isinstance(decision, Fail):
            raise Unavailable(f"{fn}: no execution environment: {decision.why}; the call did not run")
        assert isinstance(decision, Use)
        counters = await self._run(decision, kind, code, call, waiting, cap, row)
        counters["cold_starts" if decision.cold else "warm_starts"] += 1
        counters["invocations"] += 1
        for name, value in counters.items():
            self._totals[name] = self._totals.get(name, 0) + value

    async def _run(
        self, use: Use, kind: str, code: Any, call: Call, waiting: str, cap: float, row: str
    ) -> dict[str, int]:
        import ray

        env = self._envs[use.env]
        faults = self._faults if self._env_faults.get(use.env, 0) != self._faults_version else None
        self._env_faults[use.env] = self._faults_version
        self._busy[use.env] = call
        try:
            counters: dict[str, int] = await asyncio.wait_for(
                env.invoke.remote(kind, code, call, waiting, faults, row), cap
            )
        except TimeoutError:
            died = self._died_already(use.env)
            self._kill(use.env)
            self._apply(self._pool.handle(Lost(use.env)))
            if died:  # gone before the cap, and Ray had not said so yet (a busy machine): say what happened
                raise Unavailable(
                    f"{call.type_name}: its execution environment died during the invocation "
                    "(its process was gone at the lifetime cap); the call may have run and is not retried"
                ) from None
            raise FunctionTimeout(f"invocation ran past its {cap} s lifetime and was killed") from None
        except (ray.exceptions.RayError, asyncio.CancelledError) as exc:
            self._kill(use.env)  # it crashed, or its caller gave up: the environment is not reused
            self._apply(self._pool.handle(Lost(use.env)))
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, FluentError):
                raise unwrap(exc) from None
            raise Unavailable(
                f"{call.type_name}: its execution environment died during the invocation "
                f"({type(exc).__name__}); the call may have run and is not retried"
            ) from None
        finally:
            self._busy.pop(use.env, None)
        self._apply(self._pool.handle(EnvDone(use.env, time.monotonic())))
        return counters

    # -- carrying out the policy -------------------------------------------------------------

    def _apply(self, instructions: list[Instruction]) -> None:
        for ins in instructions:
            if isinstance(ins, Use | Throttle | Fail):
                waiter = self._waiting.pop(ins.rid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(ins)
            elif isinstance(ins, Start):
                self._starts.add(ins.env)
                spawn(self._start(ins), self._tasks)
            elif isinstance(ins, Stop) and ins.env in self._starts:
                self._call_off(ins.env)
            elif isinstance(ins, Stop):
                self._kill(ins.env)
        self._wake.set()

    def _new_environment(self, num_gpus: float = 0.0, accelerator: str | None = None) -> Any:
        import ray

        options: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 1, "max_restarts": 0}
        if num_gpus:
            options["num_gpus"] = num_gpus
        if accelerator:
            options["accelerator_type"] = accelerator
        return ray.remote(Environment).options(**options).remote(self._config, self._body)

    async def _start(self, ins: Start) -> None:
        """A cold start: a spare (started, empty) environment when there is one, else a new
        process; then the platform's own share of a cold start (``cold_start_overhead_ms``).
        A start called off meanwhile (``_call_off``) ends quietly."""
        try:
            await self._starting(ins)
        finally:
            self._starts.discard(ins.env)
            self._called_off.discard(ins.env)

    async def _starting(self, ins: Start) -> None:
        import ray

        if ins.env in self._called_off:  # before it began
            return
        began = time.perf_counter()
        num_gpus, accelerator = self._gpus.get(ins.fn, (0.0, None))
        plain = not num_gpus and not accelerator
        if self._spares and plain:
            handle, pid, node = self._spares.pop()
            self._refill()
        else:
            handle = self._new_environment(num_gpus, accelerator)
            self._refill()
            self._pending[ins.env] = handle
            try:
                pid, node = await self._ready(handle, (num_gpus, accelerator))
            except (TimeoutError, ray.exceptions.RayError) as exc:
                ray.kill(handle)
                if ins.env in self._called_off:  # killed by ``_call_off``: nobody waits for it
                    return
                why = str(exc) if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                log.warning("FaaS environment for %s did not start: %s", ins.fn, why)
                self._apply(self._pool.handle(StartFailed(ins.env, why)))
                return
            finally:
                self._pending.pop(ins.env, None)
        if self._profile.cold_start_overhead_ms:
            await asyncio.sleep(self._profile.cold_start_overhead_ms / 1000.0)
        if ins.env in self._called_off:  # up, and empty: a spare if there is room for one
            if plain and len(self._spares) < self._profile.prestarted:
                self._spares.append((handle, int(pid), str(node)))
            else:
                ray.kill(handle)
            return
        TALLY.observe(ENV_START, (("start", time.perf_counter() - began),))
        self._envs[ins.env] = handle
        self._where[ins.env] = (int(pid), str(node))
        self._apply(self._pool.handle(Started(ins.env, time.monotonic())))

    def _call_off(self, env: int) -> None:
        """The pool's ``Stop`` of an environment still starting (its invocation took one that
        freed up): a new process not up yet is killed now, so that Ray does not go on
        starting it; one that is up (a spare, or in the platform's cold-start overhead) is
        kept as a spare or killed when ``_start`` sees it called off."""
        import ray

        self._called_off.add(env)
        handle = self._pending.get(env)
        if handle is not None:
            ray.kill(handle)

    def _refill(self) -> None:
        """Start spares until ``prestarted`` are started or starting."""
        for _ in range(self._profile.prestarted - len(self._spares) - self._filling):
            spawn(self._spare(), self._tasks)

    async def _spare(self) -> None:
        import ray

        self._filling += 1
        handle = self._new_environment()
        try:
            pid, node = await self._ready(handle, (0.0, None))
        except (TimeoutError, ray.exceptions.RayError) as exc:  # cold starts start their own meanwhile
            ray.kill(handle)
            log.warning("a spare FaaS environment did not start: %s: %s", type(exc).__name__, exc)
            return
        finally:
            self._filling -= 1
        self._spares.append((handle, int(pid), str(node)))

    async def _ready(self, handle: Any, shape: Shape) -> tuple[int, str]:
        """Wait until a new environment's process is up: its (pid, node). Raises
        ``TimeoutError`` (saying why) when no environment of ``shape`` started for
        ``START_STALL_S`` while it waited, or it waited ``START_LIMIT_S`` in all."""
        ready: asyncio.Future[Any] = asyncio.ensure_future(handle.ready.remote())
        began = time.monotonic()
        try:
            while True:
                left = start_deadline(began, self._progress.get(shape, 0.0)) - time.monotonic()
                if left <= 0:
                    raise TimeoutError(start_failure(shape, time.monotonic() - began))
                done, _ = await asyncio.wait({ready}, timeout=left)
                if done:
                    pid, node = ready.result()
                    self._progress[shape] = time.monotonic()
                    return int(pid), str(node)
        finally:
            ready.cancel()  # no-op once done

    def _died_already(self, env: int) -> bool:
        """Whether environment ``env``'s process is known to have exited (on this node only:
        elsewhere it cannot be looked at from here, and the answer is False)."""
        import ray

        where = self._where.get(env)
        if where is None or where[1] != ray.get_runtime_context().get_node_id():
            return False
        return not process_alive(where[0])

    def _kill(self, env: int) -> None:
        import ray

        self._where.pop(env, None)
        self._env_faults.pop(env, None)
        handle = self._envs.pop(env, None)
        if handle is not None:
            ray.kill(handle)

    async def _reap(self) -> None:
        """Stop idle environments whose keep-alive has ended."""
        while True:
            now = time.monotonic()
            expiry = self._pool.next_expiry()
            if expiry is not None and expiry <= now:
                self._apply(self._pool.handle(Tick(now)))
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 5.0 if expiry is None else expiry - now)
            except TimeoutError:
                continue  # time to look again

    # -- the lab -----------------------------------------------------------------------------

    def set_faults(self, faults: Any) -> None:
        """The lab's faults: every environment takes them with its next invocation."""
        self._faults = faults
        self._faults_version += 1

    def faults(self) -> Any:
        return self._faults

    def processes(self) -> list[dict[str, Any]]:
        """Each live environment: its function, pid, node and the identity it runs now
        (``""`` when idle): what the lab's kill and pause choose from."""
        out = []
        for env, (pid, node) in self._where.items():
            call = self._busy.get(env)
            fn = self._pool.function_of(env)
            running = f"{call.type_name}/{call.key}" if call is not None else ""
            out.append({"env": env, "function": fn, "pid": pid, "node_id": node, "running": running})
        return out

    # -- views -------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters of every invocation that ended (cold and warm starts included), and the
        time environments took to start (``ENV_START``'s ``start`` phase)."""
        return {**self._totals, **TALLY.counters()}

    def environments(self) -> dict[str, dict[str, int]]:
        """Per function: busy, idle and queued environments."""
        return {
            fn: {"busy": self._pool.busy(fn), "idle": self._pool.idle(fn), "queued": self._pool.queued(fn)}
            for fn in self._gpus
        }
