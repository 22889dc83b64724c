"""The decorator API: ``@ff.actor``, ``@ff.function`` and the handles they return."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from . import _ref
from ._actordef import ActorDef
from ._call import new_request_id
from ._config import DEFAULT_CALL_TIMEOUT_S
from ._numbers import check_number
from ._ref import BULK_METHOD, ActorRef, Future, bulk_message
from .elastic._autoscale import Autoscale
from .errors import REROUTE_CODES, FluentError, InvalidRequest, Unavailable
from .placement import ActorOptions, ResourceSpec, persist_mode, shard_for
from .wire.errors import reply_value
from .wire.records import read_record

log = logging.getLogger("fluentfn")
P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)

_KNOWN_TYPES: dict[str, ActorType] = {}
"""Actor types defined in this process, by name: registered with the cluster at ``ff.init``
(and when defined later), so that code in other processes can call them by name."""

_on_new_type: list[Callable[[ActorType], None]] = []
_SHORT_RECORD = 24
"""A bulk item's record this short (a value like None, a flag or a count) is decoded once
per batch: the same bytes are the same value."""
_IMMUTABLE = (type(None), bool, int, float, str)
_FEW = 16  # distinct records a batch's replies may have and still be read without a step per item
_BYTES = frozenset((bytes,))


def _shared_values(records: list[Any]) -> dict[bytes, Any] | None:
    """Each distinct record's value, when a batch's replies can be handed out by C loops:
    every record short bytes, at most ``_FEW`` distinct ones, each a success whose value is
    immutable (one object may then answer many items). None: read them one by one."""
    if not records or set(map(type, records)) != _BYTES or max(map(len, records)) > _SHORT_RECORD:
        return None
    distinct = set(records)
    if len(distinct) > _FEW:
        return None
    values: dict[bytes, Any] = {}
    for raw in distinct:
        _, reply = read_record(raw)
        if reply.error is not None:
            return None
        value = reply_value(reply)
        if type(value) not in _IMMUTABLE:
            return None
        values[raw] = value
    return values


def known_type(name: str) -> ActorType | None:
    """The locally defined actor type called ``name``, if any."""
    return _KNOWN_TYPES.get(name)


def check_tell(type_name: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a tell to a type defined here whose method is unknown or whose arguments do
    not bind (NotFound, InvalidRequest), before it leaves: no reply would carry the error."""
    at = _KNOWN_TYPES.get(type_name)
    if at is not None:
        at.definition.method(method).bind(args, kwargs)


def known_types() -> list[ActorType]:
    return list(_KNOWN_TYPES.values())


def on_new_type(hook: Callable[[ActorType], None] | None) -> None:
    """Install (or clear) what runs when a type is defined after ``ff.init``."""
    _on_new_type[:] = [hook] if hook else []


_BARE = (str, bytes, bytearray, Mapping)  # one argument given bare, not a sequence of them
_SEQUENCES = frozenset((list, tuple))


def _bulk_args(type_name: str, key: object, args: object) -> list[Any]:
    """A bulk item's positional arguments as a list of its own: InvalidRequest unless a
    sequence of them (a str, bytes or mapping is one argument given bare, a common slip). A
    list, not a tuple: that would travel as a tuple, an encoder callback each."""
    if type(args) is tuple or type(args) is list:  # the common case, without the ABC check or the cast
        return list(args)
    if not isinstance(args, _BARE):
        try:
            return list(cast("Iterable[Any]", args))
        except TypeError:
            pass
    raise InvalidRequest(
        f"{type_name}.bulk: the arguments of key {key!r} are a list or tuple of them, not {type(args).__name__}"
    )


