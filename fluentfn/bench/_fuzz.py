"""``fluentfn bench reliability``'s fuzzer: malformed calls at a gateway and a host (random
bytes, truncated frames, msgpack bombs, unknown types and methods, wrong argument types,
huge keys, private methods), sent as they are over bare gRPC; counts the statuses and
checks that state stayed unchanged and everything kept serving."""

from __future__ import annotations

import collections
import os
import random
from typing import Any

import grpc
import msgpack

import fluentfn as ff

from .._call import Call
from ..testing import hosts
from ..transport._raw import RawStub
from ..wire import codec


class _FuzzTarget:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        if not isinstance(k, int) or isinstance(k, bool):
            raise TypeError("k must be an int")
        self.n += k
        return self.n

    def get(self) -> int:
        return self.n


FuzzTarget = ff.actor(name="FuzzTarget", shards=2)(_FuzzTarget)


def _fuzz_case(rng: random.Random) -> tuple[str, Call]:
    kind = rng.choice(
        [
            "bytes",
            "truncated",
            "bomb_depth",
            "bomb_len",
            "unknown_type",
            "unknown_method",
            "wrong_type",
            "huge_key",
            "arity",
            "bad_ext",
            "private",
        ]
    )
    call = Call(type_name="FuzzTarget", key=f"f{rng.randint(0, 3)}", method="add", request_id=os.urandom(8).hex())
    if kind == "bytes":
        call.args = rng.randbytes(rng.randint(1, 200))
    elif kind == "truncated":
        whole = codec.encode_args((rng.randint(0, 9), "x" * rng.randint(0, 50)), {})
        call.args = whole[: rng.randint(1, len(whole) - 1)]
    elif kind == "bomb_depth":
        call.args = b"\x92" + b"\x91" * rng.randint(2_000, 200_000) + b"\xc0"
    elif kind == "bomb_len":
        call.args = b"\x92" + rng.choice([b"\xdd", b"\xdf", b"\xdb", b"\xc6"]) + b"\xff\xff\xff\xf0" + rng.randbytes(8)
    elif kind == "unknown_type":
        call.type_name = "".join(rng.choice("abcXYZ_") for _ in range(rng.randint(1, 300)))
        call.args = codec.encode_args((1,), {})
    elif kind == "unknown_method":
        call.method = "".join(rng.choice("abc_xyz") for _ in range(rng.randint(1, 300)))
        call.args = codec.encode_args((1,), {})
    elif kind == "wrong_type":
        call.args = codec.encode_args((rng.choice(["1", 1.5, None, [1], {"a": 1}, b"x", True]),), {})
    elif kind == "huge_key":
        call.key = "k" * rng.randint(1_025, 100_000)
        call.args = codec.encode_args((1,), {})
    elif kind == "arity":
        call.args = codec.encode_args(tuple(range(rng.choice([0, 2, 3]))), rng.choice([{}, {"nope": 1}]))
    elif kind == "bad_ext":
        call.args = msgpack.packb([[msgpack.ExtType(rng.choice([1, 2, 3, 7, 100]), rng.randbytes(20))], {}])
    else:
        call.method = rng.choice(["_FuzzTarget__x", "__init__", "__class__", "on_activate", "_private"])
        call.args = codec.encode_args((1,), {})
    return kind, call


def fuzz(cluster: ff.Cluster, n: int = 10_000, seed: int = 7) -> dict[str, Any]:
    """``n`` malformed calls at the gateway and at a host; returns statuses and whether
    state stayed unchanged and everything kept serving."""
    keys = [f"f{i}" for i in range(4)]
    before = {k: FuzzTarget[k].get() for k in keys}
    host_endpoints = [h["endpoint"] for h in hosts(cluster) if h["group"] == "FuzzTarget"]
    endpoints = [cluster.gateway, *host_endpoints[:1]]
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    stubs = [RawStub(e, cluster.token, options) for e in endpoints]
    rng = random.Random(seed)
    statuses: collections.Counter[str] = collections.Counter()
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i in range(n):
        kind, call = _fuzz_case(rng)
        stub = stubs[i % len(stubs)]
        try:
            reply = stub.invoke(call, timeout=30)
            status = "OK(user error)" if reply.error is not None else "OK"
        except grpc.RpcError as exc:
            status = exc.code().name
        statuses[status] += 1
        by_kind[kind][status] += 1
    after = {k: FuzzTarget[k].get() for k in keys}
    return {
        "cases": n,
        "statuses": dict(statuses),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "state_unchanged": before == after,
        "still_serving": FuzzTarget["f0"].add(0) == before["f0"],
    }
