"""The public surface is exactly what DESIGN.md promises."""

from __future__ import annotations

import fluentfn as ff

CONTRACT = {
    "actor",
    "function",
    "init",
    "shutdown",
    "Cluster",
    "ref",
    "context",
    "stats",
    "Client",
    "ActorRef",
    "Future",
    "FluentError",
    "ActorError",
    "NotFound",
    "InvalidRequest",
    "Unauthenticated",
    "Unavailable",
    "CallTimeout",
    "Overloaded",
    "FunctionTimeout",
}


def test_all_names_exist_and_contract_is_covered() -> None:
    for name in ff.__all__:
        assert hasattr(ff, name), name
    assert set(ff.__all__) >= CONTRACT
    assert len(ff.__all__) == len(set(ff.__all__))


def test_errors_share_a_base() -> None:
    for name in CONTRACT:
        obj = getattr(ff, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ff.FluentError)


def test_decorators_bare_and_with_options() -> None:
    @ff.actor
    class Plain:
        pass

    @ff.actor(name="Named", shards=2, persist="never", num_gpus=0.5)
    class Other:
        pass

    assert Plain.name == "Plain" and Other.name == "Named" and Other.options.shards == 2
    assert Plain["k"].address == "Plain/k" and ff.ref("Named/a/b").key == "a/b"
    assert Plain["k"] == ff.ref("Plain/k") and hash(Plain["k"]) == hash(ff.ref("Plain/k"))

    @ff.function
    def f(x: int) -> int:
        return x

    @ff.function(num_cpus=0.5, max_duration_s=3)
    def g(x: int) -> int:
        return x

    assert f.fn(3) == 3 and g.max_duration_s == 3


def test_bad_options_are_clear() -> None:
    import pytest

    with pytest.raises(ff.FluentError, match="persist"):
        ff.actor(persist="maybe")(type("X", (), {}))
    with pytest.raises(ff.InvalidRequest):
        ff.ref("no-slash")
    with pytest.raises(ff.InvalidRequest):
        ff.ActorRef("T", "")


def test_context_outside_actor() -> None:
    ctx = ff.context()
    assert ctx.address is None
    import pytest

    with pytest.raises(ff.FluentError):
        ctx.schedule(1, "x")
