"""An actor type as the runtime sees it: class, options, callable methods, state."""

from __future__ import annotations

import dis
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import InvalidRequest, no_method
from .placement import ActorOptions

F = TypeVar("F", bound=Callable[..., Any])
HOOKS = frozenset({"on_activate", "on_deactivate"})


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """A callable method: the function, whether it is async, and its signature."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    signature: inspect.Signature | None
    # (min, max): the counts of positional arguments alone that fit without inspect's
    # binding (any, when the signature is unknown; none, when it has other kinds of params)
    positional: tuple[int, int] = (1, 0)
    readonly: bool = False  # @ff.readonly: no change detection, no write
    call_free: bool = False  # a sync method whose own code calls nothing (see ``makes_no_calls``)
    what: str = ""  # "Type.method": its name in the phase tally and traces

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """InvalidRequest unless the arguments fit the method's parameters."""
        low, high = self.positional
        if (not kwargs and low <= len(args) <= high) or self.signature is None:
            return  # the common case, without inspect's full binding
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise InvalidRequest(f"{self.name}(): {exc}") from None


class ActorDef:
    """The runtime view of a user class decorated with ``@ff.actor``."""

    def __init__(self, cls: type, options: ActorOptions) -> None:
        self.cls = cls
        self.options = options
        self.name = options.name
        self.methods: dict[str, MethodInfo] = {}  # public methods by name (read-only)
        for attr in dir(cls):
            if attr.startswith("_") or attr in HOOKS:
                continue
            fn = inspect.getattr_static(cls, attr)
            if isinstance(fn, staticmethod | classmethod) or not inspect.isfunction(fn):
                continue
            try:
                sig: inspect.Signature | None = inspect.signature(fn)
            except (TypeError, ValueError):
                sig = None
            is_async = inspect.iscoroutinefunction(fn)
            self.methods[attr] = MethodInfo(
                attr,
                fn,
                is_async,
                sig,
                _positional(sig),
                is_readonly(fn),
                not is_async and makes_no_calls(fn),
                f"{self.name}.{attr}",
            )
        self.on_activate = getattr(cls, "on_activate", None)
        self.on_deactivate = getattr(cls, "on_deactivate", None)

    @property
    def method_names(self) -> list[str]:
        return sorted(self.methods)

    def method(self, name: str) -> MethodInfo:
        """The public method ``name``; NotFound for anything else (private names, hooks)."""
        info = self.methods.get(name)
        if info is None:
            raise no_method(self.name, name)
        return info

    def new_instance(self) -> Any:
        """Create an instance and run ``__init__`` (once per identity)."""
        return self.cls()

    def restore(self, state: dict[str, Any]) -> Any:
        """An instance from persisted public state, without running ``__init__``."""
        inst: Any = object.__new__(self.cls)
        inst.__dict__.update(state)
        return inst


_READONLY = "__fluentfn_readonly__"


def readonly(fn: F) -> F:
    """Mark an actor method that never changes state: no change detection, no write.

    A read of a large state then costs the same as a read of a small one. The method
    must not change public attributes: a change it makes is not written (and is lost
    when the identity is passivated or moves).
    """
    if not callable(fn):
        raise InvalidRequest("@ff.readonly decorates a method")
    setattr(fn, _READONLY, True)
    return fn


def is_readonly(fn: Any) -> bool:
    return bool(getattr(fn, _READONLY, False))


# Instructions through which a method's own code could run other code that may block or
# wait: calls, imports, context managers, iteration (a file, a generator), yields, awaits.
_CALLING = frozenset(
    {
        "CALL", "PRECALL", "CALL_FUNCTION", "CALL_METHOD", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_KW",
        "CALL_INTRINSIC_1", "CALL_INTRINSIC_2", "IMPORT_NAME", "IMPORT_FROM", "BEFORE_WITH", "SETUP_WITH",
        "BEFORE_ASYNC_WITH", "GET_ITER", "FOR_ITER", "GET_AITER", "GET_ANEXT", "GET_AWAITABLE", "YIELD_VALUE",
        "SEND", "LOAD_BUILD_CLASS",
    }
)  # fmt: skip
_NOT_PLAIN = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def makes_no_calls(fn: Any) -> bool:
    """True for a plain function whose bytecode calls nothing: attribute reads and
    writes, arithmetic, literals, subscripts, comparisons (``return x``, ``self.n += k;
    return self.n``). Such a turn cannot wait for another actor, a lock or I/O, so a host
    may run it on its event loop instead of a worker thread. Conservative: any call, even
    ``len(x)``, makes it False; operators of user classes are the one way around it, and
    hosts time every such turn (a slow one sends its method back to worker threads)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_flags & _NOT_PLAIN:
        return False
    return not any(ins.opname in _CALLING for ins in dis.get_instructions(code))


def _positional(sig: inspect.Signature | None) -> tuple[int, int]:
    """``MethodInfo.positional``: (min, max) positional arguments after ``self`` if every
    parameter is plain positional; any count if the signature is unknown; else none."""
    if sig is None:
        return 0, sys.maxsize
    params = list(sig.parameters.values())[1:]
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind not in plain for p in params):
        return 1, 0
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return required, len(params)


def public_state(instance: Any) -> dict[str, Any]:
    """The persisted part of an instance: its public attributes."""
    attrs = vars(instance)
    if not attrs:  # a stateless actor: no comprehension to run, once per turn
        return {}
    return {k: v for k, v in attrs.items() if not k.startswith("_")}
