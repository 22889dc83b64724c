"""The Redis store (``redis://host:port/db``): for multi-node clusters.

Conditional writes are Lua scripts, so the version and epoch checks and the write are
one atomic step. Durability is Redis's: run it with ``appendonly yes``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgpack

from .._config import REPLY_TTL_S
from ..errors import Unavailable
from ._layout import merge
from ._store import Record, Reminder, Scheduled, StaleEpoch, StoreLost, VersionConflict, WouldBlock, Write

# Both save scripts write a record with this: its version and inline state, then its parts
# from ARGV[at] on (their count, -1 for a whole state: no parts left; then field, op, value
# each). Returns the index of the first argument after them.
_WRITE_RECORD = """
local function write_record(key, version, state, at)
  redis.call('HSET', key, 'v', version, 's', state)
  local p = tonumber(ARGV[at])
  if p < 0 then
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if string.sub(field, 1, 2) == 'p:' then redis.call('HDEL', key, field) end
    end
    p = 0
  end
  for i = 0, p - 1 do
    local field, op, value = ARGV[at + 1 + 3 * i], ARGV[at + 2 + 3 * i], ARGV[at + 3 + 3 * i]
    if op == 's' then redis.call('HSET', key, field, value) else redis.call('HDEL', key, field) end
  end
  return at + 1 + 3 * p
end
"""

_SAVE = (
    _WRITE_RECORD
    + """
if KEYS[2] ~= '' then
  local e = tonumber(redis.call('GET', KEYS[2]) or '0')
  if e > tonumber(ARGV[1]) then return {-1, e} end
end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[2]) then return {-2, v} end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5]) end
local base = write_record(KEYS[1], v + 1, ARGV[3], 7)
local n = tonumber(ARGV[6] or '0')
for i = 0, n - 1 do
  local at = base + 4 * i
  local member, payload, due, where = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  if redis.call('HSETNX', KEYS[4], member, where) == 1 then
    redis.call('HSET', KEYS[5 + 2 * i], member, payload)
    redis.call('ZADD', KEYS[6 + 2 * i], due, member)
  end
end
return {v + 1, 0}
"""
)


# save_many: KEYS[1] the epoch key ('' for none), KEYS[1 + i] record i's hash. ARGV: the
# writer's epoch, then per record: expected version, state, its parts (as write_record
# reads them). Every check first, then every write: all or none.
_SAVE_MANY = (
    _WRITE_RECORD
    + """
if KEYS[1] ~= '' then
  local e = tonumber(redis.call('GET', KEYS[1]) or '0')
  if e > tonumber(ARGV[1]) then return {-1, e, 0} end
end
local at = 2
local starts = {}
for i = 2, #KEYS do
  local v = tonumber(redis.call('HGET', KEYS[i], 'v') or '0')
  if v ~= tonumber(ARGV[at]) then return {-2, v, i - 1} end
  starts[i] = at
  at = at + 3 + 3 * math.max(tonumber(ARGV[at + 2]), 0)
end
for i = 2, #KEYS do
  local a = starts[i]
  write_record(KEYS[i], tonumber(ARGV[a]) + 1, ARGV[a + 1], a + 2)
