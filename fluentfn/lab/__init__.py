"""The lab: faults between identities (a seeded nemesis), histories of client operations
and checkers that judge them. See the README's "Experiments"."""

from ._api import (
    clear_faults,
    delay,
    duplicate,
    faults,
    heal,
    kill,
    loss,
    own_hosts,
    partition,
    pause,
    record,
    resume,
    seed_faults,
    stop_recording,
)
from ._checkers import CHECKERS
from ._diagram import draw
from ._faults import Faults
from ._history import Event, HistoryError, Operation, Recorder, operations, read_jsonl, write_jsonl
from ._jepsenlog import parse_jepsen_log
from ._linear import Verdict, check
from ._models import MODELS, Model, ModelError
from ._nemesis import gather as messages

__all__ = [
    "CHECKERS",
    "MODELS",
    "Event",
    "Faults",
    "HistoryError",
    "Model",
    "ModelError",
    "Operation",
    "Recorder",
    "Verdict",
    "check",
    "clear_faults",
    "delay",
    "draw",
    "duplicate",
    "faults",
    "heal",
    "kill",
    "loss",
    "messages",
    "operations",
    "own_hosts",
    "parse_jepsen_log",
    "partition",
    "pause",
    "read_jsonl",
    "record",
    "resume",
    "seed_faults",
    "stop_recording",
    "write_jsonl",
]
