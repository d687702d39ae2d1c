"""Real users, end to end under ``ddtrace-run``: dogpile.cache's ``dogpile.cache.memcached``
(python-memcached) and ``dogpile.cache.bmemcached`` backends, and cachelib's
``MemcachedCache`` with python-memcached.

Each app runs its cache calls one by one and notes how many spans had finished after
each, so every cache call is checked for its own memcached spans: the commands the
framework sends for it, each naming the server.
"""

import json

import pytest

from conftest import app
from conftest import ddtrace_run
from conftest import run_python
from conftest import spans_of

STEPS_MARK = "@@STEPS@@"

# The body's steps: (name, code); each runs at top level, so its spans are whole traces
# (finished, and kept by the capture filter) by the time the next step starts.
_RUN_STEPS = """
_steps = []
for _name, _code in STEPS:
    exec(_code)
    _tracer.flush()
    _steps.append((_name, len(_Keep.spans)))
print({mark!r} + _json.dumps(_steps))
"""


def run_steps(setup: str, steps, address) -> dict:
    """``{step: [its memcached spans]}`` of an app run under ddtrace-run."""
    body = [setup, "STEPS = %r" % (steps,), _RUN_STEPS.format(mark=STEPS_MARK)]
    proc = run_python(app(body, address), argv_prefix=ddtrace_run())
    spans = spans_of(proc)
    line = next(line for line in proc.stdout.splitlines() if line.startswith(STEPS_MARK))
    by_step, start = {}, 0
    for name, end in json.loads(line[len(STEPS_MARK) :]):
        by_step[name] = [s for s in spans[start:end] if s["component"] == "memcached"]
        start = end
    return by_step


def assert_steps(by_step: dict, expected: dict, address) -> None:
    assert {step: [s["resource"] for s in found] for step, found in by_step.items()} == expected
    for found in by_step.values():
        for span in found:
            assert span["name"] == "memcached.command" and span["error"] == 0, span
            assert span["tags"]["out.host"] == address[0], span
            assert span["tags"]["db.system"] == "memcached"


DOGPILE_STEPS = [
    ("set", "region.set('a', 1)"),
    ("get", "assert region.get('a') == 1"),
    ("get_or_create", "assert region.get_or_create('g', lambda: 42) == 42"),
    ("set_multi", "region.set_multi({'x': 1, 'y': 2})"),
    ("get_multi", "assert region.get_multi(['x', 'y', 'z'])[:2] == [1, 2]"),
    ("delete", "region.delete('a')"),
    ("delete_multi", "region.delete_multi(['x', 'y'])"),
]


def test_dogpile_memcached_backend(memcached):
    pytest.importorskip("dogpile.cache")
    pytest.importorskip("memcache")
    setup = """
    from dogpile.cache import make_region

    region = make_region().configure(
        "dogpile.cache.memcached",
        expiration_time=30,
        arguments={"url": "%s:%d" % ADDRESS, "memcached_expire_time": 60},
    )
    """
    by_step = run_steps(setup, DOGPILE_STEPS, memcached)
    assert_steps(
        by_step,
        {
            "set": ["set"],
            "get": ["get"],
            "get_or_create": ["get", "get", "set"],
            "set_multi": ["set_many"],
            "get_multi": ["get_many"],
            "delete": ["delete"],
            "delete_multi": ["delete_many"],
        },
        memcached,
    )


def test_dogpile_bmemcached_backend(memcached):
    pytest.importorskip("dogpile.cache")
    pytest.importorskip("bmemcached")
    setup = """
    from dogpile.cache import make_region

    region = make_region().configure(
        "dogpile.cache.bmemcached",
        expiration_time=30,
        arguments={"url": ["%s:%d" % ADDRESS], "username": None, "password": None},
    )
    """
    by_step = run_steps(setup, DOGPILE_STEPS, memcached)
    assert_steps(
        by_step,
        {
            "set": ["set"],
            "get": ["get"],
            "get_or_create": ["get", "get", "set"],
            "set_multi": ["set_many"],
            "get_multi": ["get_many"],
            "delete": ["delete"],
            "delete_multi": ["delete", "delete"],  # the backend loops delete
        },
        memcached,
    )


def test_cachelib_memcached_cache_with_python_memcached(memcached):
    pytest.importorskip("cachelib")
    pytest.importorskip("memcache")
    setup = """
    import inspect

    from cachelib import MemcachedCache
    import memcache

    servers = ["%s:%d" % ADDRESS]
    if "memcache_client_lib" in inspect.signature(MemcachedCache).parameters:
        cache = MemcachedCache(servers, key_prefix="app:", memcache_client_lib="memcache")
    else:  # older cachelib picks pylibmc first when installed: hand it the client
        cache = MemcachedCache(memcache.Client(servers), key_prefix="app:")
    assert isinstance(cache._client, memcache.Client)
    """
    steps = [
        ("set", "assert cache.set('a', 1)"),
        ("get", "assert cache.get('a') == 1"),
        ("has", "assert cache.has('a')"),
        ("inc", "cache.set('n', 1); assert cache.inc('n') == 2"),
        ("set_many", "assert cache.set_many({'x': 1, 'y': 2}) == ['x', 'y']"),
        ("get_many", "assert cache.get_many('x', 'y', 'z') == [1, 2, None]"),
        ("delete", "assert cache.delete('a')"),
        ("delete_many", "cache.delete_many('x', 'y')"),
        ("clear", "cache.clear()"),  # its result differs across cachelib versions
    ]
    by_step = run_steps(setup, steps, memcached)
    assert_steps(
        by_step,
        {
            "set": ["set"],
            "get": ["get"],
            "has": ["append"],
            "inc": ["set", "get", "set"],
            "set_many": ["set_many"],
            "get_many": ["get_many"],
            "delete": ["delete"],
            "delete_many": ["delete_many", "append", "append"],
            "clear": ["flush_all"],
        },
        memcached,
    )
