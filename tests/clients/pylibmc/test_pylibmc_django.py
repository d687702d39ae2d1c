"""Django's ``PyLibMCCache`` end to end, under ``ddtrace-run``, against three memcached servers.

A real Django app in a fresh interpreter calls every cache method; each call must give
its memcached span(s), naming the server that holds the key (asked of the servers
directly), and with ``DD_DJANGO_INSTRUMENT_CACHES=true`` each memcached span must be a
child of its ``django.cache`` span.
"""

import json

import pytest

pytest.importorskip("pylibmc")
pytest.importorskip("django")

from adapters import holder  # noqa: E402
from apps import app  # noqa: E402
from apps import ddtrace_run  # noqa: E402
from apps import run_python  # noqa: E402
from apps import spans_of  # noqa: E402

DJANGO_APP = """
import django
from django.conf import settings

settings.configure(
    CACHES={{
        "default": {{
            "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
            "LOCATION": {location!r},
        }}
    }},
    INSTALLED_APPS=[],
)
django.setup()

from django.core.cache import cache

assert cache.get("a") is None
cache.set("a", b"1")
assert cache.add("b", b"2") is True
assert cache.get_many(["a", "b", "missing"]) == {{"a": b"1", "b": b"2"}}
cache.set_many({{"c": b"3", "d": b"4"}})
cache.delete_many(["c", "d"])
cache.set("n", 1)
assert cache.incr("n") == 2
assert cache.touch("a") is True
cache.clear()
cache.close()

_tracer.flush()
print("@@IDS" + _json.dumps([(s.span_id, s.parent_id, s.name, s.get_metrics()) for s in _Keep.spans]))
"""

# (the memcached resource, Django's key(s)) of each cache call, in order.
EXPECTED = [
    ("get", ["a"]),
    ("set", ["a"]),
    ("add", ["b"]),
    ("get_many", ["a", "b", "missing"]),
    ("set_many", ["c", "d"]),
    ("delete_many", ["c", "d"]),
    ("set", ["n"]),
    ("incr", ["n"]),
    ("touch", ["a"]),
    ("flush_all", None),
]


def run(nodes, **env):
    location = ["%s:%d" % node for node in nodes]
    proc = run_python(app(DJANGO_APP.format(location=location), nodes[0]), argv_prefix=ddtrace_run(), env=env)
    spans = spans_of(proc)
    ids = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("@@IDS"))[5:])
    # The app ended with cache.clear(): put its keys back, untraced, through a client
    # configured as Django's, so that holder() can ask the servers where each one lives.
    import pylibmc

    refill = pylibmc.Client(location)
    refill.set_multi({wire(k).decode(): b"x" for _, keys in EXPECTED for k in keys or ()})
    refill.disconnect_all()
    return spans, ids


def wire(key):
    return b":1:" + key.encode()  # Django's default KEY_FUNCTION: ":<version>:<key>"


def assert_memcached_spans(spans, ids, nodes):
    metrics = {span_id: m for span_id, _, name, m in ids if name == "memcached.command"}
    ours = [s for s in spans if s["component"] == "memcached"]
    assert [s["resource"] for s in ours] == [resource for resource, _ in EXPECTED]
    assert len(metrics) == len(ours)
    for span, span_metrics, (resource, keys) in zip(ours, metrics.values(), EXPECTED):
        assert span["name"] == "memcached.command" and span["error"] == 0, span
        host, port = span["tags"].get("out.host"), span_metrics.get("network.destination.port")
        servers = span_metrics.get("memcached.servers")
        if keys is None:  # every server
            assert (host, port, servers) == (None, None, 3), span
            continue
        holders = {holder(nodes, wire(k)) for k in keys}
        if len(holders) == 1:
            assert ((host, port), servers) == (holders.pop(), None), (resource, keys)
        else:  # a multi-key call on several servers names none
            assert (host, port, servers) == (None, None, len(holders)), (resource, keys)


def test_pylibmc_cache_under_ddtrace_run(memcached_nodes):
    spans, ids = run(memcached_nodes)
    assert_memcached_spans(spans, ids, memcached_nodes)
    assert not [s for s in spans if s["component"] == "pylibmc"]  # the built-in stayed quiet


# The cache methods that ddtrace's Django integration traces (its ``cache.py``): not touch
# nor clear, whose memcached spans have no django.cache parent to be children of.
DJANGO_TRACED = ("get", "set", "add", "delete", "incr", "decr", "get_many", "set_many", "delete_many")


def test_each_memcached_span_is_a_child_of_its_django_cache_span(memcached_nodes):
    spans, ids = run(memcached_nodes, DD_DJANGO_INSTRUMENT_CACHES="true")
    assert_memcached_spans(spans, ids, memcached_nodes)
    names = {span_id: name for span_id, _, name, _ in ids}
    parents = [parent_id for _, parent_id, name, _ in ids if name == "memcached.command"]
    assert len(parents) == len(EXPECTED)
    for parent, (resource, _) in zip(parents, EXPECTED):
        if resource in DJANGO_TRACED:
            assert names.get(parent) == "django.cache", (resource, ids)
        else:
            assert parent is None, (resource, ids)
    traced = [p for p, (r, _) in zip(parents, EXPECTED) if r in DJANGO_TRACED]
    assert len(set(traced)) == len(traced) == 8  # one Django call, one memcached span
    assert sum(1 for name in names.values() if name == "django.cache") == 8
