"""Actor references, method proxies and futures: the caller-side surface of a call.

This module sits low in the import order (the wire codec builds ``ActorRef`` values),
so it reaches the runtime only through the ``Invoker`` protocol registered at run time.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable, Generator, Iterable
from typing import Any, Protocol, TypeVar, cast

from . import _config
from .errors import CallTimeout, FluentError, InvalidRequest

T = TypeVar("T")


class Invoker(Protocol):
    """What a runtime (stateful or FaaS) offers to references and function handles."""

    def submit(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Future[Any]: ...

    async def call_async(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any: ...

    def call(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> Any: ...

    def tell(
        self,
        ref: ActorRef,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> None: ...

    def run_function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]: ...

    def keys(self, type_name: str, prefix: str, limit: int | None) -> list[str]: ...

    def delete(self, ref: ActorRef) -> None: ...


_invoker: Invoker | None = None
_lazy_connect: Callable[[], Invoker | None] | None = None
_in_cluster_worker = False


def set_invoker(invoker: Invoker | None, *, worker: bool = False) -> None:
    """Install (or clear) the process's runtime; ``worker``: this process is one of the
    cluster's own (a host or an invocation), where ``ff.init`` must not be called."""
    global _invoker, _in_cluster_worker
    _invoker = invoker
    _in_cluster_worker = _in_cluster_worker or worker


def process_runtime_installed() -> bool:
    """True inside a cluster's own worker process (a host, a FaaS invocation)."""
    return _in_cluster_worker


def set_lazy_connect(factory: Callable[[], Invoker | None]) -> None:
    """Register how a worker process connects on first use (inside Ray tasks)."""
    global _lazy_connect
    _lazy_connect = factory


def current_invoker() -> Invoker:
    """The process's runtime; connects lazily inside cluster workers."""
    if _invoker is None and _lazy_connect is not None:
        set_invoker(_lazy_connect())
    if _invoker is None:
        raise FluentError("fluentfn is not initialised in this process: call ff.init() first")
    return _invoker


class Future(concurrent.futures.Future[T]):
    """The result of a ``.future`` call: ``.result(timeout)``, ``.done()``, awaitable.

    A ``result`` that times out raises ``ff.CallTimeout`` (also a ``TimeoutError``); the
    call itself goes on.
    """

    def result(self, timeout: float | None = None) -> T:
        try:
            return super().result(timeout)
        except concurrent.futures.TimeoutError:
            if self.done():
                raise
            raise CallTimeout(f"no reply within {timeout} s") from None

    def __await__(self) -> Generator[Any, None, T]:
        import asyncio

        return asyncio.wrap_future(self).__await__()


def check_key(key: object) -> str:
    """Validate and normalise an identity key (a non-empty str, or an int)."""
    if type(key) is str and key.isascii() and 0 < len(key) <= _config.MAX_KEY_BYTES:
        return key  # the common case: a short ASCII string, one byte a character
    if type(key) is int:  # the other common case (bulk loads key by number): ASCII digits
        # (past 4 bits a digit it is too long anyway: not written out, which Python refuses
        # for an int of over 4,300 digits)
        text = str(key) if key.bit_length() <= 4 * _config.MAX_KEY_BYTES else ""
        if text and len(text) <= _config.MAX_KEY_BYTES:
            return text
        raise InvalidRequest(f"actor keys are 1 to {_config.MAX_KEY_BYTES} bytes long")
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise InvalidRequest(f"actor keys are str or int, not {type(key).__name__}")
    text = key if type(key) is str else str(key)
    if text.isascii():  # the common case: one byte a character, nothing to encode
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidRequest("actor keys must be valid Unicode text (no lone surrogates)") from None
    if not text or size > _config.MAX_KEY_BYTES:
        raise InvalidRequest(f"actor keys are 1 to {_config.MAX_KEY_BYTES} bytes long")
    return text


_STR = frozenset((str,))


def check_keys(keys: Iterable[object]) -> list[str]:
    """``check_key`` of each of ``keys``, in order (a bulk call's). The common case, every
    key a short ASCII str, is checked by C loops (``map``, ``min``, ``max``), with no step
    of Python per key: for a batch of new identities, that step was a tenth of each."""
    given = list(keys)
    if given and set(map(type, given)) == _STR:
        text = cast("list[str]", given)
        if all(map(str.isascii, text)) and min(map(len, text)) > 0 and max(map(len, text)) <= _config.MAX_KEY_BYTES:
            return text
    return list(map(check_key, given))


