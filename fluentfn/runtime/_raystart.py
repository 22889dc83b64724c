"""Starting or joining Ray for ``ff.init``, and the store check a multi-node cluster needs."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from ..errors import FluentError
from ._raycall import forbid_auto_start

log = logging.getLogger("fluentfn")


def check_store_fits(given: str | None, url: str, nodes: int) -> None:
    """Refuse the node-local SQLite default on a cluster of several nodes: each node would
    keep its own, diverging state. An explicit ``store=`` (or ``FLUENTFN_STORE``) is taken
    as the operator's choice (a SQLite file on a shared disk, say)."""
    if given is None and url.startswith("sqlite:") and nodes > 1:
        raise FluentError(
            f"this Ray cluster has {nodes} nodes, but the store is the node-local SQLite default ({url}), "
            "which would split state between nodes: pass store='redis://host:port/db' (or set FLUENTFN_STORE); "
            "an explicit store='sqlite:///...' is accepted as your choice"
        )


def start_local_ray(*, num_cpus: float | None, num_gpus: float | None, namespace: str, level: int) -> None:
    """Start an embedded Ray; up to two more tries if it was slow to come up (a busy machine)."""
    import ray

    # Ray starts its worker processes at nice 15, to keep them from starving its own daemons.
    # fluentfn's hosts are those workers and they are the service: at nice 15 any ordinary
    # process on a busy machine (a load generator, the caller itself) starves them, and
    # calls slow down many times over instead of losing their CPU share. An embedded Ray
    # runs them at the caller's priority unless RAY_worker_niceness says otherwise.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Ray waits 30 s for its GCS to write its port file. On a busy 2-core machine, right
    # after the last embedded cluster shut down, that wait ran out three times in a row
    # (the fourth start, 96 s later, came up): wait longer, and longer between tries.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "60")
    slow_start = (
        "timed out during startup",  # raylet or GCS slow to come up
        "Timed out waiting for file",
        "called ray.init twice",  # the last cluster's driver was still connected (a slow shutdown): shut down again
    )
    for attempt in range(3):
        try:
            ray.init(
                address="local",  # always a new embedded cluster, never a stale one found on disk
                num_cpus=num_cpus,  # type: ignore[arg-type]
                num_gpus=num_gpus,  # type: ignore[arg-type]
                namespace=namespace,
                include_dashboard=False,
                logging_level=level,
                configure_logging=True,
            )
        except Exception as exc:
            ray.shutdown()
            why = f"{exc}; {startup_diagnosis()}"
            if attempt == 2 or not any(sign in str(exc) for sign in slow_start):
                raise FluentError(f"could not start a local Ray: {why}") from None
            log.warning("a local Ray did not start (try %d of 3): %s", attempt + 1, why)
            time.sleep(5.0 * (attempt + 1))
            continue
        forbid_auto_start()
        return


def startup_diagnosis(temp_dir: Path | None = None) -> str:
    """What a failed embedded start left behind, for its error: Ray's daemons alive on this
    machine (pid, state, session) and the tail of the newest session's GCS logs. A start
    that failed on a busy machine wrote no GCS log once; this says next time whether the
    GCS ran at all, and in what state."""
    temp_dir = temp_dir or Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray"
    daemons = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            name = Path(argv[0].decode(errors="replace")).name
            if name not in ("gcs_server", "raylet"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        session = next((a.decode(errors="replace") for a in argv if b"session_" in a), "")
        session = session[session.find("session_") :].split("/")[0] if session else "?"
        daemons.append(f"{name} pid {proc.name} state {state} ({session})")
    sessions = sorted(temp_dir.glob("session_2*"), key=lambda d: d.stat().st_mtime)
    newest = sessions[-1] if sessions else None
    logs = []
    for name in ("gcs_server.err", "gcs_server.out"):
        path = newest / "logs" / name if newest is not None else None
        if path is None or not path.exists():
            logs.append(f"{name}: none")
            continue
        tail = path.read_bytes()[-300:].decode(errors="replace").strip().replace("\n", " | ")
        logs.append(f"{name}: {tail or 'empty'}")
    alive = "; ".join(daemons) or "no gcs_server or raylet alive"
    where = newest.name if newest is not None else "no session"
    return f"Ray daemons: {alive}; newest session {where}: " + "; ".join(logs)


def join_ray(address: str, namespace: str, level: int) -> None:
    """Connect to a running Ray. Clusters started by ``ray start`` check Ray's own token
    (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``), which a driver sends only in token mode."""
    import ray

    _check_listening(address)
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or (Path.home() / ".ray" / "auth_token").exists()
    if has_token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        ray.init(address=address, namespace=namespace, logging_level=level)
    except Exception as exc:
        ray.shutdown()
        raise FluentError(f"cannot join the Ray cluster at {address}: {exc}") from None
    forbid_auto_start()


def _check_listening(address: str) -> None:
    """Refuse at once an address where nothing listens: Ray's own join retries its GCS
    connection for minutes before it gives up on a typo. Only a plain ``host:port`` is
    checked (``auto``, ``ray://`` and friends are Ray's to resolve)."""
    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise FluentError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc})") from None