class ActorType:
    """What ``@ff.actor`` returns: ``Type[key]`` gives an ``ff.ActorRef``.

    The decorated class stays reachable as ``.cls`` (handy for unit tests of its logic).
    """

    def __init__(self, cls: type, options: ActorOptions) -> None:
        options.validate()
        if not isinstance(cls, type):
            raise FluentError("@ff.actor decorates a class")
        self.cls = cls
        self.options = options
        self.colocate_target: ActorType | None = None
        self._definition: ActorDef | None = None
        self.__doc__ = cls.__doc__
        self.__wrapped__ = cls

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def definition(self) -> ActorDef:
        """The runtime view of the class (its public methods), made on first use."""
        if self._definition is None:
            self._definition = ActorDef(self.cls, self.options)
        return self._definition

    def __getitem__(self, key: str | int) -> ActorRef:
        return ActorRef(self.options.name, key)

    def ref(self, key: str | int) -> ActorRef:
        """Same as ``Type[key]``."""
        return ActorRef(self.options.name, key)

    def bulk(self, method: str, calls: Mapping[str, Sequence[Any]] | Mapping[int, Sequence[Any]]) -> dict[str, Any]:
        """Call ``method(*args)`` on many identities: ``{key: args}`` -> ``{key: result}``.

        One message per shard (not per key), run inside each host: the way to load a
        partitioned data set. The first failure is raised after all items ran.
        """
        if not isinstance(method, str):
            raise InvalidRequest(f"{self.name}.bulk: a method is named by a str, not {type(method).__name__}")
        if not isinstance(calls, Mapping):
            raise InvalidRequest(f"{self.name}.bulk: the calls are a mapping {{key: args}}, not {type(calls).__name__}")
        keys = _ref.check_keys(calls)
        given = list(calls.values())
        if set(map(type, given)) <= _SEQUENCES:  # the common case, each a list or tuple: ``_bulk_args`` in C
            arguments = list(map(list, given))
        else:
            arguments = [_bulk_args(self.name, k, v) for k, v in zip(calls, given, strict=True)]
        pending = dict(zip(keys, arguments, strict=True))
        invoker = _ref.current_invoker()
        if getattr(invoker, "mode", "stateful") in ("faas", "sim"):  # no hosts to batch on: a call per key
            futures = {k: invoker.submit(ActorRef(self.name, k), method, tuple(a), {}) for k, a in pending.items()}
            return {k: f.result() for k, f in futures.items()}
        return self._bulk_rounds(invoker, method, pending)

    def _bulk_rounds(self, invoker: Any, method: str, pending: dict[str, list[Any]]) -> dict[str, Any]:
        """Send each partition's items as one batch; items a moving partition refused
        (they did not run) are sent again, with the same batch id, until each has a reply.
        A re-sent batch is marked as a possible repeat: items that ran are answered from
        their records."""
        batch, attempt = new_request_id(), 0
        results: dict[str, Any] = {}
        first_error: BaseException | None = None
        deadline = time.monotonic() + DEFAULT_CALL_TIMEOUT_S
        delay = 0.01
        while pending:
            by_shard: dict[int, tuple[list[str], list[list[Any]]]] = {}
            if self.options.shards == 1:  # one partition: no key to place
                by_shard[0] = (list(pending), list(pending.values()))
            else:
                for k, a in pending.items():
                    keys, arguments = by_shard.setdefault(shard_for(k, self.options.shards), ([], []))
                    keys.append(k)
                    arguments.append(a)
            futures = {
                shard: invoker.submit(
                    ActorRef(self.name, keys[0]), BULK_METHOD, bulk_message(method, keys, arguments, batch, attempt), {}
                )
                for shard, (keys, arguments) in by_shard.items()
            }
            refused: dict[str, list[Any]] = {}
            small: dict[bytes, Any] = {}  # a short record's value (None, a flag, a count), decoded once
            for shard, fut in futures.items():
                keys, arguments = by_shard[shard]
                records = fut.result()
                shared = _shared_values(records)
                if shared is not None:  # the common case (None, a flag, a count each): no step per item
                    results.update(zip(keys, map(shared.__getitem__, records), strict=True))
                    continue
                for key, args, raw in zip(keys, arguments, records, strict=True):
                    short = type(raw) is bytes and len(raw) <= _SHORT_RECORD
                    if short and raw in small:
                        results[key] = small[raw]
                        continue
                    _, reply = read_record(raw)
                    if reply.error is not None and reply.error.code in REROUTE_CODES:
                        refused[key] = args  # its partition moved before it ran
                        continue
                    try:
                        results[key] = value = reply_value(reply)
                    except FluentError as exc:
                        first_error = first_error or exc
                    else:
                        if short and type(value) in _IMMUTABLE:
                            small[raw] = value
            if refused and time.monotonic() > deadline:
                raise Unavailable(f"{self.name}.bulk: {len(refused)} items found no owner of their partition in time")
            pending, attempt = refused, 1
            if pending:
                time.sleep(delay)
                delay = min(0.5, delay * 2)
        if first_error is not None:
            raise first_error
        return results

    def keys(self, prefix: str = "", limit: int | None = None) -> list[str]:
        """Keys of this type that have stored state (starting with ``prefix``), sorted."""
        return _ref.current_invoker().keys(self.name, *_ref.check_listing(prefix, limit))

    def delete(self, key: str | int) -> None:
        """Deactivate ``key`` (without writing its memory) and remove its state, recorded
        replies and reminders. Its next call starts afresh with ``__init__``."""
        _ref.current_invoker().delete(ActorRef(self.name, key))

    def __repr__(self) -> str:
        return f"<fluentfn actor type {self.options.name}>"


