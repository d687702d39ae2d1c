"""Helpers shared by the reliability tests (differential, faults, concurrency, stability, security).

- :class:`Outcome`: what the application sees of a call, to compare an untraced run with a traced one;
- :func:`patch_state_kept`: run untraced or traced, then restore whatever state the test found;
- span checks: finished, error-marked like the exception, nothing left active;
- :class:`FaultServer`: a real TCP listener for the faults a memcached cannot produce on demand.
"""

import contextlib
import os
import socket
import struct
import threading
import time
from typing import Any
from typing import Callable
from typing import NamedTuple
from typing import Optional
from typing import Tuple

from ddtrace import config
from ddtrace.trace import tracer
import pymemcache
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheIllegalInputError
import wrapt

import ddtrace_memcached
from ddtrace_memcached import settings

PYMEMCACHE_DIR = os.path.dirname(os.path.abspath(pymemcache.__file__)) + os.sep


# --- outcomes -----------------------------------------------------------------------


class Outcome(NamedTuple):
    """One call as the application sees it: its result, or its exception.

    ``result_type`` tells ``True`` from ``1``; ``error`` is (type, args, str) of the exception;
    ``frames`` are the (file, function, line) of the traceback's frames inside pymemcache, so
    an exception re-created by the tracer (rather than pymemcache's own object re-raised)
    does not compare equal.
    """

    result: Any = None
    result_type: type = type(None)
    error: Optional[tuple] = None
    frames: tuple = ()


