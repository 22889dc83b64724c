"""The lab: histories of client operations, checkers that judge them, and (to come)
faults between identities and message traces. See the README's "Experiments"."""

from ._history import Event, HistoryError, Operation, Recorder, operations, read_jsonl, write_jsonl
from ._jepsenlog import parse_jepsen_log
from ._linear import Verdict, check
from ._models import MODELS, Model, ModelError

__all__ = [
    "MODELS",
    "Event",
    "HistoryError",
    "Model",
    "ModelError",
    "Operation",
    "Recorder",
    "Verdict",
    "check",
    "operations",
    "parse_jepsen_log",
    "read_jsonl",
    "write_jsonl",
]
