"""Every option and setting is checked where it is given: one ff.FluentError naming it,
never a raw TypeError or OverflowError, and never NaN accepted (no Ray needed)."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluentfn as ff
from fluentfn import api
from fluentfn._actordef import ActorDef, _positional
from fluentfn._prices import prices
from fluentfn._ref import check_key, check_keys
from fluentfn.api import _bulk_args
from fluentfn.placement import ActorOptions

pytestmark = pytest.mark.timeout(60)


class Plain:
    def get(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("idle_timeout_s", "5"),
        ("idle_timeout_s", math.nan),
        ("idle_timeout_s", 0),
        ("num_cpus", "1"),
        ("num_cpus", math.nan),
        ("num_cpus", math.inf),
        ("num_gpus", math.inf),
        ("num_gpus", math.nan),
        ("num_gpus", "1"),
        ("resources", {"x": math.nan}),
        ("resources", {"x": "1"}),
        ("resources", "x"),
        ("resources", {"": 1}),
        ("name", 123),
        ("reentrant", "no"),
        ("accelerator_type", 7),
        ("persist", "sometimes"),
    ],
)
def test_a_bad_actor_option_is_one_clear_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(ff.FluentError) as info:
        ff.actor(**{option: value})(Plain)
    shown = {"name": "actor type name", "persist": "persist"}.get(option, option)
    assert shown in str(info.value)


def test_an_infinite_idle_timeout_means_never_passivated(monkeypatch: pytest.MonkeyPatch) -> None:
    at = ff.actor(name="NeverIdle", idle_timeout_s=math.inf)(Plain)
    monkeypatch.delitem(api._KNOWN_TYPES, "NeverIdle")  # never shipped to the shared cluster
    assert at.options.idle_timeout_s == math.inf


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, 0, "5"])
def test_a_bad_function_limit_is_refused(value: Any) -> None:
    with pytest.raises(ff.FluentError, match="max_duration_s"):
        ff.function(max_duration_s=value)(lambda: 1)


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-1"])
def test_prices_must_be_finite_numbers(monkeypatch: pytest.MonkeyPatch, price: str) -> None:
    monkeypatch.setenv("FLUENTFN_PRICES", '{"s3_put": ' + price + "}")
    with pytest.raises(ff.FluentError, match="s3_put"):
        prices()


@pytest.mark.parametrize("timeout", [math.nan, -1, 0, 1e10, math.inf, "5", True])
def test_a_client_timeout_is_checked_before_anything_is_sent(timeout: Any) -> None:
    for cls in (ff.Client, ff.AsyncClient):
        with pytest.raises(ff.FluentError, match="timeout"):
            cls("127.0.0.1:1", token="t", timeout_s=timeout)


@pytest.mark.parametrize("token", [None, "", 5])
def test_a_client_needs_a_token(token: Any) -> None:
    for cls in (ff.Client, ff.AsyncClient):
        with pytest.raises(ff.FluentError, match="token"):
            cls("127.0.0.1:1", token=token)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("namespace", "../elsewhere"),
        ("namespace", "a/b"),
        ("namespace", ""),
        ("namespace", ".hidden"),
        ("namespace", "x" * 101),
        ("namespace", 5),
        ("address", 5),
        ("token", 5),
        ("bind", None),
        ("tls", "cert.pem"),
    ],
)
def test_a_bad_init_argument_is_refused_before_ray_starts(
    monkeypatch: pytest.MonkeyPatch, option: str, value: Any
) -> None:
    from fluentfn.runtime import _cluster

    def started(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ff.init went on to start or join Ray")

    monkeypatch.setattr(_cluster, "start_local_ray", started)
    monkeypatch.setattr(_cluster, "join_ray", started)
    with pytest.raises(ff.FluentError, match=option):
        ff.init(**{option: value})


def test_a_namespace_of_letters_digits_and_marks_is_a_folder_of_fluentfn_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from fluentfn import _config

    monkeypatch.setenv("FLUENTFN_HOME", str(tmp_path))
    for name in ("default", "bench-redis", "Team_1.v2", "9"):
        assert _config.home(name) == tmp_path / name
    with pytest.raises(ff.FluentError, match="namespace"):
        _config.home("../up")


def test_an_empty_type_name_is_refused_not_replaced_by_the_class_name() -> None:
    with pytest.raises(ff.FluentError, match="invalid actor type name ''"):
        ff.actor(name="")(Plain)


def test_two_classes_cannot_share_a_type_name() -> None:
    """Calls to the first would run the second's code: a class of another name is refused,
    naming both; a class of the same name (defined again) takes the name over."""

    class First:
        def who(self) -> str:
            return "first"

    class Second:
        def who(self) -> str:
            return "second"

    first = ff.actor(name="OptionsTwin")(First)
    try:
        with pytest.raises(ff.FluentError, match=r"'OptionsTwin' is taken by .*First: give .*Second another name"):
            ff.actor(name="OptionsTwin")(Second)
        assert api.known_type("OptionsTwin") is first

        class First:  # type: ignore[no-redef]  # the same class defined again (a re-run cell) takes the name
            def who(self) -> str:
                return "again"

        again = ff.actor(name="OptionsTwin")(First)
        assert api.known_type("OptionsTwin") is again

        def elsewhere() -> type:
            class First:  # a test's local class of the same name: it takes the name too
                def who(self) -> str:
                    return "local"

            return First

        local = ff.actor(name="OptionsTwin")(elsewhere())
        assert api.known_type("OptionsTwin") is local
    finally:
        api._KNOWN_TYPES.pop("OptionsTwin", None)


@pytest.mark.parametrize("args", [5, "ab", b"ab", {"x": 1}, None])
def test_a_bulk_item_whose_arguments_are_not_a_sequence_is_refused_before_anything_is_sent(args: Any) -> None:
    kind = ff.actor(name="OptionsBulk")(Plain)
    try:
        with pytest.raises(ff.InvalidRequest, match=r"OptionsBulk.bulk: the arguments of key 'a' are a list or tuple"):
            kind.bulk("get", {"a": args})  # (no cluster here: it is refused before one is needed)
    finally:
        api._KNOWN_TYPES.pop("OptionsBulk", None)


@pytest.mark.parametrize("name", ["with_timeout", "future", "aio", "tell"])
def test_a_proxy_word_used_as_a_method_name_says_where_it_belongs(name: str) -> None:
    definition = ActorDef(Plain, ActorOptions(name="OptionsHint"))
    with pytest.raises(ff.NotFound, match=rf"has no method '{name}' \({name} belongs to a method: ref.METHOD.{name}"):
        definition.method(name)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a", "a"),
        (7, "7"),
        (-12, "-12"),
        (0, "0"),
        ("é", "é"),
        pytest.param(10**1023, "1" + "0" * 1023, id="int-of-1024-digits"),
    ],
)
def test_a_key_is_a_non_empty_str_or_an_int_written_out(key: object, expected: str) -> None:
    assert check_key(key) == expected


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (True, "str or int, not bool"),
        (1.5, "str or int, not float"),
        (None, "str or int, not NoneType"),
        ("", "1 to 1024 bytes long"),
        ("x" * 1025, "1 to 1024 bytes long"),
        ("é" * 513, "1 to 1024 bytes long"),  # 513 characters, 1,026 bytes
        pytest.param(10**1024, "1 to 1024 bytes long", id="int-of-1025-digits"),
        pytest.param(-(10**1023), "1 to 1024 bytes long", id="negative-int-of-1024-digits"),  # the sign is a byte too
        # past Python's int-to-str limit: still the key's error, not ValueError
        pytest.param(10**5000, "1 to 1024 bytes long", id="int-of-5001-digits"),
        ("\ud800", "valid Unicode"),
    ],
)
def test_a_bad_key_is_refused_with_the_reason(key: object, message: str) -> None:
    with pytest.raises(ff.InvalidRequest, match=message):
        check_key(key)


KEYS = st.one_of(
    st.text(max_size=3),
    st.text(alphabet="abc", min_size=1020, max_size=1030),
    st.text(alphabet="é", min_size=510, max_size=515),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)


@settings(deadline=None)
@given(st.lists(KEYS, max_size=6))
def test_a_bulk_calls_keys_are_checked_as_each_key_is(keys: list[object]) -> None:
    """``check_keys`` (a bulk call's, checked in C when all are short ASCII str) gives what
    ``check_key`` gives each, and refuses what it refuses, with its reason."""
    try:
        expected: list[str] | str = [check_key(k) for k in keys]
    except ff.InvalidRequest as exc:
        expected = str(exc)
    try:
        got: list[str] | str = check_keys(iter(keys))
    except ff.InvalidRequest as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize("args", [(), [], (1, "x"), [1, "x"], iter([1, "x"]), range(2)])
def test_a_bulk_item_s_arguments_may_be_any_sequence_or_iterable(args: Any) -> None:
    out = _bulk_args("T", "a", args)
    assert type(out) is list
    assert out == list(args) if not hasattr(args, "__next__") else out == [1, "x"]
    if isinstance(args, list):
        assert out is not args  # a copy: the caller's list is not handed on


@pytest.mark.parametrize(
    ("method", "calls", "message"),
    [
        ("get", [("a", ())], r"OptionsBulk.bulk: the calls are a mapping \{key: args\}, not list"),
        ("get", None, r"OptionsBulk.bulk: the calls are a mapping \{key: args\}, not NoneType"),
        (5, {"a": ()}, r"OptionsBulk.bulk: a method is named by a str, not int"),
    ],
)
def test_a_bulk_call_of_the_wrong_shape_is_refused_before_anything_is_sent(
    method: Any, calls: Any, message: str
) -> None:
    kind = ff.actor(name="OptionsBulk")(Plain)
    try:
        with pytest.raises(ff.InvalidRequest, match=message):
            kind.bulk(method, calls)  # (no cluster here: it is refused before one is needed)
    finally:
        api._KNOWN_TYPES.pop("OptionsBulk", None)


class _Shapes:
    def none(self) -> None: ...

    def two(self, a: int, b: int = 0) -> None: ...

    def star(self, a: int, *rest: int) -> None: ...

    def keyword(self, a: int, *, b: int = 0) -> None: ...

    def anything(self, *args: Any, **kwargs: Any) -> None: ...


SHAPES = ActorDef(_Shapes, ActorOptions(name="OptionsShapes"))


@settings(deadline=None)
@given(
    st.sampled_from(sorted(SHAPES.methods)),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(), max_size=2),
)
def test_a_methods_arguments_are_checked_as_its_signature_binds_them(
    name: str, args: list[int], kwargs: dict[str, int]
) -> None:
    """``MethodInfo.bind`` (whose count check a bulk batch uses as it is) refuses exactly
    what the method's signature would refuse, and a method of unknown signature nothing."""
    info = SHAPES.method(name)
    try:
        inspect.signature(info.fn).bind(None, *args, **kwargs)
        fits = True
    except TypeError:
        fits = False
    if fits:
        info.bind(tuple(args), kwargs)
    else:
        with pytest.raises(ff.InvalidRequest):
            info.bind(tuple(args), kwargs)
    unknown = dataclasses.replace(info, signature=None, positional=_positional(None))
    unknown.bind(tuple(args), kwargs)
