"""The linearizability checker (``fluentfn.lab``) against published verdicts, small
histories whose answer is known, and random histories: one made from a real sequential
run is always accepted; one with a read of a value never written never is."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluentfn.lab import (
    MODELS,
    Event,
    HistoryError,
    ModelError,
    Recorder,
    check,
    operations,
    parse_jepsen_log,
    read_jsonl,
    write_jsonl,
)

pytestmark = pytest.mark.timeout(120)
DATA = Path(__file__).parent / "data" / "jepsen"
PUBLISHED = {"etcd_000": False, "etcd_001": False, "etcd_002": True}  # Porcupine's test_data verdicts


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_agrees_with_the_published_verdicts_on_jepsen_etcd_histories(name: str) -> None:
    ops = operations(parse_jepsen_log((DATA / f"{name}.log").read_text()))
    verdict = check(MODELS["cas-register"], ops, budget_s=60)
    assert verdict.valid is PUBLISHED[name], verdict


def _history(*lines: tuple[Any, str, str, Any]) -> list[Event]:
    return [Event(i, i, p, t, f, v) for i, (p, t, f, v) in enumerate(lines)]


def test_the_textbook_register_histories() -> None:
    """A write overlapping two reads: 0 then 100 is fine; 200 then 0 (after the write
    finished being seen) is not."""
    ok = _history(
        (0, "invoke", "write", 100), (1, "invoke", "read", None), (2, "invoke", "read", None),
        (2, "ok", "read", None), (1, "ok", "read", 100), (0, "ok", "write", 100),
    )  # fmt: skip
    assert check(MODELS["register"], operations(ok)).valid is True
    bad = _history(
        (0, "invoke", "write", 200), (1, "invoke", "read", None), (1, "ok", "read", 200),
        (2, "invoke", "read", None), (2, "ok", "read", None), (0, "ok", "write", 200),
    )  # fmt: skip
    verdict = check(MODELS["register"], operations(bad))
    assert verdict.valid is False
    assert verdict.stuck is not None and verdict.stuck.f == "read" and verdict.stuck.output is None


def test_a_failed_op_did_not_happen_and_an_info_op_may_have() -> None:
    failed = _history((0, "invoke", "write", 1), (0, "fail", "write", 1), (1, "invoke", "read", None),
                      (1, "ok", "read", 1))  # fmt: skip
    assert check(MODELS["register"], operations(failed)).valid is False
    maybe = _history((0, "invoke", "write", 1), (0, "info", "write", None), (1, "invoke", "read", None),
                     (1, "ok", "read", 1), (2, "invoke", "read", None), (2, "ok", "read", 1))  # fmt: skip
    assert check(MODELS["register"], operations(maybe)).valid is True
    never = _history((0, "invoke", "write", 1), (1, "invoke", "read", None), (1, "ok", "read", None))
    assert check(MODELS["register"], operations(never)).valid is True  # never completed: may not have happened


def test_cas_register_and_kv_per_key() -> None:
    cas = _history((0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "cas", [1, 2]),
                   (1, "ok", "cas", [1, 2]), (2, "invoke", "cas", [1, 3]), (2, "ok", "cas", [1, 3]))  # fmt: skip
    assert check(MODELS["cas-register"], operations(cas)).valid is False  # both cannot have found 1
    kv = _history(
        (0, "invoke", "append", ["a", "x"]), (0, "ok", "append", ["a", "x"]),
        (1, "invoke", "append", ["b", "y"]), (1, "ok", "append", ["b", "y"]),
        (0, "invoke", "append", ["a", "z"]), (0, "ok", "append", ["a", "z"]),
        (1, "invoke", "read", ["a", None]), (1, "ok", "read", ["a", "xz"]),
        (2, "invoke", "read", ["b", None]), (2, "ok", "read", ["b", "y"]),
    )  # fmt: skip
    assert check(MODELS["kv"], operations(kv)).valid is True
    stale = [*kv, Event(10, 10, 3, "invoke", "read", ["a", None]), Event(11, 11, 3, "ok", "read", ["a", "x"])]
    verdict = check(MODELS["kv"], operations(stale))
    assert verdict.valid is False and verdict.key == "a"


def test_a_search_past_its_budget_says_unknown_never_a_guess() -> None:
    ops = operations(parse_jepsen_log((DATA / "etcd_002.log").read_text()))
    assert check(MODELS["cas-register"], ops, budget_s=0.0).valid == "unknown"


@st.composite
def _sequential_run(draw: st.DrawFn) -> list[Event]:
    """Ops of a few processes applied one at a time to a real register, each invoked some
    time before and completed some time after the instant it took effect."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.integers(1, 14))
    value: Any = None
    stamped: list[tuple[float, int, str, str, Any]] = []
    busy_until: dict[int, float] = {}
    t = 0.0
    for _ in range(n):
        t += rng.uniform(0.1, 1.0)
        free = [p for p in range(4) if busy_until.get(p, -1.0) < t - 0.05]
        if not free:
            continue
        p = rng.choice(free)
        f = rng.choice(["read", "write", "cas"])
        start = t - rng.uniform(0.0, 0.05 if busy_until.get(p) is None else min(0.05, t - busy_until[p]))
        end = t + rng.uniform(0.0, 2.0)
        busy_until[p] = end
        if f == "read":
            stamped += [(start, p, "invoke", "read", None), (end, p, "ok", "read", value)]
        elif f == "write":
            v = rng.randint(0, 3)
            value = v
            stamped += [(start, p, "invoke", "write", v), (end, p, "ok", "write", v)]
        else:
            old, new = rng.randint(0, 3), rng.randint(0, 3)
            if value == old:
                value = new
                stamped += [(start, p, "invoke", "cas", [old, new]), (end, p, "ok", "cas", [old, new])]
            else:
                stamped += [(start, p, "invoke", "cas", [old, new]), (end, p, "fail", "cas", [old, new])]
    stamped.sort(key=lambda e: e[0])
    return [Event(i, i, p, ty, f, v) for i, (_, p, ty, f, v) in enumerate(stamped)]


