"""The caller-side router, without I/O: where a call goes, and what to do with its answer.

Every caller (a driver, an actor's host, a task, the gateway, ``ff.Client`` and
``ff.AsyncClient``) keeps one ``RouteTable`` and runs each call as an ``Attempt``: a small
state machine fed what happened (a route was found, an answer came, a pause ended) and
returning what to do next (``Send``, ``Resolve``, ``Forget``, ``Wait``, ``Finish``,
``Fail``). The I/O side (``runtime/_caller.py``) only carries those actions out, so the
rules below are tested without Ray or sockets (``tests/test_router.py``):

- A reply settles the call unless it is a redirect (the host does not own the partition:
  the call did not run there) or a tell refused for now (a full mailbox: it did not run).
- A call with no answer (the stream broke, the host died) may have run: every later send
  is marked as a possible repeat, so the next host answers from its records. One that
  no host took (nothing listens at the endpoint: ``UNREACHED``) is sent again the same way.
- A call whose host went away while the call was on it is sent marked with how often
  (``lost_attempt``): hosts count the turns of such calls that never ended and refuse one
  after ``MAX_LOST`` (the call itself may be what ends the host, a poison message, and
  every re-send would take the host's other identities down with it). A caller stops on
  its own after ``LOST_BACKSTOP`` such sends.
- An endpoint that is not a host of this cluster (a port reused by another server, which
  answers ``UNIMPLEMENTED`` or refuses our token) did not run it: forget the route.
- At most ``1 + retries`` sends that find no host; a partition still moving (redirects)
  is waited out, with pauses, up to the deadline; nothing is sent after the deadline; the
  same request id throughout.
- A caller with fallbacks (a client's gateways) sends there once its direct route fails;
  a gateway's answer is final, but one that cannot be reached is waited for (it is
  restarted) or the next one tried, up to the deadline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import CallTimeout, FluentError, Unavailable
from .placement import shard_for

Slot = tuple[str, int]
"""(co-location group, partition): what a route is cached by."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a call: a host's endpoint, this process's own partition, or a gateway."""

    endpoint: str
    local: bool = False
    fallback: bool = False


class RouteTable:
    """The one route cache of a process: type -> (group, partitions), slot -> target."""

    __slots__ = ("routes", "types")

    def __init__(self) -> None:
        self.types: dict[str, tuple[str, int]] = {}
        self.routes: dict[Slot, Target] = {}

    def learn_type(self, type_name: str, group: str, partitions: int) -> None:
        self.types[type_name] = (group, partitions)

    def slot(self, type_name: str, key: str) -> Slot | None:
        """Where ``type_name``/``key`` lives, or None while the type is unknown here."""
        known = self.types.get(type_name)
        return None if known is None else (known[0], shard_for(key, known[1]))

    def learn(self, slot: Slot, target: Target) -> None:
        self.routes[slot] = target

    def get(self, slot: Slot | None) -> Target | None:
        return None if slot is None else self.routes.get(slot)

    def forget(self, slot: Slot | None, target: Target) -> bool:
        """Drop ``slot``'s route if it is still ``target``; True if this call dropped it
        (so it alone reports the host down)."""
        if slot is None or self.routes.get(slot) != target:
            return False
        del self.routes[slot]
        return True

    def forget_group(self, group: str) -> None:
        for slot in [s for s in self.routes if s[0] == group]:
            del self.routes[slot]

    def replace(self, types: dict[str, tuple[str, int]], routes: dict[Slot, Target]) -> None:
        """Everything at once (a client's fresh read of the placement)."""
        self.types, self.routes = types, routes


class Verdict(enum.Enum):
    """What an answer means for the call (the I/O side classifies; see ``classify``)."""

    SETTLED = "settled"  # a reply that ends the call: a value or an error of the call itself
    REDIRECTED = "redirected"  # the host does not own the partition: not run there
    REFUSED = "refused"  # a tell refused for now (full mailbox): not run
    LOST = "lost"  # no answer (stream broke, host gone): it may have run
    UNREACHED = "unreached"  # no host took it (nothing listens; not up yet): as LOST, but not its host's death
    FOREIGN = "foreign"  # the endpoint is not a host of this cluster: not run
    BROKEN = "broken"  # a transport error that retrying cannot fix: final


@dataclass(frozen=True, slots=True)
class Send:
    target: Target
    maybe_ran: bool  # mark the call as a possible repeat (the host checks its records)
    lost: int = 0  # hosts that went away while the call was on them, so far (``lost_attempt``)


