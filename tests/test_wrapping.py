"""``wrapping.passing``: the plain functions installed in place of the methods a client's
commands pass on every command (``core.hook``, ``core.as_function``) take the method's own
parameters. Whatever the signature, a call must reach the method exactly as it was made
(untraced), reach the slow path with the arguments bound, and fail the same way."""

import pytest

from ddtrace_memcached import wrapping

DEFAULT = ["a mutable default"]  # must reach the method as the same object


class Methods:
    def plain(self, key):
        return ("plain", key)

    def defaults(self, key, default=DEFAULT, flags=None):
        return ("defaults", key, default, flags)

    def star(self, key, *rest, noreply=False, **extra):
        return ("star", key, rest, noreply, extra)

    def keyword_only(self, key, *, noreply=None, flags=DEFAULT):
        return ("keyword_only", key, noreply, flags)

    def no_arguments(self):
        return ("no_arguments",)

    def positional_only(self, key, /, default=None):
        return ("positional_only", key, default)

    def raises(self, key):
        raise ValueError("from the method")


# (args, kwargs) of calls that bind.
CALLS = {
    "plain": [(("k",), {}), ((), {"key": "k"})],
    "defaults": [(("k",), {}), (("k", 1, 2), {}), (("k",), {"flags": 3}), ((), {"key": "k", "default": None})],
    "star": [(("k",), {}), (("k", 1, 2), {}), ((), {"key": "k", "noreply": True, "other": 4})],
    "keyword_only": [(("k",), {}), ((), {"key": "k", "noreply": True}), (("k",), {"flags": 1})],
    "no_arguments": [((), {})],
    "positional_only": [(("k",), {}), (("k", 2), {}), (("k",), {"default": 2})],
}
# Calls that bind no argument: the method's own TypeError, word for word.
BAD_CALLS = {
    "plain": [((), {}), (("k", 1), {}), (("k",), {"other": 1})],
    "defaults": [(("k", 1, 2, 3), {}), ((), {"default": 1}), (("k",), {"key": "k"})],
    "star": [((), {}), ((), {"rest": 1})],
    "keyword_only": [(("k", 1), {}), ((), {"key": "k", "key2": 1})],
    "no_arguments": [(("k",), {})],
    "positional_only": [((), {"key": "k"})],
}


def installed(method: str, active: bool, seen: list):
    """``Methods`` with ``method`` replaced by :func:`wrapping.passing`'s function, as
    ``wrapping.wrap`` installs a Hook; ``seen`` gets what the slow path receives."""
    cls = type("Methods", (Methods,), {})

    def slow(self, args, kwargs):
        seen.append((args, kwargs))
        return getattr(Methods, method)(self, *args, **kwargs)

    wrapping.wrap(cls, method, wrapping.Hook(lambda original: wrapping.passing(original, lambda: active, slow)))
    assert wrapping.is_ours(vars(cls)[method])
    return cls()


@pytest.mark.parametrize("active", [False, True], ids=["passing", "slow"])
@pytest.mark.parametrize("method", sorted(CALLS))
def test_calls_reach_the_method_as_made(method, active):
    seen = []
    instance = installed(method, active, seen)
    for args, kwargs in CALLS[method]:
        expected = getattr(Methods(), method)(*args, **kwargs)
        got = getattr(instance, method)(*args, **kwargs)
        assert got == expected
        # the same objects, defaults included (but for the containers that *rest and **extra make)
        assert all(a is b for a, b in zip(got, expected) if not isinstance(a, (tuple, dict)))
    assert len(seen) == (len(CALLS[method]) if active else 0)


def test_the_slow_path_gets_the_arguments_bound():
    seen = []
    instance = installed("defaults", True, seen)
    instance.defaults("k", flags=3)
    assert seen == [(("k", DEFAULT, 3), {})]
    seen.clear()
    instance = installed("star", True, seen)
    instance.star("k", 1, other=2)
    assert seen == [(("k", 1), {"noreply": False, "other": 2})]
    seen.clear()
    instance = installed("keyword_only", True, seen)
    instance.keyword_only(key="k")
    assert seen == [(("k",), {"noreply": None, "flags": DEFAULT})]