@settings(max_examples=150, deadline=None)
@given(_sequential_run())
def test_a_history_of_a_real_register_is_always_linearizable(events: list[Event]) -> None:
    assert check(MODELS["cas-register"], operations(events), budget_s=30).valid is True


@settings(max_examples=100, deadline=None)
@given(_sequential_run(), st.integers(0, 1000))
def test_a_read_of_a_value_never_written_is_never_linearizable(events: list[Event], where: int) -> None:
    reads = [i for i, e in enumerate(events) if e.type == "ok" and e.f == "read"]
    if not reads:
        return
    i = reads[where % len(reads)]
    e = events[i]
    events[i] = Event(e.index, e.time, e.process, e.type, e.f, 99)  # no write ever wrote 99
    assert check(MODELS["cas-register"], operations(events), budget_s=30).valid is False


def test_recorder_and_jsonl_round_trip(tmp_path: Path) -> None:
    rec = Recorder()
    rec.invoke(0, "write", 1)
    rec.invoke(1, "read")
    rec.ok(0, 1)
    rec.info(1)
    with pytest.raises(HistoryError):
        rec.ok(1, 5)  # nothing open
    rec.invoke(0, "cas", [1, 2])
    with pytest.raises(HistoryError):
        rec.invoke(0, "read")  # one open op per process
    path = tmp_path / "h.jsonl"
    rec.write(path)
    back = read_jsonl(path)
    assert [(e.process, e.type, e.f, e.value) for e in back] == [
        (0, "invoke", "write", 1), (1, "invoke", "read", None), (0, "ok", "write", 1), (1, "info", "read", None),
        (0, "invoke", "cas", [1, 2]),
    ]  # fmt: skip
    assert [e.time for e in back] == sorted(e.time for e in back)
    write_jsonl(back, tmp_path / "again.jsonl")
    assert read_jsonl(tmp_path / "again.jsonl") == back


@pytest.mark.parametrize(
    "line",
    ['{"garbage', '{"process": 0}', '{"process": 0, "type": "begin", "f": "read"}', "[1, 2, 3]"],
)
def test_garbage_histories_are_refused_with_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "read"}\n' + line + "\n")
    with pytest.raises(HistoryError, match=r"bad\.jsonl:2"):
        read_jsonl(path)


