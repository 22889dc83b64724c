"""Thread scheduling priority: a host's event loop ahead of its turns (Linux only).

Linux schedules each thread on its own, so one process can rank its threads. A host puts
its event loop ``steps`` nice steps ahead of its turn threads (``FLUENTFN_TURN_NICE``):
when its turns keep the cores busy, the loop (replies, routing, a move's release and
adopt) and the gRPC threads it starts get a core as soon as they wake instead of waiting
out the turns' time slices. It raises the loop when the system lets it (root, or
``CAP_SYS_NICE``), so turns keep their share against other processes; otherwise it lowers
the turn threads instead, which then also yield to other processes on the machine.
Elsewhere (macOS, Windows) a priority is the whole process's, and nothing is changed.

Within the process, Python's GIL ranks nobody: a thread that wakes (the loop with a reply
to send, a move's hand-over) waits for the GIL until the thread holding it gives it up —
up to the switch interval, 5 ms by default, when that thread runs a CPU-bound turn. A
host shortens it (``switch_interval``, ``FLUENTFN_SWITCH_INTERVAL_MS``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger("fluentfn")

_LINUX = sys.platform == "linux"
_refused = False  # lowering a thread was refused once: said once per process


def process_level() -> int:
    """The nice value of this process's main thread (what its threads start from); 0 off Linux."""
    return os.getpriority(os.PRIO_PROCESS, os.getpid()) if _LINUX else 0


def thread_level(tid: int | None = None) -> int:
    """The nice value of thread ``tid`` of this process (a native id; default the calling
    thread); 0 off Linux."""
    return os.getpriority(os.PRIO_PROCESS, tid or threading.get_native_id()) if _LINUX else 0


def raise_thread(tid: int, steps: int) -> bool:
    """Schedule thread ``tid`` of this process (a native id) ``steps`` nice steps ahead of
    its main thread (threads it starts from now on inherit that). False where that is not
    allowed (an unprivileged process may only lower its threads) or not Linux: nothing changed."""
    if not _LINUX or steps <= 0:
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(-20, process_level() - steps))
    except OSError:  # EACCES/EPERM: raising needs CAP_SYS_NICE; the caller lowers the turns instead
        return False
    return True


def lower_this_thread(steps: int) -> None:
    """Schedule the calling thread ``steps`` nice steps behind its process's main thread
    (at most 19). ``steps=0`` puts a thread started by a raised one back level with the
    process; a thread started by a lowered one is not lowered twice. Linux only. A system
    that refuses is logged (once per process) and the thread keeps the level it has."""
    global _refused
    if not _LINUX:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, process_level() + steps))
    except OSError as exc:
        if not _refused:
            _refused = True
            log.warning("turn threads keep their priority: setpriority refused (%s)", exc)


def switch_interval(ms: float) -> float:
    """Let a thread of this process keep the GIL at most ``ms`` milliseconds while another
    waits for it (``sys.setswitchinterval``; 0 keeps the current one). Returns the interval
    now in force, in ms."""
    if ms > 0:
        sys.setswitchinterval(ms / 1000.0)
    return sys.getswitchinterval() * 1000.0
