"""The ``fluentfn`` command: demo, bench, serve, status, call, lab."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .lab._cli import app as lab_app

app = typer.Typer(help="fluentfn: addressable, stateful, GPU-schedulable functions on Ray.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")

EXIT_ACTOR_ERROR, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 1, 2, 3, 4


def _serve_file(namespace: str) -> Path:
    from . import _config

    return _config.home(namespace) / "serve.json"


@app.command()
def demo(out: Annotated[Path, typer.Option(help="where the table and plot go")] = Path("fluentfn-demo")) -> None:
    """The main job: the paper's messaging and training case studies, stateful vs FaaS."""
    from .bench import _report
    from .bench import demo as demo_mod

    with _report.running("demo"):
        rows = demo_mod.run(out, print_table=False)
    demo_mod.show(rows, out)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="latency, throughput, activation, paper, reliability, turns, elastic, sim, cost")
    ],
) -> None:
    """Run a benchmark: NAME [--quick] [--out DIR]."""
    from .bench.__main__ import main as bench_main

    raise typer.Exit(bench_main([name, *ctx.args]))


@app.command()
def serve(
    app_module: Annotated[str, typer.Argument(metavar="APP", help="module name or .py file defining the actors")],
    address: Annotated[str | None, typer.Option(help="join this Ray cluster instead of starting one")] = None,
    namespace: Annotated[str, typer.Option()] = "default",
    store: Annotated[str | None, typer.Option(help="sqlite:///path or redis://host:port/db")] = None,
    bind: Annotated[str, typer.Option(help="address the gRPC endpoints listen on")] = "127.0.0.1",
    gateways: Annotated[
        int, typer.Option(min=0, max=16, help="gateways in Ray actors of their own, restarted when they die")
    ] = 1,
) -> None:
    """Run a cluster and gateways in the foreground, serving APP's actors."""
    import ray

    import fluentfn as ff

    from . import _config
    from .runtime._gateway import start_gateways

    _import_app(app_module)
    cluster = ff.init(address=address, namespace=namespace, store=store, bind=bind)
    actors = start_gateways(namespace, bind, gateways, detached=address is not None)
    try:
        endpoints = [*ray.get([a.address.remote() for a in actors], timeout=_config.RESOLVE_TIMEOUT_S)]
    except Exception as exc:
        cluster.shutdown()
        typer.echo(f"the gateways did not start: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    endpoints.append(cluster.gateway)  # this process's own, last
    path = _serve_file(namespace)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        info = {"gateway": endpoints[0], "gateways": endpoints, "token": cluster.token, "namespace": namespace}
        info |= {"pid": os.getpid(), "ray_address": ray.get_runtime_context().gcs_address}
        json.dump(info, fh)
    typer.echo(f"fluentfn serving {app_module} on {', '.join(endpoints)} (token in {path}); Ctrl-C stops")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        path.unlink(missing_ok=True)
        for actor in actors:
            ray.kill(actor, no_restart=True)
        cluster.shutdown()


def _import_app(target: str) -> None:
    """Import APP (a ``.py`` file or a module name): a clear error, exit 2, when it is not
    there; an error inside it is its own (with its traceback)."""
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {target}", param_hint="APP")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise typer.BadParameter(f"cannot import {target}", param_hint="APP")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return
    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (target == exc.name or target.startswith(f"{exc.name}.")):
            raise  # a module the app imports is missing: the app's own error
        raise typer.BadParameter(
            f"no module named {target!r} (from {os.getcwd()}): give a module name or a .py file", param_hint="APP"
        ) from None
    except (TypeError, ValueError) as exc:  # "" or a relative name: not a module name at all
        raise typer.BadParameter(f"{target!r} is not a module name or a .py file ({exc})", param_hint="APP") from None


def _targets(conn: dict[str, Any]) -> str:
    """Every gateway of a `fluentfn serve` record, for ``ff.Client`` (it tries them in turn)."""
    listed = conn.get("gateways")
    if isinstance(listed, list) and listed and all(isinstance(g, str) for g in listed):
        return ",".join(listed)
    return str(conn["gateway"])


def _connection(namespace: str) -> dict[str, Any]:
    path = _serve_file(namespace)
    if not path.exists():
        typer.echo(f"no running `fluentfn serve` found ({path} is missing)", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("gateway"), str) or not data.get("token"):
            raise ValueError("it has no gateway and token")
    except (OSError, ValueError) as exc:
        typer.echo(f"{path} is not a readable `fluentfn serve` record ({exc}); restart `fluentfn serve`", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    return data


@app.command()
def call(
    address: Annotated[str, typer.Argument(help="Type/key")],
    method: Annotated[str, typer.Argument()],
    args: Annotated[list[str] | None, typer.Argument(help="JSON arguments")] = None,
    namespace: Annotated[str, typer.Option()] = "default",
) -> None:
    """Call METHOD on the actor at ADDRESS of the running `fluentfn serve`; prints JSON."""
    import fluentfn as ff

    try:
        decoded = [json.loads(a) for a in args or []]
    except json.JSONDecodeError as exc:
        typer.echo(f"arguments must be JSON: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    conn = _connection(namespace)
    try:
        with ff.Client(_targets(conn), token=conn["token"]) as client:
            result = client.call(address, method, *decoded)
    except ff.ActorError as exc:
        typer.echo(f"{exc.remote_type.split(':')[-1] or 'error'}: {exc}", err=True)
        raise typer.Exit(EXIT_ACTOR_ERROR) from None
    except (ff.InvalidRequest, ff.FluentError) as exc:
        code = {ff.NotFound: EXIT_NOT_FOUND, ff.InvalidRequest: EXIT_BAD_INPUT}.get(type(exc), EXIT_UNAVAILABLE)
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(code) from None
    typer.echo(json.dumps(result, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return repr(obj)


@app.command()
def status(
    namespace: Annotated[str, typer.Option()] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Hosts, their partitions, live identities and counters of the running `fluentfn serve`."""
    from rich.console import Console
    from rich.table import Table

    import fluentfn as ff

    from ._phases import breakdown, split_counters

    conn = _connection(namespace)
    try:
        with ff.Client(_targets(conn), token=conn["token"]) as client:
            reply = client.status()
    except ff.FluentError as exc:
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if as_json:
        hosts = [
            {
                "group": h.group, "host_id": h.host_id, "partitions": list(h.partitions), "shard": h.shard,
                "endpoint": h.endpoint, "node_id": h.node_id, "pid": h.pid,
                "epoch": h.epoch, "live_identities": h.live_identities, "gpu_ids": list(h.gpu_ids),
                "type_names": list(h.type_names), "metrics_url": h.metrics_url,
            }
            for h in sorted(reply.hosts, key=lambda h: (h.group, h.host_id))
        ]  # fmt: skip
        types = [
            {
                "type_name": t.type_name, "group": t.group, "partitions": t.shards, "hosts": t.hosts,
                "min_hosts": t.min_hosts, "max_hosts": t.max_hosts, "placement_problem": t.placement_problem,
            }
            for t in reply.types
        ]  # fmt: skip
        plain, phases = split_counters(dict(reply.counters))
        out = {
            "gateway": conn["gateway"],
            "type_names": list(reply.type_names),
            "live_identities": reply.live_identities,
            "counters": {k: int(v) for k, v in sorted(plain.items())},
            "breakdown": breakdown(phases),
            "hosts": hosts,
            "types": types,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"fluentfn hosts ({conn['gateway']})")
    for col in ("group", "host", "partitions", "endpoint", "node", "pid", "epoch", "live", "gpus", "types", "metrics"):
        table.add_column(col)
    for h in sorted(reply.hosts, key=lambda h: (h.group, h.host_id)):
        table.add_row(
            h.group, h.host_id, _ranges(list(h.partitions)), h.endpoint, h.node_id[:8], str(h.pid), str(h.epoch),
            str(h.live_identities),
            ",".join(map(str, h.gpu_ids)) or "-", ",".join(h.type_names), h.metrics_url,
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"types: {', '.join(reply.type_names)}; live identities: {reply.live_identities}")
    plain, phases = split_counters(dict(reply.counters))
    console.print({k: v for k, v in sorted(plain.items()) if v})
    for what, b in breakdown(phases).items():
        parts = [f"{p[:-3]} {b[p]['p50']:.2f}/{b[p]['p99']:.2f}" for p in b if p.endswith("_ms") and "p50" in b[p]]
        console.print(f"{what}: {b['calls']} calls; p50/p99 ms: " + ", ".join(parts))
    for t in reply.types:
        if t.placement_problem:
            console.print(f"[red]{t.type_name}[/red]: {t.placement_problem}")


@app.command()
def top(
    namespace: Annotated[str, typer.Option()] = "default",
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --once: the frame as JSON")] = False,
    interval: Annotated[float, typer.Option(help="seconds between frames")] = 1.0,
) -> None:
    """A live view of the running `fluentfn serve`: types, hosts, calls/s, p99, queues, errors."""
    import time

    from rich.console import Console
    from rich.live import Live

    import fluentfn as ff

    from ._top import frame, summary

    if interval <= 0:
        typer.echo("--interval must be > 0", err=True)
        raise typer.Exit(2)
    conn = _connection(namespace)
    try:
        with ff.Client(_targets(conn), token=conn["token"]) as client:
            before, t0 = client.status(), time.monotonic()
            time.sleep(interval)
            after, t1 = client.status(), time.monotonic()
            title = f"fluentfn top ({conn['gateway']})"
            if once:
                if as_json:
                    typer.echo(json.dumps(summary(before, after, t1 - t0), indent=2))
                else:
                    Console(width=120).print(frame(before, after, t1 - t0, title))
                return
            with Live(frame(before, after, t1 - t0, title), refresh_per_second=4, screen=False) as live:
                while True:
                    time.sleep(interval)
                    before, t0, (after, t1) = after, t1, (client.status(), time.monotonic())
                    live.update(frame(before, after, t1 - t0, title))
    except ff.FluentError as exc:
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except KeyboardInterrupt:
        return


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def compare(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="a Python program that uses ff.init()")],
    out: Annotated[Path | None, typer.Option(help="also write the table as JSON here")] = None,
) -> None:
    """Run SCRIPT in both modes (stateful and the FaaS baseline): latency, throughput, cost side by side.

    SCRIPT runs as written, then again with the mode it did not start forced; each run
    starts from an empty embedded store."""
    import subprocess
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from ._compare import ENV_FORCE_MODE, ENV_REPORT, rows

    if not script.is_file():
        typer.echo(f"no such program: {script}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    with tempfile.TemporaryDirectory(prefix="fluentfn-compare-") as tmp:
        records: list[dict[str, Any]] = []
        for forced in ("", "faas", "stateful"):
            seen = {r["mode"] for r in records}
            if forced and (forced in seen or ("stateful" not in seen and "faas" not in seen and forced == "stateful")):
                continue
            run_dir = Path(tmp) / (forced or "as-written")
            # each run starts from an empty embedded store (a store named by FLUENTFN_STORE is the user's)
            env = {**os.environ, ENV_REPORT: str(run_dir / "records"), "FLUENTFN_HOME": str(run_dir / "home")}
            if forced:
                env[ENV_FORCE_MODE] = forced
            typer.echo(f"running {script}" + (f" with {ENV_FORCE_MODE}={forced}" if forced else "") + " ...", err=True)
            run = subprocess.run([sys.executable, str(script), *ctx.args], env=env)
            if run.returncode != 0:
                typer.echo(f"{script} exited with {run.returncode}", err=True)
                raise typer.Exit(EXIT_ACTOR_ERROR)
            folder = Path(env[ENV_REPORT])
            records += [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
            if not records:
                typer.echo(f"{script} started no fluentfn cluster (ff.init)", err=True)
                raise typer.Exit(EXIT_BAD_INPUT)
    table_rows = rows(records)
    table = Table(title=f"fluentfn compare {script}")
    columns = ("mode", "calls", "seconds", "calls_per_s", "call_p50_ms", "call_p99_ms", "storage_ops", "cold_starts",
               "usd", "usd_per_1k_calls")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col == "mode" else "right")
    for r in table_rows:
        table.add_row(*(f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in columns))
    Console(width=140).print(table)
    if out is not None:
        out.write_text(json.dumps(table_rows, indent=2))


def _ranges(items: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    out: list[str] = []
    for i in sorted(items):
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out) or "-"


def _admin(namespace: str, address: str, method: str, *args: Any) -> Any:
    import fluentfn as ff

    conn = _connection(namespace)
    try:
        with ff.Client(_targets(conn), token=conn["token"]) as client:
            return client.call(address, method, *args)
    except ff.FluentError as exc:
        code = {ff.NotFound: EXIT_NOT_FOUND, ff.InvalidRequest: EXIT_BAD_INPUT}.get(type(exc), EXIT_UNAVAILABLE)
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(code) from None


@app.command(name="ls")
def ls_keys(
    type_name: Annotated[str, typer.Argument(metavar="TYPE")],
    prefix: Annotated[str, typer.Option(help="only keys starting with this")] = "",
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    namespace: Annotated[str, typer.Option()] = "default",
) -> None:
    """Keys of TYPE that have stored state, one a line."""
    from ._ref import KEYS_METHOD

    for key in _admin(namespace, f"{type_name}/*", KEYS_METHOD, prefix, limit):
        typer.echo(key)


@app.command(name="rm")
def rm_identity(
    address: Annotated[str, typer.Argument(help="Type/key")],
    namespace: Annotated[str, typer.Option()] = "default",
) -> None:
    """Deactivate the identity at ADDRESS and remove its state, replies and reminders."""
    from ._ref import DELETE_METHOD

    _admin(namespace, address, DELETE_METHOD)
    typer.echo(f"removed {address}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
