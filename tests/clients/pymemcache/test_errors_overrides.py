"""Errors, fault tolerance, per-client overrides, default service and nesting.

A. Errors reach the application unchanged (same type, message, object and
   traceback as without tracing) and give exactly one finished error span.
B. The integration's own failures never reach the application.
C. ddtrace's ``Pin.override`` is honored on every client type.
D. ``ddtrace_memcached.override``: merging, precedence, before ``patch()``.
E. The default service, and ``ddtrace.config.memcached.service``.
F. Spans nest under the application's own span.

Everything runs against real memcached servers. The only fake servers are plain
sockets for faults a memcached cannot produce on demand (reset, early close).
"""

import logging
import os
import pickle
import socket
import threading
from typing import Any
from typing import Callable
from typing import NamedTuple
from typing import Optional

from ddtrace import config
from ddtrace.trace import tracer
import pymemcache
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheClientError
from pymemcache.exceptions import MemcacheIllegalInputError
from pymemcache.exceptions import MemcacheServerError
from pymemcache.exceptions import MemcacheUnexpectedCloseError
from pymemcache.serde import pickle_serde
import pytest
import wrapt

import ddtrace_memcached
from ddtrace_memcached import commands as dm_commands
from ddtrace_memcached import core as dm_core
from ddtrace_memcached import overrides as dm_overrides
from ddtrace_memcached.clients.pymemcache import HAS_RETRYING_CLIENT
from helpers import Pin
from reliability import FaultServer

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient

needs_retrying = pytest.mark.skipif(not HAS_RETRYING_CLIENT, reason="pymemcache < 3.5 has no RetryingClient")

LOGGER = "ddtrace.contrib.memcached"
DEFAULT_SERVICE = "memcached"
PYMEMCACHE_DIR = os.path.dirname(os.path.abspath(pymemcache.__file__))


# --- helpers and fixtures ----------------------------------------------------------


def is_patched() -> bool:
    return isinstance(vars(Client)["get"], wrapt.FunctionWrapper)


@pytest.fixture
def patch_later():
    """A function that patches; unpatches at teardown. The test starts unpatched."""
    ddtrace_memcached.unpatch()
    assert not is_patched()
    yield ddtrace_memcached.patch
    ddtrace_memcached.unpatch()


def exc_type_name(exc: BaseException) -> str:
    return "%s.%s" % (type(exc).__module__, type(exc).__qualname__)


