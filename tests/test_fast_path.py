"""The fast tag path (``ddtrace_memcached.tagging``) makes the very spans the public API does.

Every client with an adapter runs the same commands twice on real servers: once as the
integration runs on this ddtrace (the fast path where ddtrace's Span is native), once
with the fast path forced off (``set_tag``/``set_metric`` only). Every span's name,
service, resource, type, error, tags and metrics (with their types) must be equal.
On ddtrace versions without a native Span both runs take the public path, and the test
checks that the fast path is indeed off there.
"""

from ddtrace import config
from ddtrace.trace import tracer
import pytest

import adapters
import ddtrace_memcached
from ddtrace_memcached import core
from ddtrace_memcached import tagging

pymemcache = pytest.importorskip("pymemcache")

# Differ between any two spans or processes, whichever path made them.
VOLATILE_TAGS = {"runtime-id"}
VOLATILE_METRICS = {"process_id"}


def _native_span() -> bool:
    """Whether ddtrace's Span is the native SpanData with a bulk attribute setter."""
    from ddtrace._trace.span import Span

    try:
        from ddtrace.internal.native._native import SpanData
    except ImportError:
        return False
    return issubclass(Span, SpanData) and hasattr(SpanData, "_set_attributes")


def signature(span) -> dict:
    return dict(
        name=span.name,
        service=span.service,
        resource=span.resource,
        span_type=span.span_type,
        error=span.error,
        parent=span.parent_id is not None,
        tags={k: v for k, v in span.get_tags().items() if k not in VOLATILE_TAGS},
        # By type too: 1 and 1.0 are equal, but encoded differently.
        metrics={k: (type(v).__name__, v) for k, v in span.get_metrics().items() if k not in VOLATILE_METRICS},
    )


def _load(client):
    try:
        return adapters.load(client)
    except ImportError as exc:
        pytest.skip("%s is not installed: %s" % (client, exc))


def _workload(adapter, memcached, memcached_nodes, memcached_unix, dead_address):
    """The same commands every run: what the app saw, in order."""
    seen = []
    client = adapter.make([memcached])
    try:
        seen.append(adapter.outcome("set", client, "fp:k", b"v"))
        seen.append(adapter.outcome("set", client, "fp:empty", b""))
        seen.append(adapter.outcome("get", client, "fp:k"))
        seen.append(adapter.outcome("get", client, "fp:empty"))
        seen.append(adapter.outcome("get", client, "fp:absent"))
        seen.append(adapter.outcome("get_many", client, ["fp:k", "fp:empty", "fp:absent"]))
        seen.append(adapter.outcome("set", client, "fp:n", b"10"))
        seen.append(adapter.outcome("incr", client, "fp:n", 5))
        seen.append(adapter.outcome("delete", client, "fp:k"))
        if adapter.bad_key is not None:
            seen.append(adapter.outcome("get", client, adapter.bad_key))
        # Service and tag overrides go through the public API on either path.
        ddtrace_memcached.override(client, service="fp-svc", tags={"team": "fp", "service.version": "9"})
        seen.append(adapter.outcome("get", client, "fp:n"))
        config.memcached["command_enabled"] = True
        try:
            seen.append(adapter.outcome("get_many", client, ["fp:n", "fp:absent"]))
        finally:
            config.memcached["command_enabled"] = False
    finally:
        adapter.close(client)
    if adapter.unix_socket:
        unix = adapter.make([memcached_unix])
        try:
            seen.append(adapter.outcome("set", unix, "fp:u", b"v"))
            seen.append(adapter.outcome("get", unix, "fp:u"))
        finally:
            adapter.close(unix)
    if adapter.multi_server:
        ring = adapter.make(memcached_nodes)
        try:
            seen.append(adapter.outcome("set", ring, "fp:r", b"v"))
            seen.append(adapter.outcome("get_many", ring, ["fp:r"] + ["fp:r%d" % i for i in range(9)]))
        finally:
            adapter.close(ring)
    dead = adapter.make([dead_address])
    try:
        seen.append(adapter.outcome("get", dead, "fp:k"))
    finally:
        adapter.close(dead)
    return seen


def _run(run, spans, fast: bool, monkeypatch):
    """``run()``'s result and the signatures of the memcached spans it made, fast path on or off."""
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(core, "_FAST_SPAN", None)
        start = len(spans.memcached())
        with tracer.trace("fp.root", service="fp-app"):
            seen = run()
        tracer.flush()
    return seen, [signature(s) for s in spans.memcached()[start:]]


def _flush(*addresses):
    from pymemcache.client.base import Client

    for address in addresses:
        client = Client(address)
        client.flush_all(noreply=False)
        client.close()


