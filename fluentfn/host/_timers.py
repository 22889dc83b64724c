"""In-memory timers of a host engine's identities (``ff.context().after``): a tell to the
identity itself after a delay, on the host's loop, with nothing written. A timer fires
only into the activation that set it: one passivated, moved or re-activated since finds
its timer gone."""

from __future__ import annotations

import threading
import time
from typing import Any

from .._call import Call, new_request_id
from .._config import DEFAULT_CALL_TIMEOUT_S
from .._ioloop import spawn
from ..errors import FluentError, InvalidRequest, NotFound
from ..wire import codec
from ._ports import UpkeepPort


class Timers:
    """The ``Timers`` of one engine (``_context.Timers``)."""

    def __init__(self, engine: UpkeepPort) -> None:
        self._engine = engine
        self._tasks: set[Any] = set()
        self.fired = 0

    def arm(self, address: str, delay_s: float, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        e = self._engine
        type_name, key = address.split("/", 1)
        definition = e.types.get(type_name)
        if definition is None:
            raise FluentError(f"{type_name} is not served here")
        if not isinstance(method, str):
            raise InvalidRequest(f"a timer's method is a method name, got {type(method).__name__}")
        try:
            definition.method(method).bind(args, kwargs)
        except NotFound:
            known = definition.method_names
            raise InvalidRequest(f"{type_name} has no public method {method!r} (known: {known})") from None
        payload = codec.encode_args(args, kwargs)
        owner = e.admission.table.get(address)  # the activation that set it

        def fire() -> None:
            if e.persistence.fenced or e.admission.table.get(address) is not owner or owner is None:
                return  # gone with its activation
            self.fired += 1
            call = Call(type_name, key, method, payload, new_request_id(), time.time() + DEFAULT_CALL_TIMEOUT_S,
                        chain_id="", one_way=True, caller=address)  # fmt: skip
            spawn(e.dispatch(call, local=True), self._tasks)

        if threading.get_ident() == e.loop_thread:
            e.loop.call_later(delay_s, fire)
        else:
            e.loop.call_soon_threadsafe(e.loop.call_later, delay_s, fire)
