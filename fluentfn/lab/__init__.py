"""The lab: faults between identities (a seeded nemesis), histories of client operations
and checkers that judge them. See the README's "Experiments"."""

from ._api import clear_faults, delay, duplicate, faults, heal, loss, partition, seed_faults
from ._faults import Faults
from ._history import Event, HistoryError, Operation, Recorder, operations, read_jsonl, write_jsonl
from ._jepsenlog import parse_jepsen_log
from ._linear import Verdict, check
from ._models import MODELS, Model, ModelError

__all__ = [
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
    "duplicate",
    "faults",
    "heal",
    "loss",
    "operations",
    "parse_jepsen_log",
    "partition",
    "read_jsonl",
    "seed_faults",
    "write_jsonl",
]
