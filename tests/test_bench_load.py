"""``--load N``: benchmarks measure on a busy machine too, and say what they ran on."""

from __future__ import annotations

import pytest

from fluentfn.bench import _report
from fluentfn.bench._load import background_load, machine_ms

pytestmark = pytest.mark.timeout(60)


def test_background_load_runs_busy_processes_only_while_measuring() -> None:
    with background_load(2) as busy:
        assert len(busy) == 2 and all(p.poll() is None for p in busy)
    assert all(p.poll() is not None for p in busy)
    with pytest.raises(ValueError), background_load(-1):
        pass
    assert machine_ms() > 0


@pytest.mark.filterwarnings("ignore:Tight layout")
def test_the_shared_command_line_takes_load_and_prints_the_machine(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(quick: bool) -> tuple[list[dict[str, object]], list[str]]:
        return [{"system": "x", "p50_us": 1.0}], ["a note"]

    with pytest.raises(SystemExit):
        _report.cli("probe", None, run, "p50_us", ["--load", "-1"])
    assert _report.cli("probe", None, run, "p50_us", ["--quick", "--load", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sum(range(10**6))" in out and "--load 1" in out


def test_the_messaging_floor_is_a_real_grpc_stream_echo() -> None:
    from fluentfn.bench._peers import GrpcStreamEcho

    echo = GrpcStreamEcho()
    try:
        assert echo.pingpong(b"x" * 1024, 50) > 0  # it checks the echoed bytes itself
    finally:
        echo.close()


def test_the_gateway_floor_relays_through_a_real_grpc_relay() -> None:
    from fluentfn.bench._peers import GrpcRelay

    relay = GrpcRelay()
    try:
        for how in ("direct", "relayed"):  # the warm-up checks the echoed bytes
            trips = relay.round_trips(how, b"y" * 100, 20)
            assert len(trips) == 20 and min(trips) > 0
    finally:
        relay.close()


def test_the_sqlite_floor_commits_what_a_turn_commits() -> None:
    import sqlite3

    from fluentfn.bench._peers import SqliteCommit

    floor = SqliteCommit()
    path = floor._dir.name + "/floor.db"
    for _ in range(3):
        floor.commit(b"state", b"reply")
    with sqlite3.connect(path) as other:  # committed: another connection sees the rows
        assert other.execute("SELECT version, state FROM state").fetchall() == [(3, b"state")]
        assert other.execute("SELECT count(*) FROM replies").fetchone() == (3,)
    floor.close()
