"""One application, run unchanged in both modes: each function returns what it saw."""

from __future__ import annotations

import asyncio
from typing import Any

import fluentfn as ff

from .apps import Boom, Counter, Pinger, call_counter, explode, square


def counters(tag: str) -> list[Any]:
    c = Counter[f"{tag}-c"]
    out = [c.add(2), c.add.future(3).result(timeout=60), asyncio.run(c.add.aio(1))]
    c.add.tell(10)
    out.append(ff.ref(f"TCounter/{tag}-c").add(0) in (6, 16))
    return out


def chains(tag: str) -> list[Any]:
    a, b = Pinger[f"{tag}-a"], Pinger[f"{tag}-b"]
    a.set_peer(b)
    b.set_peer(a)
    return [a.ping(4), b.get_peer() == a, a.bump_other(Counter[f"{tag}-x"], 5), a.aping(Counter[f"{tag}-x"])]


def exceptions(tag: str) -> list[Any]:
    out: list[Any] = []
    c = Counter[f"{tag}-e"]
    c.add(1)
    try:
        c.fail("bad")
    except Boom as exc:
        out += [type(exc).__name__, isinstance(exc, ff.ActorError), exc.args]
    out.append(c.add(1))
    try:
        explode("fn")
    except Boom as exc:
        out += [isinstance(exc, ff.ActorError), exc.args]
    return out


def functions(tag: str) -> list[Any]:
    return [square(7), square.map([1, 2, 3]), square.future(5).result(timeout=60), call_counter(f"{tag}-f", 3)]


def refs(tag: str) -> list[Any]:
    p = Pinger[f"{tag}-r"]
    target = Counter[f"{tag}-t"]
    p.set_peer(target)
    back = p.get_peer()
    return [back == target, back.add(4), {target: 1}[back]]


EXPECTED = {
    "counters": [2, 5, 6, True],
    "chains": [4, True, 5, 6],
    "exceptions": ["Boom", True, ("bad", 42), 2, True, ("fn",)],
    "functions": [49, [1, 4, 9], 25, 3],
    "refs": [True, 4, 1],
}