def _resources(given: Any) -> Any:
    """A copy of ``resources=`` ({} for None); anything else is left for validation to refuse."""
    if given is None:
        return {}
    return dict(given) if isinstance(given, dict) else given


def _resolve_colocate(target: Any) -> tuple[str | None, ActorType | None]:
    if target is None:
        return None, None
    if isinstance(target, ActorType):
        return target.options.group, target
    if isinstance(target, str):
        return target, _KNOWN_TYPES.get(target)
    raise FluentError("colocate_with takes an @ff.actor type or its name")


@overload
def actor(cls: C, /) -> ActorType: ...


@overload
def actor(
    *,
    name: str | None = None,
    shards: int | None = None,
    persist: str = "call",
    idle_timeout_s: float = 900.0,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    resources: dict[str, float] | None = None,
    accelerator_type: str | None = None,
    colocate_with: ActorType | str | None = None,
    reentrant: bool = False,
    partitions: int | None = None,
    min_hosts: int | None = None,
    max_hosts: int | None = None,
    autoscale: Autoscale | None = None,
) -> Callable[[type], ActorType]: ...


def actor(
    cls: type | None = None,
    /,
    *,
    name: str | None = None,
    shards: int | None = None,
    persist: str = "call",
    idle_timeout_s: float = 900.0,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    resources: dict[str, float] | None = None,
    accelerator_type: str | None = None,
    colocate_with: ActorType | str | None = None,
    reentrant: bool = False,
    partitions: int | None = None,
    min_hosts: int | None = None,
    max_hosts: int | None = None,
    autoscale: Autoscale | None = None,
) -> ActorType | Callable[[type], ActorType]:
    """Make a class an addressable, stateful actor type (bare, or with options).

    Public attributes are the persisted state; ``_private`` ones are transient.
    ``colocate_with`` gives the type the partitions and hosts of another type (they move
    together). Keys map to ``partitions`` (default 64) served by ``min_hosts`` (default 1)
    to ``max_hosts`` (default 8, at most ``partitions``) hosts: a fixed ``min_hosts``
    until ``cluster.scale`` changes it, or following load with ``autoscale=``.
    ``shards=N`` is the fixed form: N partitions on exactly N hosts.
    """

    def wrap(target: type) -> ActorType:
        group, colocated = _resolve_colocate(colocate_with)
        if colocated is not None:  # one group, one placement: the target's
            base = colocated.options
            n_parts, lo, hi, scale = base.shards, base.min_hosts, base.max_hosts, base.autoscale
        else:
            n_parts, lo, hi, scale = elastic_options(shards, partitions, min_hosts, max_hosts, autoscale)
        options = ActorOptions(
            name=target.__name__ if name is None else name,
            shards=n_parts,
            persist=persist_mode(persist),
            idle_timeout_s=idle_timeout_s,
            spec=ResourceSpec(num_cpus, num_gpus, _resources(resources), accelerator_type),
            colocate_with=group,
            reentrant=reentrant,
            min_hosts=lo,
            max_hosts=hi,
            autoscale=scale,
        )
        at = ActorType(target, options)
        at.colocate_target = colocated
        _claim_name(options.name, target)
        _KNOWN_TYPES[options.name] = at
        for hook in _on_new_type:
            hook(at)
        return at

    if cls is not None:
        return wrap(cls)
    return wrap