def tb_frames(exc: BaseException):
    """(filename, function, lineno) of every frame of the exception's traceback."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def in_pymemcache(filename: str) -> bool:
    return os.path.abspath(filename).startswith(PYMEMCACHE_DIR + os.sep)


class RecordingClient(Client):
    """A Client that records every exception pymemcache's own internals raise.

    The public commands are inherited (so they are the ones ``patch()`` wraps); the
    internal steps they call are overridden only to remember what they raised.
    """

    _INTERNALS = ("check_key", "_check_integer", "_check_cas", "_connect", "_fetch_cmd", "_store_cmd", "_misc_cmd")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.raised = []


def _recording(name):
    def method(self, *args, **kwargs):
        try:
            return getattr(super(RecordingClient, self), name)(*args, **kwargs)
        except BaseException as exc:
            self.raised.append(exc)
            raise

    method.__name__ = name
    return method


for _name in RecordingClient._INTERNALS:
    if hasattr(Client, _name):
        setattr(RecordingClient, _name, _recording(_name))


@pytest.fixture
def reset_server():
    """Address of a server that answers every request with a TCP reset."""
    server = FaultServer("reset")
    yield server.address
    server.stop()


@pytest.fixture
def closing_server():
    """Address of a server that closes the connection (FIN) instead of answering."""
    server = FaultServer("close")
    yield server.address
    server.stop()


def server_stat(address, name: bytes) -> int:
    """One ``stats`` counter, read over a raw socket (no client, no span)."""
    with socket.create_connection(address, timeout=2) as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            assert chunk, "server closed"
            data += chunk
    for line in data.split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    raise KeyError(name)


def new_spans(spans, since: int):
    return spans.memcached()[since:]


def assert_no_active_span(expected=None):
    assert tracer.current_span() is expected


# --- clients of every type ----------------------------------------------------------

CLIENT_KINDS = [
    "client",
    "pooled",
    "hash",
    "hash_pooled",
    pytest.param("retrying_client", marks=needs_retrying),
    pytest.param("retrying_hash", marks=needs_retrying),
]


@pytest.fixture
def build(memcached, memcached_nodes):
    """``build(kind)``: a new client of that kind on the real servers; closed at teardown."""
    made = []

    def _build(kind: str):
        if kind == "client":
            client = Client(memcached)
        elif kind == "pooled":
            client = PooledClient(memcached, max_pool_size=2)
        elif kind == "hash":
            client = HashClient(memcached_nodes, use_pooling=False)
        elif kind == "hash_pooled":
            client = HashClient(memcached_nodes, use_pooling=True)
        elif kind == "retrying_client":
            client = RetryingClient(Client(memcached), attempts=2, retry_delay=0)
        elif kind == "retrying_hash":
            client = RetryingClient(HashClient(memcached_nodes, use_pooling=False), attempts=2, retry_delay=0)
        else:
            raise ValueError(kind)
        made.append(client)
        return client

    yield _build
    for client in made:
        try:
            client.close()
        except Exception:
            pass


KEYS = ["key-%d" % i for i in range(12)]


def exercise(client) -> int:
    """Several commands, checked for their results; returns how many were issued."""
    assert client.set("key-0", b"zero", noreply=False) is True
    assert client.get("key-0") == b"zero"
    client.set_many({k: k.encode() for k in KEYS}, noreply=False)
    assert client.get_many(KEYS + ["absent"]) == {k: k.encode() for k in KEYS}
    assert client.delete("key-1", noreply=False) is True
    assert client.get("key-1", "dflt") == "dflt"
    return 6


def assert_all(spans_list, service, tags):
    assert spans_list, "no memcached span"
    for span in spans_list:
        assert span.service == service, (span.resource, span.service)
        for key, value in (tags or {}).items():
            assert span.get_tag(key) == value, (span.resource, key, span.get_tags())


# =================================================================================
# A. Errors
# =================================================================================


class Unprintable:
    """A value whose ``str()`` fails: pymemcache calls str() on non-bytes values."""

    def __str__(self):
        raise ValueError("this value has no text form")


class Fault(NamedTuple):
    server: str  # the fixture that gives the address
    call: Callable[[Client], Any]
    expected: Any  # exception type(s) pymemcache raises
    resource: str
    client_kwargs: Optional[dict] = None
    setup: Optional[Callable[[Client], Any]] = None


TIMEOUTS = {"timeout": 0.2, "connect_timeout": 0.2}

FAULTS = {
    # (a) connection refused
    "refused-get": Fault("dead_address", lambda c: c.get("k"), ConnectionRefusedError, "get"),
    "refused-set": Fault("dead_address", lambda c: c.set("k", b"v", noreply=False), ConnectionRefusedError, "set"),
    "refused-incr": Fault("dead_address", lambda c: c.incr("k", 1), ConnectionRefusedError, "incr"),
    # (b) timeout
    "timeout-get": Fault("silent_server", lambda c: c.get("k"), socket.timeout, "get", TIMEOUTS),
    "timeout-set": Fault("silent_server", lambda c: c.set("k", b"v", noreply=False), socket.timeout, "set", TIMEOUTS),
    "timeout-get_many": Fault("silent_server", lambda c: c.get_many(["a", "b"]), socket.timeout, "get_many", TIMEOUTS),
    # (c) the peer resets or closes the connection
    "reset-get": Fault("reset_server", lambda c: c.get("k"), ConnectionResetError, "get"),
    "reset-set": Fault("reset_server", lambda c: c.set("k", b"v", noreply=False), ConnectionResetError, "set"),
    "closed-get": Fault("closing_server", lambda c: c.get("k"), MemcacheUnexpectedCloseError, "get"),
    "closed-delete": Fault(
        "closing_server", lambda c: c.delete("k", noreply=False), MemcacheUnexpectedCloseError, "delete"
    ),
    # (d) illegal keys (pymemcache accepts other control characters, e.g. \x01)
    "key-space": Fault("memcached", lambda c: c.get("a b"), MemcacheIllegalInputError, "get"),
    "key-newline": Fault("memcached", lambda c: c.set("a\nb", b"v", noreply=False), MemcacheIllegalInputError, "set"),
    "key-tab": Fault("memcached", lambda c: c.delete("a\tb", noreply=False), MemcacheIllegalInputError, "delete"),
    "key-nul": Fault("memcached", lambda c: c.get("a\x00b"), MemcacheIllegalInputError, "get"),
    "key-too-long": Fault("memcached", lambda c: c.get("k" * 251), MemcacheIllegalInputError, "get"),
    "key-too-long-many": Fault(
        "memcached", lambda c: c.get_many(["ok", "k" * 251]), MemcacheIllegalInputError, "get_many"
    ),
    "key-non-ascii": Fault("memcached", lambda c: c.get("clé"), MemcacheIllegalInputError, "get"),
    # pymemcache 4 sends it and the server refuses it; 3.4 fails parsing the reply
    "key-empty": Fault("memcached", lambda c: c.get(""), Exception, "get"),
    "key-none": Fault("memcached", lambda c: c.get(None), TypeError, "get"),
    "key-int": Fault("memcached", lambda c: c.set(42, b"v", noreply=False), TypeError, "set"),
    "key-int-incr": Fault("memcached", lambda c: c.incr(42, 1), TypeError, "incr"),
    # (e) illegal values
    "value-unencodable-str": Fault(
        "memcached", lambda c: c.set("k", "héllo", noreply=False), MemcacheIllegalInputError, "set"
    ),
    "value-non-bytes-object": Fault(
        "memcached", lambda c: c.set("k", {"name": "é"}, noreply=False), MemcacheIllegalInputError, "set"
    ),
    "value-str-fails": Fault("memcached", lambda c: c.set("k", Unprintable(), noreply=False), ValueError, "set"),
    "value-unpicklable": Fault(
        "memcached",
        lambda c: c.set("k", threading.Lock(), noreply=False),
        (TypeError, pickle.PicklingError),
        "set",
        {"serde": pickle_serde},
    ),
    # (f) bad incr / decr values
    "incr-str": Fault("memcached", lambda c: c.incr("n", "1"), MemcacheIllegalInputError, "incr"),
    "decr-float": Fault("memcached", lambda c: c.decr("n", 1.5), MemcacheIllegalInputError, "decr"),
    "incr-non-numeric-value": Fault(
        "memcached",
        lambda c: c.incr("n", 1),
        MemcacheClientError,
        "incr",
        setup=lambda c: c.set("n", b"abc", noreply=False),
    ),
    # (g) server error
    "value-too-large": Fault(
        "memcached", lambda c: c.set("big", b"x" * (1024 * 1024 + 1), noreply=False), MemcacheServerError, "set"
    ),
    # (h) bad cas tokens
    "cas-letters": Fault("memcached", lambda c: c.cas("k", b"v", "abc"), MemcacheIllegalInputError, "cas"),
    "cas-none": Fault("memcached", lambda c: c.cas("k", b"v", None), MemcacheIllegalInputError, "cas"),
}


def run_fault(fault: Fault, address, after_setup=lambda: None):
    """Runs the faulty call on a new RecordingClient; returns (client, exception)."""
    client = RecordingClient(address, **(fault.client_kwargs or {}))
    try:
        if fault.setup is not None:
            fault.setup(client)
        after_setup()
        client.raised.clear()
        with pytest.raises(BaseException) as info:
            fault.call(client)
        return client, info.value
    finally:
        client.close()


@pytest.mark.parametrize("name", list(FAULTS))
def test_error_reaches_app_unchanged_with_one_error_span(name, request, spans, patch_later):
    """The same call raises the same exception (type, message, raise site) traced and
    untraced; traced, the app gets pymemcache's own exception object with its
    traceback, one finished span carries error.type/message/stack, none stays active."""
    fault = FAULTS[name]
    address = request.getfixturevalue(fault.server)

    _, untraced = run_fault(fault, address)
    assert isinstance(untraced, fault.expected), repr(untraced)
    assert spans.memcached() == [], "the untraced run must not be traced"

    patch_later()
    mark = []
    client, traced = run_fault(fault, address, lambda: mark.append(len(spans.memcached())))
    before = mark[0]

    # The same exception as without tracing.
    assert type(traced) is type(untraced)
    assert str(traced) == str(untraced)
    assert traced.args == untraced.args
    # The very object pymemcache raised, with its traceback.
    assert client.raised, "pymemcache's internals raised nothing?"
    for exc in client.raised:
        assert exc is traced
    frames = tb_frames(traced)
    assert any(in_pymemcache(f[0]) for f in frames), frames
    assert frames[-1] == tb_frames(untraced)[-1], "raise site differs"

    # One error span.
    got = new_spans(spans, before)
    assert len(got) == 1, [s.resource for s in got]
    span = got[0]
    assert span.resource == fault.resource
    assert span.error == 1
    assert span.get_tag("error.type") == exc_type_name(traced)
    message = str(traced)
    if message.startswith(("Key ", "Non-ASCII key")):  # it quotes the key, and capture is off
        message = message.partition(": ")[0] + ": " + dm_commands.REDACTED
    assert span.get_tag("error.message") == message
    stack = span.get_tag("error.stack")
    assert stack and type(traced).__name__ in stack
    assert frames[-1][1] in stack, "the stack does not reach the raise site"
    assert span.duration is not None and span.duration >= 0

    assert_no_active_span()


def test_error_inside_parent_span_restores_parent(dead_address, spans, patched):
    """After a failing command inside the app's span, the app's span is active again,
    the error span is its child, and the parent is not marked as an error."""
    client = Client(dead_address)
    with tracer.trace("request") as parent:
        with pytest.raises(ConnectionRefusedError):
            client.get("k")
        assert_no_active_span(parent)
        with pytest.raises(MemcacheIllegalInputError):
            client.set("bad key", b"v")
        assert_no_active_span(parent)
    assert_no_active_span()
    got = spans.memcached()
    assert [s.resource for s in got] == ["get", "set"]
    for span in got:
        assert span.error == 1
        assert span.parent_id == parent.span_id
    assert parent.error == 0


def test_error_is_not_carried_to_next_command(memcached, spans, patched):
    """A successful command after a failed one on the same client has no error tags."""
    client = Client(memcached)
    with pytest.raises(MemcacheIllegalInputError):
        client.get("bad key")
    client.set("k", b"v", noreply=False)
    assert client.get("k") == b"v"
    got = spans.memcached()
    assert [(s.resource, s.error) for s in got] == [("get", 1), ("set", 0), ("get", 0)]
    for span in got[1:]:
        assert span.get_tag("error.type") is None
        assert span.get_tag("error.message") is None


@needs_retrying
def test_retrying_client_error_is_one_span_per_attempt(dead_address, spans, patch_later):
    """A RetryingClient that gives up raises what it raises untraced; each attempt is
    one error span, numbered from 1."""

    def call():
        client = RetryingClient(Client(dead_address), attempts=3, retry_delay=0)
        with pytest.raises(Exception) as info:
            client.get("k")
        return info.value

    untraced = call()
    patch_later()
    traced = call()
    assert type(traced) is type(untraced) and str(traced) == str(untraced)
    got = spans.memcached()
    assert len(got) == 3
    assert [s.get_metric("memcached.retry.attempt") for s in got] == [1, 2, 3]
    for span in got:
        assert span.error == 1
        assert span.get_tag("error.type") == exc_type_name(traced)
    assert_no_active_span()


# =================================================================================
# B. The integration never harms the application
# =================================================================================


class Injected(Exception):
    """Raised by the integration's helpers that the tests break on purpose."""