@pytest.mark.parametrize("active", [False, True], ids=["passing", "slow"])
@pytest.mark.parametrize("method", sorted(BAD_CALLS))
def test_bad_calls_fail_as_untraced(method, active):
    instance = installed(method, active, [])
    for args, kwargs in BAD_CALLS[method]:
        with pytest.raises(TypeError) as untraced:
            getattr(Methods(), method)(*args, **kwargs)
        with pytest.raises(TypeError) as traced:
            getattr(instance, method)(*args, **kwargs)
        assert str(traced.value) == str(untraced.value)


@pytest.mark.parametrize("active", [False, True], ids=["passing", "slow"])
def test_no_frame_keeps_the_arguments(active):
    """An exception the app keeps holds its traceback's frames: ours must not hold the key."""
    instance = installed("raises", active, [])
    key = object()
    with pytest.raises(ValueError) as raised:
        instance.raises(key)
    assert str(raised.value) == "from the method"
    frames = []
    tb = raised.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    ours = [f for f in frames if f.f_code.co_filename.startswith("<ddtrace_memcached")]
    assert ours, [f.f_code.co_filename for f in frames]
    for frame in ours:
        assert not any(value is key for value in frame.f_locals.values()), frame.f_code.co_name


def test_a_method_without_a_signature_gets_the_generic_function():
    original = dict.update  # a C method whose parameters inspect cannot read
    seen = []
    function = wrapping.passing(original, lambda: True, lambda self, args, kwargs: seen.append((args, kwargs)))
    function({}, {"a": 1}, b=2)
    assert seen == [(({"a": 1},), {"b": 2})]
    target = {}
    wrapping.passing(original, lambda: False, None)(target, {"a": 1}, b=2)
    assert target == {"a": 1, "b": 2}


def test_bound_hands_the_slow_path_the_method_bound_as_a_wrapt_wrapper_gets_it():
    """``core.as_function``'s form: ``slow(method, instance, args, kwargs)``, no frame between."""
    seen = []

    def wrapper(wrapped, instance, args, kwargs):
        seen.append((wrapped.__self__ is instance, wrapped.__func__ is Methods.defaults, args, kwargs))
        return wrapped(*args, **kwargs)

    cls = type("Methods", (Methods,), {})
    wrapping.wrap(
        cls, "defaults", wrapping.Hook(lambda original: wrapping.passing(original, lambda: True, wrapper, True))
    )
    assert cls().defaults("k", flags=3) == ("defaults", "k", DEFAULT, 3)
    assert seen == [(True, True, ("k", DEFAULT, 3), {})]
    seen.clear()
    function = wrapping.passing(dict.update, lambda: True, wrapper, bound=True)  # the generic function
    target = {}
    function(target, {"a": 1})
    assert target == {"a": 1} and seen == [(True, False, ({"a": 1},), {})]


class Coroutines:
    async def fetch(self, key, default=DEFAULT):
        return ("fetch", key, default)

    async def fails(self, key):
        raise ValueError("from the coroutine")

    async def anything(*args):  # no parameter for the instance to spell: the generic function
        return ("anything", args[1:])


@pytest.mark.parametrize("active", [False, True], ids=["passing", "slow"])
def test_a_coroutine_function_stays_one_and_is_awaited(active):
    """An asyncio client's command (emcache's) is still a coroutine function once wrapped
    (``inspect.iscoroutinefunction``, which frameworks ask), and its call awaits the method's."""
    import asyncio
    import inspect

    seen = []

    async def awaited(wrapped, instance, args, kwargs):
        seen.append(args)
        return await wrapped(*args, **kwargs)

    cls = type("Coroutines", (Coroutines,), {})
    for method in ("fetch", "fails", "anything"):
        wrapping.wrap(
            cls, method, wrapping.Hook(lambda original: wrapping.passing(original, lambda: active, awaited, True))
        )
        assert inspect.iscoroutinefunction(vars(cls)[method]), method
    instance = cls()
    assert asyncio.run(instance.fetch("k")) == ("fetch", "k", DEFAULT)
    assert asyncio.run(instance.anything("k")) == ("anything", ("k",))
    with pytest.raises(ValueError, match="from the coroutine"):
        asyncio.run(instance.fails("k"))
    assert seen == ([("k", DEFAULT), ("k",), ("k",)] if active else [])