def pymemcache_frames(exc: BaseException) -> tuple:
    frames, tb = [], exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if os.path.abspath(code.co_filename).startswith(PYMEMCACHE_DIR):
            frames.append((code.co_filename, code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    return tuple(frames)


def outcome_of(call: Callable[[], Any]) -> Tuple[Outcome, Optional[Exception]]:
    """Runs ``call``; returns its :class:`Outcome` and the exception object it raised, if any."""
    try:
        result = call()
    except Exception as exc:
        return Outcome(error=(type(exc), exc.args, str(exc)), frames=pymemcache_frames(exc)), exc
    return Outcome(result=result, result_type=type(result)), None


# --- patching -----------------------------------------------------------------------


def is_patched() -> bool:
    return isinstance(vars(Client)["get"], wrapt.FunctionWrapper)


@contextlib.contextmanager
def patch_state_kept():
    """Restores the patched state and ``command_enabled`` that the test started with."""
    was_patched = is_patched()
    settings.register()  # config.memcached exists from the first patch() on
    command_enabled = config.memcached["command_enabled"]
    try:
        yield
    finally:
        config.memcached["command_enabled"] = command_enabled
        (ddtrace_memcached.patch if was_patched else ddtrace_memcached.unpatch)()


# --- spans --------------------------------------------------------------------------


def error_type(exc: BaseException) -> str:
    """``error.type`` as ddtrace writes it."""
    return "%s.%s" % (type(exc).__module__, type(exc).__qualname__)


def assert_span_of(span, resource: str, exc: Optional[BaseException]) -> None:
    """``span`` is the finished span of one call to ``resource`` that raised ``exc`` (or nothing).

    ``error.message`` is the exception's message, except that pymemcache's messages about
    illegal input quote the key, which a span may redact (see test_security.py).
    """
    assert span.name == "memcached.command", span.name
    assert span.get_tag("component") == "memcached"
    assert span.resource == resource, (span.resource, resource)
    assert span.duration is not None, "span of %s never finished" % resource
    if exc is None:
        assert span.error == 0, (resource, span.get_tag("error.type"), span.get_tag("error.message"))
        assert span.get_tag("error.type") is None
    else:
        assert span.error == 1, "span of %s raising %r is not an error" % (resource, exc)
        assert span.get_tag("error.type") == error_type(exc), (span.get_tag("error.type"), repr(exc))
        if isinstance(exc, MemcacheIllegalInputError):  # what it refused may be cut out
            head = str(exc).partition(": ")[0]
            assert span.get_tag("error.message").partition(": ")[0] == head, (span.get_tag("error.message"), head)
        elif str(exc):
            assert span.get_tag("error.message") == str(exc), (span.get_tag("error.message"), str(exc))


def assert_active(expected=None) -> None:
    """No span of ours is left active: the current span is ``expected`` (the app's own, or None)."""
    current = tracer.current_span()
    assert current is expected, "active span after the call: %r" % (current,)


# --- fake servers ---------------------------------------------------------------------


class FaultServer:
    """A real TCP listener that reads each request, then misbehaves.

    ``reset``: closes with SO_LINGER (1, 0), so the client gets a TCP RST;
    ``close``: closes (FIN) without a reply;
    ``partial``: sends the start of a ``VALUE`` reply, then closes (FIN) mid-value.
    """

    PARTIAL_REPLY = b"VALUE k 0 10\r\nabc"

    def __init__(self, mode: str):
        assert mode in ("reset", "close", "partial"), mode
        self.mode = mode
        self.accepted = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fault-server", daemon=True)
        self.thread.start()

    @property
    def address(self):
        return self.listener.getsockname()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the whole request has arrived: now misbehave
                if self.mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif self.mode == "partial":
                    conn.sendall(self.PARTIAL_REPLY)
            except OSError:
                pass
            finally:
                conn.close()

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


class CountingSockets:
    """A ``socket_module`` for pymemcache clients: the socket module, counting the sockets
    the client makes, so that a test can wait until the server has accepted them all."""

    def __init__(self):
        self.made = 0

    def __getattr__(self, name):
        return getattr(socket, name)

    def socket(self, *args, **kwargs):
        self.made += 1
        return socket.socket(*args, **kwargs)


class ServerSocket:
    """A plain connection to a memcached, for the test's own requests (no client, so no span)."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=5)
        # Connections made before this one (MemcachedProcess's start-up probe) may still be
        # on their way in: wait until the count of accepted connections settles.
        previous, deadline = None, time.monotonic() + 5
        while previous != self.accepted() or self.clients():
            assert time.monotonic() < deadline, "memcached does not settle"
            previous = self.accepted()
            time.sleep(0.01)

    def request(self, command: bytes, end: bytes) -> bytes:
        self.sock.sendall(command)
        data = b""
        while not data.endswith(end):
            chunk = self.sock.recv(65536)
            assert chunk, "memcached closed the connection"
            data += chunk
        return data

    def flush_all(self) -> None:
        assert self.request(b"flush_all\r\n", b"\r\n") == b"OK\r\n"

    def stats(self) -> dict:
        lines = self.request(b"stats\r\n", b"END\r\n").splitlines()
        return {p[1].decode(): p[2].decode() for p in (line.split() for line in lines) if len(p) == 3}

    def clients(self) -> set:
        """The local ports of the server's client connections, other than this one."""
        conns = {}
        for line in self.request(b"stats conns\r\n", b"END\r\n").decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and ":" in parts[1]:
                fd, name = parts[1].split(":", 1)
                conns.setdefault(fd, {})[name] = parts[2]
        ports = {int(c["addr"].rsplit(":", 1)[1]) for c in conns.values() if c.get("state") != "conn_listening"}
        return ports - {self.sock.getsockname()[1]}

    def accepted(self) -> int:
        """How many connections the server has accepted since it started."""
        return int(self.stats()["total_connections"])

    def wait_for_clients(self, accepted: int, socks=(), timeout: float = 5.0) -> None:
        """Waits until the server has accepted ``accepted`` connections in all (see
        :class:`CountingSockets`), and closed every one but those of ``socks``.

        A connection that the client closed without waiting for replies (``quit``, noreply
        commands) may still have commands in the server, or wait in its listen backlog;
        once the server has accepted and closed it, they have all run.
        """
        expected = {sock.getsockname()[1] for sock in socks}
        deadline = time.monotonic() + timeout
        while self.accepted() != accepted or self.clients() != expected:
            assert time.monotonic() < deadline, "memcached: %d accepted (not %d), clients %s (not %s)" % (
                self.accepted(),
                accepted,
                self.clients(),
                expected,
            )
            time.sleep(0.0005)

    def close(self) -> None:
        self.sock.close()
