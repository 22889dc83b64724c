"""``fluentfn bench cost``: per-operation counts that do not depend on the machine."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest

from fluentfn.bench import cost

pytestmark = pytest.mark.timeout(300)


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def test_the_opcode_count_sees_threads_started_after_it_and_only_while_on() -> None:
    counter = cost.OpcodeCount()
    before_main, before_threads = sys.gettrace(), threading.gettrace()  # a coverage run's tracer, say
    counter.install()
    try:

        def counted(n: int) -> int:
            counter.on = True
            worker = threading.Thread(target=_spin, args=(n,))
            worker.start()
            worker.join()
            counter.on = False
            before = counter.total()
            _spin(n)  # off: not counted
            assert counter.total() == before
            return before

        a = counted(1_000)
        b = counted(3_000) - a
    finally:
        counter.uninstall()
    assert (sys.gettrace(), threading.gettrace()) == (before_main, before_threads)  # put back
    # Each loop turn is a handful of opcodes, in the worker thread: 2,000 more turns.
    assert 2_000 * 4 <= b - a <= 2_000 * 20, (a, b)


def test_a_co_located_call_has_the_same_count_at_any_size_and_no_hand_off() -> None:
    small = cost._in_process("colocated", 64, traced=True)["opcodes_per_op"]
    large = cost._in_process("colocated", 192, traced=True)["opcodes_per_op"]
    assert small is not None and large is not None
    assert 300 < small < 20_000
    assert abs(small - large) <= 0.01 * small, (small, large)  # whole sampling periods, warmed past EXACT
    timed = cost._in_process("colocated", 64, traced=False)
    if timed["handoffs_per_op"] is not None:  # Linux: counted from /proc
        assert timed["handoffs_per_op"] < 0.5  # runs in the calling thread


def test_a_driver_call_crosses_threads_and_costs_more_than_the_raw_stream() -> None:
    driver = cost._in_process("driver", 48, traced=True)["opcodes_per_op"]
    floor = cost._in_process("grpc-aio-stream", 48, traced=True)["opcodes_per_op"]
    assert driver is not None and floor is not None and driver > floor > 100
    timed = cost._in_process("driver", 48, traced=False)
    if timed["handoffs_per_op"] is not None:
        assert timed["handoffs_per_op"] >= 1.0  # the calling thread waits for the loop's answer


def test_a_call_to_an_actor_on_another_host_crosses_the_network() -> None:
    remote = cost._in_process("remote", 48, traced=True)["opcodes_per_op"]
    coloc = cost._in_process("colocated", 48, traced=True)["opcodes_per_op"]
    assert remote is not None and coloc is not None and remote > coloc  # the same call, plus its gRPC legs
    timed = cost._in_process("remote", 48, traced=False)
    if timed["handoffs_per_op"] is not None:
        assert timed["handoffs_per_op"] >= 1.0  # the turn's thread waits for the loop (a co-located call: 0)


def test_a_call_through_the_gateway_crosses_two_hops() -> None:
    through = cost._in_process("gateway", 48, traced=False)
    assert through["us_per_op"] is not None and through["us_per_op"] > 0
    if through["handoffs_per_op"] is not None:
        assert through["handoffs_per_op"] >= 2.0  # the client's thread, then the gateway's hop to the host
    # The gateway's hop is Python work of its own: more than the straight call's, on any machine.
    gateway = cost._in_process("gateway", 48, traced=True)["opcodes_per_op"]
    driver = cost._in_process("driver", 48, traced=True)["opcodes_per_op"]
    assert gateway is not None and driver is not None and gateway > 1.1 * driver > 1_000


def test_a_stall_in_the_shorter_run_does_not_make_a_time_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    """The untraced figures are taken between each size's least of several rounds: one
    stall (a busy machine) in the first N run no longer makes N's time exceed 3N's."""
    runs: list[int] = []
    stalled = [False]

    def probe_ops(name: str) -> Callable[[int], None]:
        def op(n: int) -> None:
            runs.append(n)
            if len(runs) == 2:  # the first timed run (of N, after the warm-up) stalls for a while
                stalled[0] = True
                time.sleep(0.2)
            for _ in range(n):
                time.sleep(0.0001)

        return op

    monkeypatch.setattr(cost, "_probe", probe_ops)
    monkeypatch.setattr(cost, "_no_housekeeping", lambda: None)
    timed = cost.probe("stalls", 64, traced=False)
    assert stalled[0]
    assert timed["us_per_op"] is not None and timed["us_per_op"] > 50  # each op sleeps 100 us


def test_a_bulk_item_costs_more_than_the_python_floor_and_both_are_counted() -> None:
    item = cost._in_process("activation", 64, traced=True)["opcodes_per_op"]
    floor = cost._in_process("python-activation", 640, traced=True)["opcodes_per_op"]
    assert floor is not None and 10 < floor < 100  # the loop body: a few dozen opcodes
    assert item is not None and item > 10 * floor


def test_an_unknown_probe_is_refused() -> None:
    with pytest.raises(RuntimeError, match="cost probe nothing failed"):
        cost._in_process("nothing", 16, traced=False)


@pytest.mark.skipif(sys.version_info[:2] != cost.BUDGET_PYTHON, reason="the budgets are counted on one Python version")
@pytest.mark.parametrize("name", sorted(cost.BUDGET))
def test_the_hot_paths_stay_within_their_opcode_budgets(name: str) -> None:
    spent = cost._in_process(name, 64, traced=True)["opcodes_per_op"]
    assert spent is not None and spent <= cost.BUDGET[name], (
        f"{name} costs {spent} opcodes an operation, over its budget of {cost.BUDGET[name]}: "
        "find what the change added (`python -m fluentfn.bench.cost --probe NAME --count 64 --traced`), "
        "or raise the budget in fluentfn/bench/cost.py and say why"
    )


def test_the_opcode_count_grows_with_the_work_counted() -> None:
    """Each Python version's way of counting (a trace function's opcode events before 3.12,
    ``sys.monitoring`` after) sees a loop's instructions: three times the iterations, about
    three times the count, and nothing counted while off."""
    counter = cost.OpcodeCount()
    counter.install()
    try:
        counts = []
        for n in (100, 300):
            before = counter.total()
            counter.on = True
            _spin(n)
            counter.on = False
            counts.append(counter.total() - before)
        idle = counter.total()
        _spin(100)
        assert counter.total() == idle
    finally:
        counter.uninstall()
    per_iteration = (counts[1] - counts[0]) / 200
    assert 2 <= per_iteration <= 20, counts  # a handful of instructions an iteration
