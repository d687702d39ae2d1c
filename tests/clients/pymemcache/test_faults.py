"""Faults: tracing changes nothing the application sees when servers die, hang or misbehave.

Each scenario runs twice on fresh servers: untraced (``unpatch()``), then traced (``patch()``)
inside the application's own span. Then:

- every call has the same outcome (result, or exception type, args, message and pymemcache
  raise site; see ``reliability.Outcome``);
- each call made exactly the spans expected (the spans started during the call), all
  finished, children of the application's span, errors marked with the exception's type;
- after each call the application's span is the active one again, and none after it.

Real memcached processes are killed (SIGKILL), restarted, and frozen (SIGSTOP, for
timeouts). Fake servers only where a memcached cannot misbehave on demand: a listener that
resets each connection (SO_LINGER 0), one that closes in the middle of a value, and the
``silent_server`` that never answers.
"""

import os
import signal
import socket
import threading
import time
from typing import Callable
from typing import List

from ddtrace.trace import tracer
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheIllegalInputError
from pymemcache.exceptions import MemcacheUnexpectedCloseError
import pytest

import ddtrace_memcached
from ddtrace_memcached.clients.pymemcache import HAS_RETRYING_CLIENT
from reliability import CountingSockets
from reliability import FaultServer
from reliability import ServerSocket
from reliability import assert_active
from reliability import assert_span_of
from reliability import error_type
from reliability import outcome_of
from reliability import patch_state_kept
from servers import MemcachedProcess

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient

needs_retrying = pytest.mark.skipif(not HAS_RETRYING_CLIENT, reason="pymemcache < 3.5 has no RetryingClient")

NETWORK_ERRORS = (MemcacheUnexpectedCloseError, ConnectionError, socket.timeout)


def make_client(kind: str, address, **kwargs):
    options = dict(connect_timeout=2, timeout=2, default_noreply=False, no_delay=True)
    options.update(kwargs)
    if kind == "client":
        return Client(address, **options)
    if kind == "pooled":
        options.setdefault("max_pool_size", 2)
        return PooledClient(address, **options)
    raise ValueError(kind)


# --- the harness: one scenario, untraced then traced -----------------------------------------


class Call:
    """One call of the application: what it saw, and when it ran (to find its spans)."""

    def __init__(self, label: str, outcome, exc, start_ns: int, end_ns: int):
        self.label = label
        self.outcome = outcome
        self.exc = exc
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.spans: List = []


class App:
    """Makes the application's calls; checks after each that only ``parent`` is active."""

    def __init__(self, parent=None):
        self.parent = parent
        self.calls: List[Call] = []

    def __call__(self, label: str, call: Callable):
        start = time.time_ns()
        outcome, exc = outcome_of(call)
        self.calls.append(Call(label, outcome, exc, start, time.time_ns()))
        assert_active(self.parent)
        return outcome


def untraced_then_traced(scenario: Callable[[App], None], recorder) -> App:
    """Runs ``scenario`` untraced, then traced in an app span; compares what the app saw.

    Returns the traced run, each call with its spans; fails on any span outside a call, any
    unfinished span, or any span that is not a child of the app's span.
    """
    with patch_state_kept():
        ddtrace_memcached.unpatch()
        untraced = App()
        scenario(untraced)
        assert recorder.memcached() == [], "the untraced run made spans"

        ddtrace_memcached.patch()
        with tracer.trace("app.request") as parent:
            traced = App(parent)
            scenario(traced)
        assert_active(None)

    assert [c.label for c in traced.calls] == [c.label for c in untraced.calls]
    for before, after in zip(untraced.calls, traced.calls):
        assert after.outcome == before.outcome, "%s: untraced %r, traced %r" % (
            before.label,
            before.outcome,
            after.outcome,
        )

    spans = recorder.memcached()
    for span in spans:
        assert span.duration is not None, "unfinished span %s" % span.resource
        assert span.parent_id == parent.span_id and span.trace_id == parent.trace_id
        owners = [c for c in traced.calls if c.start_ns <= span.start_ns <= c.end_ns]
        assert len(owners) == 1, "span %s started outside the app's calls" % span.resource
        owners[0].spans.append(span)
    assert parent.error == 0
    return traced