end
return {0, 0, 0}
"""
)


_CLAIM = """
local e = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return e
"""


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def redact(url: str) -> str:
    """``url`` without its password (``redis://:***@host:port/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    """A ``Store`` on a Redis server."""

    def __init__(self, url: str, prefix: str = "ff") -> None:
        import redis

        self.url = redact(url)  # for messages: never the password
        self._p = prefix
        self._r: Any = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        self._save = self._r.register_script(_SAVE)
        self._save_many = self._r.register_script(_SAVE_MANY)
        self._claim = self._r.register_script(_CLAIM)
        self._errors: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        # The store's identity: set once by the first process to open it. A flushed server,
        # or a URL that now points at another one, no longer has it.
        self._call(self._r.set, self._k("store-id"), os.urandom(12).hex(), nx=True)
        found = self._call(self._r.get, self._k("store-id"))
        self.store_id = found.decode() if found else ""

    def _k(self, *parts: object) -> str:
        """A key from parts of which only the last may be arbitrary text (an address)."""
        return ":".join([self._p, *(str(p) for p in parts)])

    def _reply_key(self, address: str, request_id: str) -> str:
        # Two arbitrary strings: the address's length makes the split unambiguous.
        return self._k("reply", len(address), f"{address}:{request_id}")

    @staticmethod
    def _member(address: str, rid: str) -> bytes:
        """A reminder's name in the sorted set: both parts, unambiguously (no separator
        a key could contain)."""
        return msgpack.packb([address, rid], use_bin_type=True)  # type: ignore[no-any-return]

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise Unavailable(f"redis store {self.url}: {exc}") from None

    def check(self) -> None:
        found = self._call(self._r.get, self._k("store-id"))
        if found is None or found.decode() != self.store_id:
            raise StoreLost(f"{self.url}: the Redis store was flushed or now points at another server")

    def claim_shard(self, group: str, shard: int, owner: str = "", *, nowait: bool = False) -> int:
        if nowait:
            raise WouldBlock("a Redis claim is a network round trip")
        self.check()
        keys = [self._k("epoch", group, shard), self._k("owner", group, shard)]
        return int(self._call(self._claim, keys=keys, args=[owner]))

    def keys(self, type_name: str, prefix: str = "", limit: int | None = None) -> list[str]:
        head = self._k("state", f"{type_name}/")
        pattern = _glob_escape(self._k("state", f"{type_name}/{prefix}")) + "*"
        found = sorted(k.decode()[len(head) :] for k in self._call(lambda: list(self._r.scan_iter(match=pattern))))
        return found if limit is None else found[:limit]

    def delete_identity(self, address: str) -> None:
        replies = _glob_escape(self._reply_key(address, "")) + "*"
        doomed = [self._k("state", address), *self._call(lambda: list(self._r.scan_iter(match=replies)))]
        members = [
            (m, w)
            for m, w in self._call(lambda: list(self._r.hscan_iter(self._k("remidx"))))
            if msgpack.unpackb(m, raw=False)[0] == address
        ]
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(*doomed)
        for member, where in members:
            group, shard = msgpack.unpackb(where, raw=False)
            pipe.zrem(self._k("rem", group, shard), member)
            pipe.hdel(self._k("remp", group, shard), member)
            pipe.hdel(self._k("remidx"), member)
        self._call(pipe.execute)

    def shard_owner(self, group: str, shard: int) -> tuple[int, str]:
        epoch, owner = self._call(self._r.mget, [self._k("epoch", group, shard), self._k("owner", group, shard)])
        return int(epoch or 0), (owner or b"").decode()

    def shard_epoch(self, group: str, shard: int) -> int:
        return int(self._call(self._r.get, self._k("epoch", group, shard)) or 0)

    def load(self, address: str) -> Record | None:
        # One command: the record (``v``, ``s``) and its large parts (``p:<name>``) as one
        # write left them.
        fields = self._call(self._r.hgetall, self._k("state", address))
        version = fields.pop(b"v", None)
        if version is None:
            return None
        inline = fields.pop(b"s", None) or b""
        parts = {k[2:].decode("utf-8", "surrogatepass"): v for k, v in fields.items() if k.startswith(b"p:")}
        return Record(int(version), merge(inline, parts) if parts else inline)

    def save(
        self,
        address: str,
        *,
        expected: int,
        state: bytes,
        fence: tuple[str, int, int] | None,
        reply: tuple[str, bytes] | None = None,
        reminders: Sequence[Scheduled] = (),
        parts: Mapping[str, bytes | None] | None = None,
        nowait: bool = False,
        urgent: bool = False,  # one round trip, queued behind nothing of this process's
    ) -> int:
        if nowait:
            raise WouldBlock("a Redis write is a network round trip")
        epoch_key = self._k("epoch", fence[0], fence[1]) if fence else ""
        epoch = fence[2] if fence else 0
        reply_key = self._reply_key(address, reply[0]) if reply else ""
        keys = [self._k("state", address), epoch_key, reply_key, self._k("remidx")]
        args: list[Any] = [epoch, expected, state, reply[1] if reply else b"", int(REPLY_TTL_S), len(reminders)]
        args += self._parts_args(parts)
        for item in reminders:  # the turn's reminders: the partition's payloads and due set each
            keys += [self._k("remp", item.group, item.shard), self._k("rem", item.group, item.shard)]
            member = self._member(item.row.address, item.row.rid)
            args += [member, item.row.payload, item.row.due, msgpack.packb([item.group, item.shard], use_bin_type=True)]
        result = self._call(self._save, keys=keys, args=args)
        status, detail = int(result[0]), int(result[1])
        if status == -1:
            raise StaleEpoch(f"shard moved to epoch {detail} (writer has {epoch})")
        if status == -2:
            raise VersionConflict(f"{address} is at version {detail}, not {expected}")
        return status

    @staticmethod
    def _parts_args(parts: Mapping[str, bytes | None] | None) -> list[Any]:
        """The scripts' arguments for a record's parts: their count (-1: a whole state, no
        parts left), then (field, op, value) per part."""
        args: list[Any] = [-1 if parts is None else len(parts)]
        for name, value in (parts or {}).items():
            args += [b"p:" + name.encode("utf-8", "surrogatepass"), b"d" if value is None else b"s", value or b""]
        return args

    def save_many(
        self,
        writes: Sequence[Write],
        *,
        fence: tuple[str, int, int] | None,
        urgent: bool = False,
        nowait: bool = False,
    ) -> list[int]:
        if nowait:
            raise WouldBlock("a Redis write is a network round trip")
        if not writes:
            return []
        epoch = fence[2] if fence else 0
        keys = [self._k("epoch", fence[0], fence[1]) if fence else ""]
        args: list[Any] = [epoch]
        for w in writes:
            keys.append(self._k("state", w.address))
            args += [w.expected, w.state, *self._parts_args(w.parts)]
        status, detail, index = (int(x) for x in self._call(self._save_many, keys=keys, args=args))
        if status == -1:
            raise StaleEpoch(f"shard moved to epoch {detail} (writer has {epoch})")
        if status == -2:
            w = writes[index - 1]
            raise VersionConflict(f"{w.address} is at version {detail}, not {w.expected}")
        return [w.expected + 1 for w in writes]

    def get_reply(self, address: str, request_id: str) -> bytes | None:
        value = self._call(self._r.get, self._reply_key(address, request_id))
        return None if value is None else bytes(value)

    def prune_replies(self, older_than: float) -> int:
        return 0  # replies carry a Redis TTL

    def prune_expired(self, now: float) -> int:
        return 0  # so do KV rows with a ttl_s

    def add_reminder(self, group: str, shard: int, reminder: Reminder) -> None:
        member = self._member(reminder.address, reminder.rid)
        pipe = self._r.pipeline(transaction=True)
        # NX: a reminder id is derived from its turn's request id; a re-run turn adds it once
        pipe.hsetnx(self._k("remp", group, shard), member, reminder.payload)
        pipe.zadd(self._k("rem", group, shard), {member: reminder.due}, nx=True)
        pipe.hsetnx(self._k("remidx"), member, msgpack.packb([group, shard], use_bin_type=True))
        self._call(pipe.execute)

    def cancel_reminder(self, address: str, rid: str) -> bool:
        member = self._member(address, rid)
        where = self._call(self._r.hget, self._k("remidx"), member)
        if where is None:
            return False
        group, shard = msgpack.unpackb(where, raw=False)
        pipe = self._r.pipeline(transaction=True)
        pipe.zrem(self._k("rem", group, shard), member)
        pipe.hdel(self._k("remp", group, shard), member)
        pipe.hdel(self._k("remidx"), member)
        removed = self._call(pipe.execute)
        return bool(removed[0])

    def reschedule_reminder(self, group: str, shard: int, address: str, rid: str, due: float) -> bool:
        member = self._member(address, rid)
        changed = self._call(self._r.zadd, self._k("rem", group, shard), {member: due}, xx=True, ch=True)
        return bool(changed) or self._call(self._r.zscore, self._k("rem", group, shard), member) is not None

    def reminders_of(self, address: str) -> list[Reminder]:
        out = []
        for member, where in self._call(lambda: list(self._r.hscan_iter(self._k("remidx")))):
            owner, rid = msgpack.unpackb(member, raw=False)
            if owner != address:
                continue
            group, shard = msgpack.unpackb(where, raw=False)
            due = self._call(self._r.zscore, self._k("rem", group, shard), member)
            payload = self._call(self._r.hget, self._k("remp", group, shard), member)
            if due is not None:
                out.append(Reminder(address, rid, float(due), payload or b""))
        return sorted(out, key=lambda r: r.due)

    def due_reminders(self, group: str, shard: int, now: float, limit: int = 100) -> list[Reminder]:
        members = self._call(
            self._r.zrangebyscore, self._k("rem", group, shard), "-inf", now, start=0, num=limit, withscores=True
        )
        if not members:
            return []
        payloads = self._call(self._r.hmget, self._k("remp", group, shard), [m for m, _ in members])
        out = []
        for (member, due), payload in zip(members, payloads, strict=True):
            address, rid = msgpack.unpackb(member, raw=False)
            out.append(Reminder(address, rid, float(due), payload or b""))
        return out

    def put(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        # (Redis's TTL is whole milliseconds, at least one)
        expiry = None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        self._call(self._r.set, self._k("kv", key), value, px=expiry)

    def get(self, key: str) -> bytes | None:
        value = self._call(self._r.get, self._k("kv", key))
        return None if value is None else bytes(value)

    def delete(self, key: str) -> None:
        self._call(self._r.delete, self._k("kv", key))

    def close(self) -> None:
        self._r.close()