@dataclass(frozen=True, slots=True)
class Resolve:
    """Find the route (the cache first, then the locator)."""


@dataclass(frozen=True, slots=True)
class Forget:
    target: Target
    report: bool  # tell the locator the host looks gone (only routes from it)


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class Finish:
    """Hand the last reply to the caller."""


@dataclass(frozen=True, slots=True)
class Fail:
    error: FluentError


Action = Send | Resolve | Forget | Wait | Finish | Fail

_RESOLVE = Resolve()
_FINISH = Finish()
BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0
PAUSE_PAST_S = 0.001  # a pause ends this far past the deadline at most (the wake-up then sees it passed)
MAX_LOST = 3
"""Host deaths one call may take part in. One host death during a call is a crash the call
survives (its re-send is answered from the records if it ran); a host that went away three
times with the same call's turn under way is most likely killed by that call (``os._exit``,
a segfault in native code, memory), and running it again would crash-loop the host, and
every identity on it. Hosts count the turns under way of calls re-sent after a loss
(``lost_attempt``) in the store and refuse the call after ``MAX_LOST`` (``host/_underway``):
only the turn that was running is counted, not the calls that merely waited beside it."""

LOST_BACKSTOP = 2 * MAX_LOST
"""Sends of one call to hosts that went away with it after which a caller stops on its own
(a host without a store counts nothing): twice ``MAX_LOST``, so that a call that waited
beside a poison message, lost with each of the host deaths that message causes, is still
sent once the host refuses the culprit."""


def lost_attempt(lost: int) -> int:
    """The ``attempt`` a possible repeat is sent with once ``lost`` hosts went away while it
    was on them: ``1 + lost`` (``went_away``: an attempt of 2 or more tells the host to count
    the turn, which a plain possible repeat, 1, does not: a redirect or a stream nobody took
    costs no store write)."""
    return 1 + lost


def went_away(attempt: int) -> bool:
    """Whether a call sent with ``attempt`` was on a host that went away (``lost_attempt``):
    the host counts its turn as under way."""
    return attempt > 1