def assert_one_span_each(app: App, resources: dict) -> None:
    """Each call made exactly one span, of resource ``resources[label]`` (or the label), an
    error span exactly when the call raised."""
    for call in app.calls:
        assert len(call.spans) == 1, (call.label, [s.resource for s in call.spans])
        assert_span_of(call.spans[0], resources.get(call.label, call.label), call.exc)


# --- SIGKILL, and a restart ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["client", "pooled"])
def test_server_killed_then_restarted(kind, spans):
    """SIGKILL between commands: the next command sees the closed connection, the following
    ones are refused; after a restart on the same port the client reconnects and the spans
    are clean again."""

    def scenario(app):
        server = MemcachedProcess()
        client = make_client(kind, server.address)
        try:
            app("set", lambda: client.set("k", b"v"))
            app("get", lambda: client.get("k"))
            server.stop()  # SIGKILL, and wait for the process to be gone
            app("get killed", lambda: client.get("k"))
            app("set killed", lambda: client.set("k", b"v2"))
            app("get_many killed", lambda: client.get_many(["k", "j"]))
            app("incr killed", lambda: client.incr("n", 1))
            app("version killed", lambda: client.version())
            server = MemcachedProcess(port=server.port)
            app("get restarted", lambda: client.get("k"))
            app("set restarted", lambda: client.set("k", b"v3"))
            app("get_many restarted", lambda: client.get_many(["k", "j"]))
        finally:
            client.close()
            server.stop()

    app = untraced_then_traced(scenario, spans)
    assert_one_span_each(app, {c.label: c.label.split()[0] for c in app.calls})
    outcomes = {c.label: c for c in app.calls}
    assert isinstance(outcomes["get killed"].exc, MemcacheUnexpectedCloseError)
    for call in app.calls:
        if call.label.endswith("killed"):
            assert isinstance(call.exc, NETWORK_ERRORS), (call.label, call.exc)
        else:
            assert call.exc is None, (call.label, call.exc)
    assert outcomes["get restarted"].outcome.result is None  # a new, empty server
    assert outcomes["get_many restarted"].outcome.result == {"k": b"v3"}


def test_server_killed_under_concurrent_traffic(spans, patched):
    """SIGKILL while 4 threads, each under its own span, keep a shared PooledClient busy,
    then a restart: each call made exactly one finished span under its own thread's span,
    an error span exactly when it raised; every thread gets answers again after the restart."""
    server = MemcachedProcess()
    client = make_client("pooled", server.address, timeout=1, connect_timeout=1, max_pool_size=4)
    restarted, stop = threading.Event(), threading.Event()
    results = {}

    def worker(n):
        calls, errors, answered, wrong = 0, [], 0, []
        deadline = time.monotonic() + 20
        with tracer.trace("worker", resource=str(n)) as parent:
            while not (stop.is_set() and answered >= 20) and time.monotonic() < deadline:
                key, value = "w%d" % n, b"w%d-%d" % (n, calls)
                try:
                    if calls % 2:
                        got = client.get(key)
                        if got is not None and not got.startswith(b"w%d-" % n):
                            wrong.append(got)  # another thread's answer
                    else:
                        client.set(key, value)
                except Exception as exc:
                    errors.append(exc)
                else:
                    answered += restarted.is_set()
                calls += 1
                if tracer.current_span() is not parent:
                    wrong.append("active span: %r" % tracer.current_span())
        results[n] = (parent, calls, errors, answered, wrong, tracer.current_span())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        server.stop()
        time.sleep(0.1)
        server = MemcachedProcess(port=server.port)
        restarted.set()
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        client.close()
        server.stop()

    assert sorted(results) == [0, 1, 2, 3]
    memcached_spans = spans.memcached()
    for n, (parent, calls, errors, answered, wrong, active_after) in results.items():
        assert wrong == [] and active_after is None, (n, wrong[:5], active_after)
        assert errors, "thread %d never saw the server down" % n
        assert answered >= 20, "thread %d did not recover" % n
        assert all(isinstance(e, NETWORK_ERRORS) for e in errors), errors
        mine = [s for s in memcached_spans if s.parent_id == parent.span_id]
        assert all(s.trace_id == parent.trace_id and s.duration is not None for s in mine)
        assert len(mine) == calls, (n, len(mine), calls)
        failed = [s for s in mine if s.error]
        assert len(failed) == len(errors), (n, len(failed), len(errors))
        assert sorted(s.get_tag("error.type") for s in failed) == sorted(error_type(e) for e in errors)
    assert len(memcached_spans) == sum(r[1] for r in results.values())