def check_listing(prefix: object, limit: object) -> tuple[str, int | None]:
    """Validate a key listing's ``prefix`` (str) and ``limit`` (a non-negative int or None)."""
    if not isinstance(prefix, str):
        raise InvalidRequest(f"a key prefix is a str, not {type(prefix).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidRequest(f"a key limit is a non-negative int or None, not {limit!r}")
    return prefix, limit


def check_timeout(seconds: object) -> float:
    """Validate a call timeout: a finite number of seconds in (0, MAX_CALL_TIMEOUT_S]."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidRequest(f"a timeout is a number of seconds, not {type(seconds).__name__}")
    value = float(seconds)
    if not math.isfinite(value) or value <= 0 or value > _config.MAX_CALL_TIMEOUT_S:
        raise InvalidRequest(f"a timeout must be in (0, {_config.MAX_CALL_TIMEOUT_S:g}] seconds, got {seconds!r}")
    return value


class ActorRef:
    """A reference to the identity ``type_name/key``; nothing runs until it is called.

    Refs are hashable, compare by address, and can be passed as arguments, returned
    and kept in actor state.
    """

    __slots__ = ("_key", "_type_name")

    def __init__(self, type_name: str, key: str | int) -> None:
        if not type_name or "/" in type_name or len(type_name) > _config.MAX_NAME_BYTES:
            raise InvalidRequest(f"invalid actor type name {type_name!r}")
        self._type_name = type_name
        self._key = check_key(key)

    @property
    def type_name(self) -> str:
        return self._type_name

    @property
    def key(self) -> str:
        return self._key

    @property
    def address(self) -> str:
        """``"Type/key"``, accepted by ``ff.ref``."""
        return f"{self._type_name}/{self._key}"

    def __getattr__(self, name: str) -> MethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return MethodProxy(self, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._type_name == self._type_name and other._key == self._key

    def __hash__(self) -> int:
        return hash(("fluentfn.ActorRef", self._type_name, self._key))

    def __repr__(self) -> str:
        return f"ActorRef({self.address!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorRef, (self._type_name, self._key))


def ref(address: str) -> ActorRef:
    """The reference for an address string ``"Type/key"`` (the key may contain ``/``)."""
    if not isinstance(address, str) or "/" not in address:
        raise InvalidRequest(f"an address is 'Type/key', got {address!r}")
    type_name, key = address.split("/", 1)
    return ActorRef(type_name, key)


BULK_METHOD = "__bulk__"
"""The method name that carries a bulk call (``ActorType.bulk``): one batch per partition."""


def bulk_message(
    method: str, keys: list[str], arguments: list[list[Any]], batch: str, attempt: int
) -> tuple[str, list[str], list[list[Any]], str, int]:
    """A bulk call's arguments (``BULK_METHOD``): ``method`` run on each of ``keys`` with
    its positional ``arguments`` (one sequence a key, in the same order), as send
    ``attempt`` of batch ``batch``. Keys and arguments travel as two flat lists: nothing
    is made per item to send them, nor to read them."""
    return method, keys, arguments, batch, attempt


DELETE_METHOD = "__delete__"
"""The method a host runs, as a turn of its own, to deactivate an identity and erase it."""
KEYED_PREFIX = "key:"
"""Request ids derived from a client's idempotency key start with it (never a generated,
hex, or a derived, ``d...``, id). Any client may send one: the host then binds the id to
the call's method and arguments and refuses it where no reply can be recorded."""
IDEMPOTENCY_REUSED = "idempotency key reused for a different request"
"""How a host says a keyed request id was first recorded for another call (clients add the key)."""
KEYS_METHOD = "__keys__"
"""The method the gateway answers with a type's stored keys (``fluentfn ls``)."""


class MethodProxy:
    """``ref.method``: call it, or use ``.future``, ``.aio``, ``.tell``."""

    __slots__ = ("_name", "_ref", "_timeout")

    def __init__(self, target: ActorRef, name: str, timeout_s: float | None = None) -> None:
        self._ref = target
        self._name = name
        self._timeout = timeout_s

    def with_timeout(self, seconds: float) -> MethodProxy:
        """The same method with a deadline: past it, the call fails with ``ff.CallTimeout``
        (a call still waiting for its turn is dropped by the host). At most
        ``MAX_CALL_TIMEOUT_S`` (a day); anything else is ``ff.InvalidRequest``."""
        return MethodProxy(self._ref, self._name, check_timeout(seconds))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Blocking call: returns the method's result or raises its error."""
        return current_invoker().call(self._ref, self._name, args, kwargs, timeout_s=self._timeout)

    def future(self, *args: Any, **kwargs: Any) -> Future[Any]:
        """Start the call and return an ``ff.Future``; many futures pipeline."""
        return current_invoker().submit(self._ref, self._name, args, kwargs, timeout_s=self._timeout)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        """Awaitable call, for async code."""
        return await current_invoker().call_async(self._ref, self._name, args, kwargs, timeout_s=self._timeout)

    def tell(self, *args: Any, **kwargs: Any) -> None:
        """One-way message: no reply. An unknown method or unbindable arguments (of a type
        defined here) raise at once; the method's own errors are counted by the host. Sent
        from inside a turn it starts a new chain, with its own deadline (``with_timeout`` or
        the default)."""
        current_invoker().tell(self._ref, self._name, args, kwargs, timeout_s=self._timeout)

    def __repr__(self) -> str:
        return f"<method {self._name} of {self._ref!r}>"