def _claim_name(name: str, cls: type) -> None:
    """FluentError if a class of another name already holds actor type name ``name`` in
    this process (``@ff.actor(name="X")`` on two classes: calls to either would run the
    other's code). A class of the same name takes it over, as a class defined again does
    (a re-run notebook cell, a module run as ``__main__`` and imported too, a test's local
    class); one from elsewhere is logged, since hosts already running keep the old code."""
    prior = _KNOWN_TYPES.get(name)
    if prior is None or prior.cls is cls:
        return
    old, new = f"{prior.cls.__module__}.{prior.cls.__qualname__}", f"{cls.__module__}.{cls.__qualname__}"
    if prior.cls.__name__ != cls.__name__:
        raise FluentError(f"actor type name {name!r} is taken by {old}: give {new} another name (@ff.actor(name=...))")
    if old != new and prior.cls.__module__ != "__main__":
        log.warning("actor type %r: %s replaces %s (hosts already running keep the old code)", name, new, old)


def elastic_options(
    shards: int | None,
    partitions: int | None,
    min_hosts: int | None,
    max_hosts: int | None,
    autoscale: Autoscale | None,
) -> tuple[int, int, int, Autoscale | None]:
    """(partitions, min_hosts, max_hosts, autoscale) from the decorator's arguments."""
    if shards is not None:
        if min_hosts is not None or max_hosts is not None or autoscale is not None:
            raise FluentError("shards=N fixes the host count: give partitions/min_hosts/max_hosts/autoscale instead")
        if not isinstance(shards, int) or isinstance(shards, bool):
            raise FluentError(f"shards must be an int, not {shards!r}")
        return (shards if partitions is None else partitions), shards, shards, None
    n_parts = 64 if partitions is None else partitions
    lo = 1 if min_hosts is None else min_hosts
    if max_hosts is None:
        hi = max(lo, min(8, n_parts)) if isinstance(n_parts, int) and isinstance(lo, int) else 8
    else:
        hi = max_hosts
    return n_parts, lo, hi, autoscale


class FunctionType(Generic[P, R]):
    """What ``@ff.function`` returns: call it, or use ``.future``, ``.aio``, ``.map``."""

    def __init__(
        self, fn: Callable[P, R], *, num_cpus: float | None, num_gpus: float, max_duration_s: float | None
    ) -> None:
        if not callable(fn):
            raise FluentError("@ff.function decorates a function")
        self.fn = fn
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.spec = ResourceSpec(num_cpus=num_cpus, num_gpus=num_gpus)
        self.spec.validate()
        if max_duration_s is not None:
            check_number("max_duration_s", max_duration_s, positive=True, finite=True)
        self.max_duration_s = max_duration_s
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.future(*args, **kwargs).result()
        return result

    def future(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Start a run; returns an ``ff.Future``."""
        return _ref.current_invoker().run_function(self, args, kwargs)

    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Awaitable run, for async code."""
        return await asyncio.wrap_future(self.future(*args, **kwargs))

    def map(self, *iterables: Iterable[Any]) -> list[R]:
        """Run over zipped iterables in parallel; results in order."""
        futures = [self.future(*args) for args in zip(*iterables, strict=False)]  # type: ignore[call-arg]
        return [f.result() for f in futures]

    def __repr__(self) -> str:
        return f"<fluentfn function {self.name}>"


@overload
def function(fn: Callable[P, R], /) -> FunctionType[P, R]: ...


@overload
def function(
    *, num_cpus: float | None = None, num_gpus: float = 0, max_duration_s: float | None = None
) -> Callable[[Callable[P, R]], FunctionType[P, R]]: ...


def function(
    fn: Callable[P, R] | None = None,
    /,
    *,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    max_duration_s: float | None = None,
) -> FunctionType[P, R] | Callable[[Callable[P, R]], FunctionType[P, R]]:
    """Make a stateless function that runs as a Ray task (bare, or with options)."""

    def wrap(target: Callable[P, R]) -> FunctionType[P, R]:
        return FunctionType(target, num_cpus=num_cpus, num_gpus=num_gpus, max_duration_s=max_duration_s)

    if fn is not None:
        return wrap(fn)
    return wrap