def test_ops_a_model_does_not_know_are_refused() -> None:
    with pytest.raises(ModelError, match="no operation 'incr'"):
        check(MODELS["register"], operations(_history((0, "invoke", "incr", 1), (0, "ok", "incr", 1))))
    with pytest.raises(ModelError, match=r"\[key, arg\]"):
        check(MODELS["kv"], operations(_history((0, "invoke", "write", 5), (0, "ok", "write", 5))))
    with pytest.raises(HistoryError, match="no invocation"):
        operations(_history((0, "ok", "read", 1)))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluentfn.cli", "lab", "check", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_check_command_prints_json_and_exits_by_verdict(tmp_path: Path) -> None:
    good = _cli("--model", "cas-register", str(DATA / "etcd_002.log"))
    assert good.returncode == 0 and json.loads(good.stdout)["valid"] is True
    plot = tmp_path / "cx.png"
    bad = _cli("--model", "cas-register", str(DATA / "etcd_000.log"), "--plot", str(plot))
    result = json.loads(bad.stdout)
    assert bad.returncode == 1 and result["valid"] is False
    assert result["counterexample"]["cannot_complete"]["op"] == "read() -> 2"
    assert plot.stat().st_size > 1000
    unknown = _cli("--model", "cas-register", str(DATA / "etcd_002.log"), "--budget", "0")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["valid"] == "unknown"
    garbage = tmp_path / "g.jsonl"
    garbage.write_text("not json\n")
    refused = _cli("--model", "kv", str(garbage))
    assert refused.returncode == 3 and "g.jsonl:1" in refused.stderr and not refused.stdout
    assert refused.stderr.count(str(garbage)) == 1  # the file named once, with its line
    missing = _cli("--model", "kv", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 3 and "No such file" in missing.stderr and missing.stderr.count("none.jsonl") == 1
    assert _cli("--model", "nope", str(garbage)).returncode == 3


# -- the workload checkers ----------------------------------------------------------------------


def test_set_checker_finds_lost_and_unexpected_values_and_counts_recovered_ones() -> None:
    from fluentfn.lab import CHECKERS

    history = _history(
        (0, "invoke", "add", 1), (0, "ok", "add", 1), (1, "invoke", "add", 2), (1, "info", "add", 2),
        (0, "invoke", "add", 3), (0, "ok", "add", 3), (2, "invoke", "read", None), (2, "ok", "read", [1, 2, 3]),
    )  # fmt: skip
    good = CHECKERS["set"](history)
    assert good["valid"] is True and good["recovered"] == 1
    lost = [*history[:-1], Event(8, 8, 2, "ok", "read", [1, 99])]
    bad = CHECKERS["set"](lost)
    assert bad["valid"] is False and bad["lost"] == {"None": [3]} and bad["unexpected"] == [99]
    assert CHECKERS["set"](history[:6])["valid"] == "unknown"  # no read: nothing to judge by


def test_broadcast_checker_wants_every_node_to_have_every_acknowledged_message() -> None:
    from fluentfn.lab import CHECKERS

    history = _history(
        ("n1", "invoke", "broadcast", 7), ("n1", "ok", "broadcast", 7),
        ("n1", "invoke", "read", None), ("n1", "ok", "read", [7]),
        ("n2", "invoke", "read", None), ("n2", "ok", "read", []),
    )  # fmt: skip
    result = CHECKERS["broadcast"](history)
    assert result["valid"] is False and result["lost"] == {"n2": [7]}


def test_g_counter_final_read_is_bounded_by_acknowledged_and_unknown_adds() -> None:
    from fluentfn.lab import CHECKERS

    def run(final: int) -> dict[str, Any]:
        return CHECKERS["g-counter"](_history(
            (0, "invoke", "add", 2), (0, "ok", "add", 2), (1, "invoke", "add", 5), (1, "info", "add", 5),
            (2, "invoke", "add", 9), (2, "fail", "add", 9), (3, "invoke", "read", None), (3, "ok", "read", final),
        ))  # fmt: skip

    assert run(2)["valid"] is True and run(7)["valid"] is True
    assert run(1)["valid"] is False and run(8)["valid"] is False  # lost an add / counted a failed one


def test_unique_ids_checker_finds_a_repeated_id() -> None:
    from fluentfn.lab import CHECKERS

    ids = [(p, t, "generate", v) for p, v in [(0, "a"), (1, "b"), (0, "a")] for t in ("invoke", "ok")]
    result = CHECKERS["unique-ids"](_history(*[(p, t, f, None if t == "invoke" else v) for p, t, f, v in ids]))
    assert result["valid"] is False and result["duplicated"] == ["'a'"] and result["generated"] == 3


def test_the_check_command_runs_the_workload_checkers(tmp_path: Path) -> None:
    path = tmp_path / "counter.jsonl"
    write_jsonl(_history((0, "invoke", "add", 2), (0, "ok", "add", 2), (1, "invoke", "read", None),
                         (1, "ok", "read", 3)), path)  # fmt: skip
    done = _cli("--model", "g-counter", str(path))
    assert done.returncode == 1 and json.loads(done.stdout)["upper_bound"] == 2
    write_jsonl(_history((1, "invoke", "read", None), (1, "ok", "read", "many")), path)
    assert _cli("--model", "g-counter", str(path)).returncode == 3  # a read that is no count


def _sent(p: int, key: str, msg: int, offset: int) -> list[tuple[Any, str, str, Any]]:
    return [(p, "invoke", "send", [key, msg]), (p, "ok", "send", [key, msg, offset])]


def _polled(p: Any, key: str, start: int, got: list[list[int]]) -> list[tuple[Any, str, str, Any]]:
    return [(p, "invoke", "poll", [key, start]), (p, "ok", "poll", [key, got])]


def test_kafka_checker_finds_reused_offsets_lost_sends_phantoms_and_disorder() -> None:
    from fluentfn.lab import CHECKERS

    check = CHECKERS["kafka"]
    sends = [*_sent(0, "a", 10, 0), *_sent(1, "a", 11, 1), *_sent(0, "b", 20, 0)]
    good = check(_history(*sends, *_polled(2, "a", 0, [[0, 10], [1, 11]]), *_polled("final:b", "b", 0, [[0, 20]])))
    assert good["valid"] is True and good["sends_acknowledged"] == 3
    reused = check(_history(*sends, *_sent(1, "a", 12, 1)))  # two messages acknowledged at a/1
    assert reused["valid"] is False and reused["inconsistent_offsets"] == [["a", 1, [11, 12]]]
    lost = check(_history(*sends, *_polled(2, "a", 0, [[0, 10], [2, 99]])))  # 11 acked at 1, missing; 99 never sent
    assert lost["valid"] is False and lost["lost"][0]["msg"] == 11 and lost["phantom"] == [["a", 2, 99]]
    assert check(_history(*sends, *_polled(2, "b", 0, [])))["valid"] is True  # an empty poll spans no offsets ...
    final_lost = check(_history(*sends, *_polled("final:b", "b", 0, [])))
    assert final_lost["valid"] is False and final_lost["lost"][0]["msg"] == 20  # ... a final poll spans them all
    final_short = check(_history(*sends, *_sent(3, "b", 21, 1), *_polled("final:b", "b", 0, [[0, 20]])))
    assert final_short["valid"] is False and final_short["lost"][0]["msg"] == 21
    disorder = check(_history(*sends, *_polled(2, "a", 0, [[1, 11], [0, 10]])))
    assert disorder["valid"] is False and disorder["nonmonotonic_polls"]
    twice = check(_history(*sends, *_polled(2, "a", 0, [[0, 10], [1, 11], [2, 10]])))
    assert twice["valid"] is False and twice["duplicated"] == [["a", 10, [0, 2]]]
    regress = check(_history((0, "invoke", "list", ["a", None]), (0, "ok", "list", ["a", 5]),
                             (0, "invoke", "list", ["a", None]), (0, "ok", "list", ["a", 3])))  # fmt: skip
    assert regress["valid"] is False and regress["committed_regressed"] == [{"key": "a", "read": 5, "then": 3}]


def _txn(p: int, ops: list[list[Any]], result: str = "ok", out: list[list[Any]] | None = None) -> list[Any]:
    return [(p, "invoke", "txn", ops), (p, result, "txn", out if out is not None else ops)]


def test_read_committed_checker_finds_g1a_g1b_g0_and_g1c() -> None:
    from fluentfn.lab import CHECKERS

    check = CHECKERS["read-committed"]
    r = ["r", "x", None]
    good = check(_history(*_txn(0, [["w", "x", 1]]), *_txn(1, [r], out=[["r", "x", 1]])))
    assert good["valid"] is True and good["txns"] == 2
    g1a = check(_history(*_txn(0, [["w", "x", 1]], "fail"), *_txn(1, [r], out=[["r", "x", 1]])))
    assert g1a["valid"] is False and g1a["G1a"] == [{"reader": 0, "key": "x", "value": 1}]
    g1b = check(_history(*_txn(0, [["w", "x", 1], ["w", "x", 2]]), *_txn(1, [r], out=[["r", "x", 1]])))
    assert g1b["valid"] is False and g1b["G1b"][0]["value"] == 1
    own = check(_history(*_txn(0, [["w", "x", 1], ["r", "x", None], ["w", "x", 2]],
                               out=[["w", "x", 1], ["r", "x", 1], ["w", "x", 2]])))  # fmt: skip
    assert own["valid"] is True  # a transaction may read its own intermediate write
    # T0 wrote x=1, y=1; T1 read y=1 then wrote y=2, and wrote x=2 that T0 read before writing x: ww both ways
    g0 = check(_history(
        *_txn(0, [["r", "x", None], ["w", "x", 1], ["w", "y", 1]], out=[["r", "x", 2], ["w", "x", 1], ["w", "y", 1]]),
        *_txn(1, [["r", "y", None], ["w", "y", 2], ["w", "x", 2]], out=[["r", "y", 1], ["w", "y", 2], ["w", "x", 2]]),
    ))  # fmt: skip
    assert g0["valid"] is False and g0["G0"] and g0["G1c"]
    g1c = check(_history(*_txn(0, [["w", "x", 1], ["r", "y", None]], out=[["w", "x", 1], ["r", "y", 2]]),
                         *_txn(1, [["w", "y", 2], ["r", "x", None]], out=[["w", "y", 2], ["r", "x", 1]])))  # fmt: skip
    assert g1c["valid"] is False and not g1c["G0"] and sorted(g1c["G1c"]) == [0, 0, 1]
    with pytest.raises(HistoryError):
        check(_history(*_txn(0, [["x", "k", 1]])))


def test_a_runs_plots_shade_the_nemesis_and_the_diagram_command_draws_them(tmp_path: Path) -> None:
    events = _history((0, "invoke", "read", None), (0, "ok", "read", 1), (1, "invoke", "write", 2),
                      (1, "info", "write", None), (2, "invoke", "cas", [1, 2]), (2, "fail", "cas", [1, 2]))  # fmt: skip
    events = [Event(e.index, e.index * 400_000_000, e.process, e.type, e.f, e.value) for e in events]
    write_jsonl(events, tmp_path / "history.jsonl")
    nemesis = [{"kind": "partition", "start_s": 0.5, "end_s": 1.5}, {"kind": "kill", "start_s": 1.6}]
    (tmp_path / "results.json").write_text(json.dumps({"nemesis": nemesis}))
    message = {"kind": "call", "from": "client", "to": "A/a", "method": "m", "request_id": "r1", "time": 1}
    (tmp_path / "messages.jsonl").write_text(json.dumps({**message, "fault": None}) + "\n")
    done = subprocess.run([sys.executable, "-m", "fluentfn.cli", "lab", "diagram", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for png in ("latency-raw.png", "rate.png", "diagram.png"):
        assert (tmp_path / png).stat().st_size > 5000 and png in done.stdout
    (tmp_path / "history.jsonl").write_text("not json\n")
    bad = subprocess.run([sys.executable, "-m", "fluentfn.cli", "lab", "diagram", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 3 and "history.jsonl:1" in bad.stderr
    (tmp_path / "history.jsonl").unlink()
    (tmp_path / "messages.jsonl").write_text(json.dumps({"kind": "call", "time": 1}) + "\n")
    lacking = subprocess.run([sys.executable, "-m", "fluentfn.cli", "lab", "diagram", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert lacking.returncode == 3 and "message 1 lacks from, to, request_id" in lacking.stderr