# --- timeouts -----------------------------------------------------------------------------


def freeze(pid: int) -> None:
    """SIGSTOP, and wait until every thread of the process is stopped (signals are async)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    task_dir = "/proc/%d/task" % pid
    while True:
        states = []
        for tid in os.listdir(task_dir):
            with open(os.path.join(task_dir, tid, "stat")) as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(state in ("T", "t") for state in states):
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.001)


@pytest.mark.parametrize("kind", ["client", "pooled"])
def test_frozen_server_times_out_then_recovers(kind, spans):
    """A real server frozen with SIGSTOP: reads time out (the kernel still accepts the
    connections); after SIGCONT the client reconnects and is answered again."""

    def scenario(app):
        server = MemcachedProcess()
        control = ServerSocket(server.address)
        sockets, accepted = CountingSockets(), control.accepted()
        client = make_client(kind, server.address, timeout=0.2, connect_timeout=0.2, socket_module=sockets)
        try:
            app("set", lambda: client.set("k", b"v"))
            freeze(server.process.pid)
            try:
                # Reads only: a frozen write would run after SIGCONT, racing the next commands.
                app("get frozen", lambda: client.get("k"))
                app("get_many frozen", lambda: client.get_many(["k", "j"]))
                app("version frozen", lambda: client.version())
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            control.wait_for_clients(accepted + sockets.made)  # the frozen requests were served
            app("get thawed", lambda: client.get("k"))
            app("set thawed", lambda: client.set("k", b"v2"))
            app("get_many thawed", lambda: client.get_many(["k"]))
        finally:
            client.close()
            control.close()
            server.stop()

    app = untraced_then_traced(scenario, spans)
    assert_one_span_each(app, {c.label: c.label.split()[0] for c in app.calls})
    for call in app.calls:
        assert isinstance(call.exc, socket.timeout) == call.label.endswith("frozen"), (call.label, call.exc)
    assert app.calls[-1].outcome.result == {"k": b"v2"}


# --- connection resets and a reply cut short ----------------------------------------------

MISBEHAVED_CALLS = [
    ("get", lambda c: c.get("k")),
    ("set", lambda c: c.set("k", b"v")),
    ("get_many", lambda c: c.get_many(["k", "j"])),
    ("gets", lambda c: c.gets("k")),
    ("incr", lambda c: c.incr("k", 1)),
    ("delete", lambda c: c.delete("k")),
    ("touch", lambda c: c.touch("k", 10)),
    ("version", lambda c: c.version()),
    ("stats", lambda c: c.stats()),
]


@pytest.mark.parametrize("mode", ["reset", "partial"])
@pytest.mark.parametrize("kind", ["client", "pooled"])
def test_reset_and_cut_replies(kind, mode, spans):
    """A server that resets every connection (RST), or sends half a VALUE and closes: every
    command ends as it does untraced (ConnectionResetError; MemcacheUnexpectedCloseError,
    pymemcache's own parse errors, or a False), each with one span, an error span if it raised."""

    def scenario(app):
        server = FaultServer(mode)
        try:
            for label, call in MISBEHAVED_CALLS:
                # A new connection each: pymemcache leaves some after a parse error open,
                # and what the next command then sees depends on timing.
                client = make_client(kind, server.address)
                app(label, lambda: call(client))
                client.close()
        finally:
            server.stop()

    app = untraced_then_traced(scenario, spans)
    assert_one_span_each(app, {})
    raised = [type(c.exc) for c in app.calls if c.exc is not None]
    if mode == "reset":
        assert raised == [ConnectionResetError] * len(MISBEHAVED_CALLS)
    else:  # delete and touch read the line as "not deleted", "not touched"
        assert len(raised) == len(MISBEHAVED_CALLS) - 2 and MemcacheUnexpectedCloseError in raised, raised


# --- HashClient with a dead node ------------------------------------------------------------


@pytest.mark.parametrize("use_pooling", [False, True], ids=["plain", "pooled"])
@pytest.mark.parametrize("ignore_exc", [False, True], ids=["raise", "ignore_exc"])
def test_hash_client_with_a_dead_node(ignore_exc, use_pooling, memcached_nodes, dead_address, spans):
    """A HashClient over two live nodes and a dead one: the first command for the dead node
    is one ConnectionRefusedError span (raised, or swallowed with ignore_exc); then pymemcache
    marks the node failed and answers for it from its failed-node state (the default, no
    request, within retry_timeout): a span naming the dead node, an error of type
    pymemcache.FailedServer, for each command that needed it. The live nodes get exactly one
    span per node per command, clean."""
    nodes = memcached_nodes[:2] + [dead_address]
    dead_port = dead_address[1]
    probe = HashClient(nodes)
    port_of, by_port = {}, {}
    for key in ("key-%d" % i for i in range(500)):
        port = int(probe.hasher.get_node(key).rsplit(":", 1)[1])
        if len(by_port.setdefault(port, [])) < 3:
            by_port[port].append(key)
            port_of[key] = port
    assert len(by_port) == 3 and all(len(ks) == 3 for ks in by_port.values()), by_port
    keys = list(port_of)
    on_dead = by_port[dead_port]
    live = [k for k in keys if port_of[k] != dead_port]

    def scenario(app):
        for address in memcached_nodes[:2]:
            control = ServerSocket(address)
            control.flush_all()
            control.close()
        client = HashClient(
            nodes,
            use_pooling=use_pooling,
            ignore_exc=ignore_exc,
            retry_timeout=60,
            dead_timeout=60,
            connect_timeout=2,
            timeout=2,
            default_noreply=False,
        )
        try:
            app("set dead", lambda: client.set(on_dead[0], b"v"))
            app("get dead", lambda: client.get(on_dead[0]))
            for key in live:
                app("set " + key, lambda: client.set(key, key.encode()))
            app("set_many", lambda: client.set_many({k: k.encode() for k in keys}))
            app("get_many", lambda: client.get_many(keys))
            app("get live", lambda: client.get(live[0]))
            app("delete_many", lambda: client.delete_many(keys))
        finally:
            client.close()

    app = untraced_then_traced(scenario, spans)
    live_ports = sorted({port_of[k] for k in live})
    expected = {
        "set dead": [("set", dead_port)],
        "get dead": [("get", dead_port)],  # answered without a request, within retry_timeout
        **{"set " + k: [("set", port_of[k])] for k in live},
        "set_many": [("set_many", p) for p in live_ports + [dead_port]],
        "get_many": [("get_many", p) for p in live_ports + [dead_port]],
        "get live": [("get", port_of[live[0]])],
        "delete_many": sorted(("delete", port_of[k]) for k in live) + [("delete_many", dead_port)],
    }
    assert [c.label for c in app.calls] == list(expected)
    first = app.calls[0]
    for call in app.calls:
        want = expected[call.label]
        got = sorted((s.resource, int(s.get_metric("network.destination.port"))) for s in call.spans)
        assert got == sorted(want), (call.label, got, want)
        for span in call.spans:
            dead = span.get_metric("network.destination.port") == dead_port
            assert span.error == int(dead), (call.label, span.get_tag("error.type"))
            if dead and call is first:
                assert span.get_tag("error.type") == error_type(ConnectionRefusedError())
            elif dead:
                assert span.get_tag("error.type") == "pymemcache.FailedServer", call.label
                assert "is not retried for 60s" in span.get_tag("error.message")
    assert isinstance(first.exc, ConnectionRefusedError) != ignore_exc, first.exc
    assert [c.exc for c in app.calls[1:]] == [None] * (len(app.calls) - 1)
    assert app.calls[1].outcome.result is None
    assert app.calls[-3].outcome.result == {k: k.encode() for k in live}


# --- RetryingClient ---------------------------------------------------------------------------


def _retrying(inner, **kwargs):
    return RetryingClient(inner, retry_delay=0, **kwargs)


@needs_retrying
@pytest.mark.parametrize("fault", ["timeout", "reset"])
def test_retrying_client_exhausts_its_attempts(fault, silent_server, spans):
    """RetryingClient retrying timeouts (a server that never answers) or resets, 3 attempts:
    the app gets the last attempt's exception as untraced; 3 error spans, attempts 1 to 3."""
    retry_for = [socket.timeout] if fault == "timeout" else [ConnectionResetError]

    def scenario(app):
        server = FaultServer("reset") if fault == "reset" else None
        address = server.address if server else silent_server
        client = _retrying(make_client("client", address, timeout=0.1), attempts=3, retry_for=retry_for)
        try:
            app("get", lambda: client.get("k"))
            app("set", lambda: client.set("k", b"v"))
        finally:
            client.close()
            if server:
                server.stop()

    app = untraced_then_traced(scenario, spans)
    for call in app.calls:
        assert isinstance(call.exc, tuple(retry_for)), call.exc
        assert [s.get_metric("memcached.retry.attempt") for s in call.spans] == [1, 2, 3]
        for span in call.spans:  # every attempt failed the same way: same type and message
            assert_span_of(span, call.label, call.exc)


@needs_retrying
def test_retrying_client_does_not_retry_bad_input(memcached, spans):
    """do_not_retry_for=MemcacheIllegalInputError: one attempt, one error span."""

    def scenario(app):
        client = _retrying(make_client("client", memcached), attempts=3, do_not_retry_for=[MemcacheIllegalInputError])
        app("get", lambda: client.get("bad key"))
        app("set", lambda: client.set("k", b"v"))
        client.close()

    app = untraced_then_traced(scenario, spans)
    assert isinstance(app.calls[0].exc, MemcacheIllegalInputError)
    assert_one_span_each(app, {})
    assert [c.spans[0].get_metric("memcached.retry.attempt") for c in app.calls] == [1, 1]


@needs_retrying
def test_retrying_client_outlasts_a_restart(spans):
    """A server killed, then restarted while a RetryingClient retries: the call succeeds;
    the spans are refused attempts numbered from 1, then one clean attempt."""

    def scenario(app):
        server = MemcachedProcess()
        port = server.port
        server.stop()
        holder = {}
        restart = threading.Timer(0.2, lambda: holder.setdefault("server", MemcachedProcess(port=port)))
        client = RetryingClient(make_client("client", ("127.0.0.1", port)), attempts=200, retry_delay=0.01)
        restart.start()
        try:
            app("get", lambda: client.get("k"))
            app("set", lambda: client.set("k", b"v"))
        finally:
            restart.join()
            client.close()
            holder["server"].stop()

    app = untraced_then_traced(scenario, spans)
    get, set_ = app.calls
    assert get.exc is None and get.outcome.result is None and set_.outcome.result is True
    assert len(get.spans) >= 2, "the restart came before the first attempt"
    assert [s.get_metric("memcached.retry.attempt") for s in get.spans] == list(range(1, len(get.spans) + 1))
    for span in get.spans[:-1]:
        assert span.error == 1 and span.get_tag("error.type") == error_type(ConnectionRefusedError())
    assert_span_of(get.spans[-1], "get", None)
    assert len(set_.spans) == 1
    assert_span_of(set_.spans[0], "set", None)


# --- exceptions that are not Exceptions ----------------------------------------------------


class Interrupted(BaseException):
    """Like gevent.Timeout: a BaseException that is not an Exception."""


class InterruptingSerde:
    """A serde whose deserialize is interrupted, as a signal handler or a greenlet timeout can."""

    def __init__(self, exc_type):
        self.exc_type = exc_type
        self.raised = None

    def serialize(self, key, value):
        return value, 0

    def deserialize(self, key, value, flags):
        self.raised = self.exc_type("interrupted while reading %r" % key)
        raise self.raised


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, Interrupted])
def test_base_exceptions_reach_the_app_unchanged(exc_type, memcached, spans, patched):
    """KeyboardInterrupt, SystemExit and gevent.Timeout-like exceptions raised inside a command
    reach the app as the same object; the span records them and is finished, not left active."""
    serde = InterruptingSerde(exc_type)
    client = Client(memcached, serde=serde, default_noreply=False)
    client.set("k", b"v")
    with tracer.trace("app.request") as parent:
        with pytest.raises(exc_type) as raised:
            client.get("k")
        assert_active(parent)
    assert raised.value is serde.raised
    set_span, get_span = spans.memcached()
    assert_span_of(set_span, "set", None)
    assert_span_of(get_span, "get", raised.value)
    assert get_span.parent_id == parent.span_id