@pytest.mark.parametrize("client", adapters.CLIENTS)
def test_both_paths_make_identical_spans(
    client, memcached, memcached_nodes, memcached_unix, dead_address, spans, patched, monkeypatch
):
    adapter = _load(client)
    servers = [memcached, memcached_unix] + list(memcached_nodes)

    def run():
        _flush(*servers)
        return _workload(adapter, memcached, memcached_nodes, memcached_unix, dead_address)

    fast_seen, fast = _run(run, spans, True, monkeypatch)
    public_seen, public = _run(run, spans, False, monkeypatch)

    assert fast_seen == public_seen
    assert len(fast) == len(public)
    commands = [s for s in fast if s["resource"] != "flush_all"]  # flush_all: _flush(), pymemcache's
    assert len(commands) >= 11, fast
    for a, b in zip(fast, public):
        assert a == b
    # What the comparison covered: hosts, ports, the measured metric, errors, overrides.
    assert any(s["metrics"].get("network.destination.port") == ("int", memcached[1]) for s in commands)
    assert all(s["metrics"]["_dd.measured"] == ("int", 1) for s in commands)
    assert any(s["error"] for s in commands)
    assert any(s["service"] == "fp-svc" and s["tags"].get("team") == "fp" for s in commands)


def test_port_given_as_text(memcached, spans, patched, monkeypatch):
    """A port the app gave as text: set_metric converts it; the fast path leaves it to
    set_metric rather than store a different value."""
    from pymemcache.client.base import Client

    def run():
        _flush(memcached)
        client = Client((memcached[0], str(memcached[1])))
        try:
            return [client.set("fp:t", b"v", noreply=False), client.get("fp:t")]
        finally:
            client.close()

    fast_seen, fast = _run(run, spans, True, monkeypatch)
    public_seen, public = _run(run, spans, False, monkeypatch)
    assert fast_seen == public_seen == [True, b"v"]
    assert fast == public
    assert [s["resource"] for s in fast] == ["flush_all", "set", "get"]
    assert all(s["metrics"]["network.destination.port"] == ("float", float(memcached[1])) for s in fast[1:])


def test_fast_path_is_on_exactly_where_the_span_is_native():
    from ddtrace._trace.span import Span

    expected = Span if _native_span() else None
    assert tagging.FAST_SPAN is expected
    assert core._FAST_SPAN is expected


@pytest.mark.skipif(not _native_span(), reason="ddtrace's Span is pure Python here: no fast path to take")
def test_fast_path_is_taken(memcached, spans, patched, monkeypatch):
    """With the fast path on, the fixed tags skip set_tag; off, each goes through it."""
    from ddtrace._trace.span import Span
    from pymemcache.client.base import Client

    keys = []
    original = Span.set_tag

    def counting(self, key, value=None):
        keys.append(key)
        return original(self, key, value)

    monkeypatch.setattr(Span, "set_tag", counting)
    client = Client(memcached)
    client.get("fp:x")
    assert "component" not in keys and "out.host" not in keys
    monkeypatch.setattr(core, "_FAST_SPAN", None)
    client.get("fp:x")
    assert keys.count("component") == 1 and keys.count("out.host") == 1
    client.close()
    assert len(spans.memcached()) == 2


@pytest.mark.skipif(not _native_span(), reason="ddtrace's Span is pure Python here: no fast path to take")
def test_probe_refuses_a_wrapped_set_tag(monkeypatch):
    """Someone who wraps Span.set_tag (to see every tag) keeps seeing ours."""
    from ddtrace._trace.span import Span

    assert tagging._detect() is Span
    original = Span.set_tag

    def wrapped(self, key, value=None):
        return original(self, key, value)

    monkeypatch.setattr(Span, "set_tag", wrapped)
    wrapped.__module__ = "app.instrumentation"
    assert tagging._detect() is None


def test_probe_failure_means_public_path(monkeypatch):
    """Whatever goes wrong while probing, the answer is the public path."""
    import ddtrace._trace.span

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError(name)

    monkeypatch.setattr(ddtrace._trace.span, "Span", Broken())
    assert tagging._detect() is None


@pytest.mark.parametrize(
    "host, port, expected",
    [
        ("h", 11211, ["component", "span.kind", "db.system", "out.host", "server.address", "network.destination.port"]),
        ("/tmp/m.sock", None, ["component", "span.kind", "db.system", "out.host", "server.address"]),
        (None, None, ["component", "span.kind", "db.system"]),
    ],
)
def test_fixed_tags(host, port, expected):
    attrs = tagging.fixed(host, port)
    assert list(attrs) == expected + ["_dd.measured"]
    assert attrs["_dd.measured"] == 1 and attrs["component"] == "memcached"
    assert not tagging.native(tagging.fixed("h", "11211"))  # set_metric would convert it
    assert not tagging.native(tagging.fixed("h", True))