def _explode(*args, **kwargs):
    raise Injected("injected fault")


class _ExplodingMapping:
    """A mapping whose every lookup fails: ddtrace's integration configs, broken."""

    __getitem__ = staticmethod(_explode)


REPLACEMENTS = {"core._CONFIGS": _ExplodingMapping()}  # what a fault puts in place; _explode else


@pytest.fixture
def debug_log(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def injected_debug_logs(caplog):
    return [
        r
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.DEBUG and r.exc_info and isinstance(r.exc_info[1], Injected)
    ]


# The command, its expected result, and how many keys it asks the server for.
HELPER_CALLS = {
    "get-hit": (lambda c: c.get("k"), b"v", 1),
    "get-miss-default": (lambda c: c.get("absent", "dflt"), "dflt", 1),
    "gets-miss": (lambda c: c.gets("absent"), (None, None), 1),
    "get_many": (lambda c: c.get_many(["k", "absent"]), {"k": b"v"}, 2),
    "incr": (lambda c: c.incr("n", 5), 15, 0),
}
ALL_CALLS = list(HELPER_CALLS)
READ_ONE_CALLS = ["get-hit", "get-miss-default", "gets-miss"]
BASIC_KINDS = ["client", "pooled"]
ALL_KINDS = ["client", "pooled", "hash"] + (["retrying_client"] if HAS_RETRYING_CLIENT else [])

# What is broken: object, attribute, what the case needs (True: command_enabled; "override": an
# override on the client), the calls that run it, client kinds.
HELPER_FAULTS = {
    "core._open": (dm_core, "_open", False, ALL_CALLS, BASIC_KINDS),
    "tracer.trace": (tracer, "trace", False, ALL_CALLS, BASIC_KINDS),
    "core._CONFIGS": (dm_core, "_CONFIGS", False, ALL_CALLS, BASIC_KINDS),
    "commands.query": (dm_commands, "query", True, ALL_CALLS, BASIC_KINDS),
    "commands.found": (dm_commands, "found", False, ["get_many"], BASIC_KINDS),
    "commands.with_miss_sentinel": (dm_commands, "with_miss_sentinel", False, READ_ONE_CALLS, BASIC_KINDS),
    "commands.restore_default": (dm_commands, "restore_default", False, READ_ONE_CALLS, BASIC_KINDS),
    "overrides.for_span": (dm_overrides, "for_span", False, ["get-hit", "get_many"], ALL_KINDS),
    # Reached only for a client with an override or a Pin (or its owner's): the case sets one.
    "overrides._refine": (dm_overrides, "_refine", "override", ["get-hit", "get_many"], ALL_KINDS),
}

HELPER_CASES = [
    pytest.param(fault, call, kind, id="%s-%s-%s" % (fault, call, kind))
    for fault, (_, _, _, calls, kinds) in HELPER_FAULTS.items()
    for call in calls
    for kind in kinds
]


@pytest.mark.parametrize("fault_name, call_name, kind", HELPER_CASES)
def test_broken_helper_never_reaches_app(
    fault_name, call_name, kind, build, memcached, memcached_nodes, spans, patched, debug_log, monkeypatch
):
    """With one of the integration's helpers raising, the command runs once, returns
    its normal result, the app sees no exception, no span stays active, and the
    failure is logged at DEBUG on ddtrace.contrib.memcached."""
    target, attribute, needs, _, _ = HELPER_FAULTS[fault_name]
    call, expected, keys_asked = HELPER_CALLS[call_name]
    if needs is True:  # memcached.query
        monkeypatch.setitem(config.memcached, "command_enabled", True)
    client = build(kind)
    if needs == "override":
        ddtrace_memcached.override(client, tags={"team": "web"})
    client.set("k", b"v", noreply=False)
    client.set("n", b"10", noreply=False)
    addresses = memcached_nodes if kind == "hash" else [memcached]
    gets_before = sum(server_stat(a, b"cmd_get") for a in addresses)
    before = len(spans.memcached())
    debug_log.clear()

    monkeypatch.setattr(target, attribute, REPLACEMENTS.get(fault_name, _explode))
    try:
        result = call(client)
    except Injected:
        pytest.fail("the integration's own failure (%s) reached the application" % fault_name)
    finally:
        monkeypatch.undo()

    assert result == expected
    assert sum(server_stat(a, b"cmd_get") for a in addresses) - gets_before == keys_asked, "command not sent once"
    assert_no_active_span()
    got = new_spans(spans, before)
    assert len(got) <= (len(addresses) if kind == "hash" else 1)  # a HashClient's: one per node asked, at most
    assert all(s.error == 0 for s in got), [(s.resource, s.get_tag("error.type")) for s in got]
    assert injected_debug_logs(debug_log), "no DEBUG log of the injected failure on %s" % LOGGER


def test_broken_helper_keeps_app_exception(memcached, spans, patched, debug_log, monkeypatch):
    """When the integration fails and the command fails too, the app gets the command's
    exception, not the integration's."""
    monkeypatch.setattr(dm_core, "_open", _explode)
    client = Client(memcached)
    with pytest.raises(MemcacheIllegalInputError):
        client.get("bad key")
    assert injected_debug_logs(debug_log)
    assert spans.memcached() == []
    assert_no_active_span()


def test_tag_failure_keeps_span(memcached, spans, patched, command_enabled, debug_log, monkeypatch):
    """A failure while tagging (memcached.query) still gives the command its span,
    with the other tags, and no error."""
    monkeypatch.setattr(dm_commands, "query", _explode)
    client = Client(memcached)
    client.set("k", b"v", noreply=False)
    assert client.get("k") == b"v"
    got = spans.memcached()
    assert [s.resource for s in got] == ["set", "get"]
    for span in got:
        assert span.error == 0
        assert span.get_tag("memcached.query") is None
        assert span.get_tag("db.system") == "memcached"
    assert got[1].get_metric("db.row_count") == 1
    assert injected_debug_logs(debug_log)


@pytest.fixture
def tracer_disabled():
    enabled = tracer.enabled
    tracer.enabled = False
    yield
    tracer.enabled = enabled


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_disabled_tracer_no_spans_same_results(kind, build, spans, patched, tracer_disabled):
    """With the tracer disabled, commands give the same results and no span."""
    client = build(kind)
    exercise(client)
    assert client.incr("absent-counter", 1) is None
    assert spans.memcached() == []
    assert_no_active_span()


# =================================================================================
# C. ddtrace's Pin.override
# =================================================================================


@needs_retrying
def test_pin_override_on_retrying_client_does_not_crash(memcached, patched):
    """Pin.override on a RetryingClient neither raises nor leaves the client unusable."""
    client = RetryingClient(Client(memcached), attempts=2, retry_delay=0)
    Pin.override(client, service="svc-x", tags={"team": "a"})
    pin = Pin.get_from(client)
    assert pin is not None and pin.service == "svc-x"
    assert client.set("k", b"v", noreply=False) is True
    assert client.get("k") == b"v"


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_pin_override_is_honored(kind, build, spans, patched):
    """Pin.override(client, service, tags) applies to every span the client causes,
    also when set after the client was created and already used."""
    client = build(kind)
    exercise(client)
    assert_all(spans.memcached(), DEFAULT_SERVICE, {})
    assert all(s.get_tag("team") is None for s in spans.memcached())

    before = len(spans.memcached())
    Pin.override(client, service="svc-x", tags={"team": "a"})
    issued = exercise(client)
    got = new_spans(spans, before)
    assert len(got) >= issued
    assert_all(got, "svc-x", {"team": "a"})


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_pin_override_does_not_leak_to_other_clients(kind, build, spans, patched):
    """A Pin on one client leaves another client of the same type on the defaults."""
    pinned, other = build(kind), build(kind)
    Pin.override(pinned, service="svc-x", tags={"team": "a"})
    exercise(other)
    got = spans.memcached()
    assert_all(got, DEFAULT_SERVICE, {})
    assert all(s.get_tag("team") is None for s in got)


# =================================================================================
# D. ddtrace_memcached.override
# =================================================================================


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_override_is_honored(kind, build, spans, patched):
    """override(client, service, tags) applies to every span the client causes, also
    when set after the client was created and already used."""
    client = build(kind)
    exercise(client)
    assert_all(spans.memcached(), DEFAULT_SERVICE, {})

    before = len(spans.memcached())
    ddtrace_memcached.override(client, service="ovr-svc", tags={"team": "b", "tier": 1})
    issued = exercise(client)
    got = new_spans(spans, before)
    assert len(got) >= issued
    assert_all(got, "ovr-svc", {"team": "b", "tier": "1"})


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_override_does_not_leak_to_other_clients(kind, build, spans, patched):
    """An override on one client leaves another client of the same type on the defaults."""
    overridden, other = build(kind), build(kind)
    ddtrace_memcached.override(overridden, service="ovr-svc", tags={"team": "b"})
    exercise(overridden)
    before = len(spans.memcached())
    exercise(other)
    got = new_spans(spans, before)
    assert_all(got, DEFAULT_SERVICE, {})
    assert all(s.get_tag("team") is None for s in got)


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_override_twice_merges(kind, build, spans, patched):
    """A second override merges tags (new values win) and keeps the service when
    service is None; a third can change the service and keeps the tags."""
    client = build(kind)
    ddtrace_memcached.override(client, service="first", tags={"team": "a", "zone": "z1"})
    ddtrace_memcached.override(client, tags={"zone": "z2", "extra": "x"})
    exercise(client)
    assert_all(spans.memcached(), "first", {"team": "a", "zone": "z2", "extra": "x"})

    before = len(spans.memcached())
    ddtrace_memcached.override(client, service="second")
    exercise(client)
    assert_all(new_spans(spans, before), "second", {"team": "a", "zone": "z2", "extra": "x"})


@pytest.mark.parametrize("kind", CLIENT_KINDS)
@pytest.mark.parametrize("order", ["pin-first", "override-first"])
def test_override_beats_pin_on_same_client(kind, order, build, spans, patched):
    """On one client, override() wins over Pin.override() whatever the order; the
    Pin's other tags remain."""
    client = build(kind)
    steps = [
        lambda: Pin.override(client, service="pin-svc", tags={"team": "pin", "pin-only": "p"}),
        lambda: ddtrace_memcached.override(client, service="ovr-svc", tags={"team": "ovr"}),
    ]
    for step in steps if order == "pin-first" else steps[::-1]:
        step()
    exercise(client)
    assert_all(spans.memcached(), "ovr-svc", {"team": "ovr", "pin-only": "p"})


def _port_of(span):
    return int(span.get_metric("network.destination.port"))


def _node_port(node) -> int:
    return int(node.server[1])


@pytest.mark.parametrize("use_pooling", [False, True])
@pytest.mark.parametrize("node_setting", ["override", "pin"])
def test_node_settings_beat_hash_client_override(use_pooling, node_setting, memcached_nodes, spans, patched):
    """A HashClient node's own override (or Pin) wins over the HashClient's override
    for the spans of that node; the other nodes keep the HashClient's."""
    client = HashClient(memcached_nodes, use_pooling=use_pooling)
    ddtrace_memcached.override(client, service="outer", tags={"team": "outer", "zone": "z"})
    node = client._get_client("key-0")  # a node that exercise() uses, whatever the ports
    if node_setting == "override":
        ddtrace_memcached.override(node, service="inner", tags={"team": "inner"})
    else:
        Pin.override(node, service="inner", tags={"team": "inner"})
    try:
        exercise(client)
    finally:
        client.close()
    got = spans.memcached()
    mine = [s for s in got if _port_of(s) == _node_port(node)]
    others = [s for s in got if _port_of(s) != _node_port(node)]
    assert mine and others, "the keys did not spread over the nodes"
    assert_all(mine, "inner", {"team": "inner", "zone": "z"})
    assert_all(others, "outer", {"team": "outer", "zone": "z"})


def test_pooled_node_beats_hash_client(memcached_nodes, spans, patched):
    """Inner wrapper beats outer: a HashClient's PooledClient node's override wins."""
    client = HashClient(memcached_nodes, use_pooling=True)
    ddtrace_memcached.override(client, service="outer", tags={"team": "outer"})
    for node in client.clients.values():
        assert isinstance(node, PooledClient)
        ddtrace_memcached.override(node, service="pool-%d" % _node_port(node), tags={"team": "pool"})
    exercise(client)
    got = spans.memcached()
    assert got
    for span in got:
        assert span.service == "pool-%d" % _port_of(span)
        assert span.get_tag("team") == "pool"
    client.close()


@needs_retrying
@pytest.mark.parametrize("inner_kind", ["client", "pooled", "hash"])
def test_inner_wrapper_beats_retrying_client(inner_kind, build, spans, patched):
    """Inner beats outer: the wrapped client's override wins over the RetryingClient's,
    whose other tags remain."""
    inner = build(inner_kind)
    client = RetryingClient(inner, attempts=2, retry_delay=0)
    ddtrace_memcached.override(client, service="outer", tags={"team": "outer", "zone": "z"})
    ddtrace_memcached.override(inner, service="inner", tags={"team": "inner"})
    exercise(client)
    assert_all(spans.memcached(), "inner", {"team": "inner", "zone": "z"})
    assert all(s.get_metric("memcached.retry.attempt") == 1 for s in spans.memcached())


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_override_set_before_patch(kind, build, spans, patch_later):
    """An override set before patch() (client made and overridden, then patch, then
    use) applies."""
    client = build(kind)
    ddtrace_memcached.override(client, service="early", tags={"team": "early"})
    patch_later()
    issued = exercise(client)
    got = spans.memcached()
    assert len(got) >= issued
    assert_all(got, "early", {"team": "early"})


def test_pool_used_before_patch(build, spans, patch_later):
    """A PooledClient made and used before patch(): its override (set after patch) reaches
    the spans of the connection it opened before patch() and of one it opens after."""
    pool = build("pooled")
    assert pool.set("key-0", b"zero", noreply=False) is True  # opens a connection, untraced
    (before,) = pool.client_pool.free
    patch_later()
    ddtrace_memcached.override(pool, service="pool-svc", tags={"team": "pool"})
    assert pool.get("key-0") == b"zero"  # on the connection from before patch()
    with pool.client_pool.get_and_release() as held:  # so that the pool opens another
        assert held is before
        assert pool.get("key-0") == b"zero"
    assert len(pool.client_pool.free) == 2
    got = spans.memcached()
    assert [s.resource for s in got] == ["get", "get"]
    assert_all(got, "pool-svc", {"team": "pool"})


# =================================================================================
# E. Default service and config
# =================================================================================


@pytest.fixture
def config_service():
    """Sets ddtrace.config.memcached.service for the test, then restores it."""
    previous = config.memcached.get("service")

    def _set(value):
        config.memcached.service = value

    yield _set
    config.memcached.service = previous


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_default_service(kind, build, spans, patched):
    """Outside any override, spans use the service ``memcached``."""
    exercise(build(kind))
    assert_all(spans.memcached(), DEFAULT_SERVICE, {})


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_config_service(kind, build, spans, patched, config_service):
    """ddtrace.config.memcached.service changes the service of every span; an
    override still beats it."""
    config_service("cfg-svc")
    client = build(kind)
    exercise(client)
    assert_all(spans.memcached(), "cfg-svc", {})

    before = len(spans.memcached())
    ddtrace_memcached.override(client, service="ovr-svc")
    exercise(client)
    assert_all(new_spans(spans, before), "ovr-svc", {})


def test_config_service_restored(memcached, spans, patched, config_service):
    """Setting the service back to None returns to the default."""
    config_service("cfg-svc")
    config_service(None)
    client = Client(memcached)
    client.set("k", b"v", noreply=False)
    assert_all(spans.memcached(), DEFAULT_SERVICE, {})


@pytest.mark.parametrize("kind", ["pooled", "hash", pytest.param("retrying_hash", marks=needs_retrying)])
def test_wrapper_override_ends_with_the_call(kind, build, memcached, spans, patched):
    """A wrapper's override covers its own calls only, also those that raised: a
    plain Client used afterwards is back on the defaults."""
    wrapper = build(kind)
    ddtrace_memcached.override(wrapper, service="ovr-svc", tags={"team": "w"})
    wrapper.set("k", b"v", noreply=False)
    with pytest.raises(MemcacheIllegalInputError):
        wrapper.set("bad key", b"v", noreply=False)
    plain = Client(memcached)
    plain.set("plain", b"p", noreply=False)
    assert plain.get("plain") == b"p"
    last = spans.memcached()[-1]
    assert last.resource == "get"
    assert last.service == DEFAULT_SERVICE
    assert last.get_tag("team") is None


# =================================================================================
# F. Nesting under the application's span
# =================================================================================


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_spans_are_children_of_app_span(kind, build, spans, patched):
    """Inside ``tracer.trace("request")`` every memcached span is a child of the
    request span, in its trace; afterwards no span is active."""
    client = build(kind)
    with tracer.trace("request") as request_span:
        issued = exercise(client)
        assert_no_active_span(request_span)
    assert_no_active_span()
    got = spans.memcached()
    assert len(got) >= issued
    for span in got:
        assert span.parent_id == request_span.span_id
        assert span.trace_id == request_span.trace_id
    assert request_span in spans.spans