class Attempt:
    """One call's way to an answer. ``deadline`` and ``now`` are on the same (monotonic)
    clock; every method returns the actions to carry out, in order.

    ``fallbacks``: a client's gateways, tried in turn once a direct route fails (or at
    once, ``direct=False``); a gateway that cannot be reached is waited for, up to the
    deadline (it is restarted), any other answer of a gateway is final.
    """

    __slots__ = ("_direct", "_fallbacks", "_last", "_target", "_turn", "deadline", "failures", "hosts", "lost",
                 "maybe_ran", "name", "redirects", "retries", "sends")  # fmt: skip

    def __init__(
        self,
        *,
        name: str,
        deadline: float,
        retries: int,
        maybe_ran: bool = False,
        fallbacks: tuple[Target, ...] = (),
        direct: bool = True,
    ) -> None:
        self.name = name  # "Type/key.method", for error messages
        self.deadline = deadline
        self.retries = retries
        self.maybe_ran = maybe_ran
        self._fallbacks = fallbacks
        self._direct = direct or not fallbacks
        self._target: Target | None = None
        self._last: FluentError | None = None
        self._turn = 0  # which fallback is next
        self.sends = 0
        self.hosts = 0  # sends to hosts (not fallbacks)
        self.failures = 0  # hosts that did not answer or were not hosts: at most 1 + retries
        self.lost = 0  # hosts that went away while the call was on them: at most LOST_BACKSTOP
        self.redirects = 0  # partitions that were moving: waited out up to the deadline

    @property
    def target(self) -> Target | None:
        """Where the last send went."""
        return self._target

    def begin(self, cached: Target | None) -> list[Action]:
        """The call is made; ``cached`` is its route if the table has one."""
        if not self._direct:
            return [self._send(self._fallback())]
        return [_RESOLVE] if cached is None else [self._send(cached)]

    def routed(self, target: Target | None, now: float) -> list[Action]:
        """The locator answered: ``target``, or None when it knows no route."""
        if self.sends and now >= self.deadline:
            return [Fail(self._expired())]
        if target is None or not self._direct:
            if self._fallbacks:
                return [self._send(self._fallback())]
            return [Fail(self._last or Unavailable(f"no host for {self.name}"))]
        return [self._send(target)]

    def answered(self, verdict: Verdict, error: FluentError | None, now: float) -> list[Action]:
        """The last send's answer: its ``verdict``, and the transport's error if any."""
        target = self._target
        assert target is not None, "answered before anything was sent"
        if verdict is Verdict.SETTLED:
            return [_FINISH]
        if verdict is Verdict.LOST or verdict is Verdict.UNREACHED:
            self.maybe_ran = True  # (conservative for UNREACHED: whether a host took the stream is read from it)
            self.lost += verdict is Verdict.LOST and not target.fallback
        if error is not None:
            self._last = error
        if target.fallback:
            return self._fallback_answered(verdict, error, now)
        if verdict is Verdict.BROKEN:
            return [Fail(error or Unavailable(f"{target.endpoint}: no reply for {self.name}"))]
        if verdict is Verdict.REDIRECTED:
            self.redirects += 1
            self._last = Unavailable(f"{self.name}: its partition was still moving ({self.redirects} redirects)")
        elif verdict is not Verdict.REFUSED:  # LOST, UNREACHED or FOREIGN
            self.failures += 1
            if self.failures > self.retries:
                return [Fail(self._last or Unavailable(f"no host for {self.name}"))]
            if self.lost >= LOST_BACKSTOP:
                return [Fail(self._poison())]
        if verdict is Verdict.REFUSED and self.hosts > self.retries:
            return [_FINISH]  # the host's own "overloaded" reply
        if now >= self.deadline:
            return [_FINISH] if verdict is Verdict.REFUSED else [Fail(self._expired())]
        if verdict is Verdict.REFUSED:  # the route is fine; the mailbox is full
            return [self._pause(self._backoff(self.hosts), now)]
        actions: list[Action] = [Forget(target, report=not self._fallbacks)]
        if self._fallbacks:
            actions.append(self._send(self._fallback()))
        elif verdict is Verdict.REDIRECTED and self.redirects == 1:
            actions.append(_RESOLVE)  # the directory has the new owner (or waits for it)
        elif verdict is Verdict.REDIRECTED:  # a move still settling: a pause, bounded by the deadline
            actions.append(self._pause(self._backoff(self.redirects - 1), now))
        else:
            actions.append(self._pause(self._backoff(self.failures), now))  # a host that died: time to come back
        return actions

    def _fallback_answered(self, verdict: Verdict, error: FluentError | None, now: float) -> list[Action]:
        if verdict in (Verdict.REDIRECTED, Verdict.REFUSED):
            return [_FINISH]  # the gateway's own answer, passed on as it is
        if verdict is not Verdict.LOST and verdict is not Verdict.UNREACHED:
            return [Fail(error or Unavailable(f"{self.name}: refused by the gateway"))]
        if now >= self.deadline:
            return [Fail(self._expired())]
        self._turn += 1  # the next gateway (or this one, restarted), after a pause
        return [self._pause(self._backoff(self.sends - self.hosts), now)]

    def woke(self, now: float) -> list[Action]:
        """A ``Wait`` ended."""
        if now >= self.deadline:
            return [Fail(self._expired())]
        return [_RESOLVE]

    def _fallback(self) -> Target:
        return self._fallbacks[self._turn % len(self._fallbacks)]

    def _send(self, target: Target) -> Send:
        self._target = target
        self.sends += 1
        if not target.fallback:
            self.hosts += 1
        if self.sends > 1:
            self.maybe_ran = True  # conservative: the host checks its records, which is cheap
        return Send(target, self.maybe_ran, self.lost)

    def _pause(self, seconds: float, now: float) -> Wait:
        """A pause that ends by the deadline (and ``PAUSE_PAST_S``): the caller's timeout
        then comes from here, saying what went wrong last, not from its own wait."""
        return Wait(min(seconds, self.deadline - now + PAUSE_PAST_S))

    @staticmethod
    def _backoff(failures: int) -> float:
        return float(min(BACKOFF_S * 2 ** max(0, failures - 1), MAX_BACKOFF_S))

    def _poison(self) -> Unavailable:
        return Unavailable(
            f"{self.name}: its host went away {self.lost} times while the call was on it; not sent again, since "
            f"the call itself may be what ends the host (see the host's log; it may have run; last: {self._last})"
        )

    def _expired(self) -> CallTimeout:
        last = f" (last: {self._last})" if self._last is not None else ""
        return CallTimeout(f"no reply from {self.name} by its deadline{last}")
