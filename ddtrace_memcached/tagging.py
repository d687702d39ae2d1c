"""The span model: the names of every tag and metric, and the fixed tags of a span.

Every span gets the same seven tags and metrics (component, span.kind, db.system, the
server, ``_dd.measured``): :func:`fixed` defines them once, and both ways of setting them
derive from it. :func:`set_public` sets them through ``set_tag``/``set_metric``, the
reference. Where ``Span`` is ddtrace's native ``SpanData`` (ddtrace 4.1+),
``Span._set_attributes`` stores the whole mapping in one call, as those methods would
have: through them each key first goes past the Python comparisons for the keys they
treat specially (``service``, sampling keys, ``_dd.measured``, the port), and for our two
such keys ``set_metric`` stores exactly the value we pass (``1``, an ``int``). Where
``Span`` is not native (ddtrace 3.x, 4.0), or where the probe below finds any difference,
:data:`FAST_SPAN` is None and the public API is used. Counts (``db.row_count``) take the
same shortcut, one ``_set_attribute`` call, which is what ``set_metric`` makes for an ``int``.

The benchmarks' floor variant imports these definitions, so that it sets the same tags.
"""

import inspect
import logging
from typing import Any
from typing import Dict
from typing import Optional
from typing import Union

from .registry import INTEGRATION

log = logging.getLogger("ddtrace.contrib.memcached")
OPERATION = "memcached.command"
"""The span's name (schema v0 and v1: ``settings.operation_name()``)."""
SPAN_TYPE = "cache"

# The fixed tags (ddtrace's own names: ddtrace.constants, ddtrace.ext).
COMPONENT = "component"
SPAN_KIND = "span.kind"
DB_SYSTEM = "db.system"
OUT_HOST = "out.host"  # the peer.service precursor
SERVER_ADDRESS = "server.address"
PORT = "network.destination.port"  # a metric
MEASURED = "_dd.measured"  # a metric

# What a command's span may add.
ROW_COUNT = "db.row_count"  # a metric: the keys a read found
STATUS = "db.response.status_code"  # a miss that is not an error: NOT_FOUND, NOT_STORED, EXISTS
SERVERS = "memcached.servers"  # a metric: a call sent to several servers names none
QUERY = "memcached.query"  # the command and its keys, only when key capture is on
RETRY_ATTEMPT = "memcached.retry.attempt"  # a metric: a RetryingClient's attempt, from 1
CANCELLED = "memcached.cancelled"  # "true": an asyncio command the caller stopped waiting for
NOREPLY = "memcached.noreply"  # "true": sent without waiting for the server's reply
ERROR_TYPE = "error.type"
ERROR_MESSAGE = "error.message"
ERROR_STACK = "error.stack"

METRICS = frozenset((PORT, MEASURED, ROW_COUNT, SERVERS, RETRY_ATTEMPT))
"""The keys set with ``set_metric``; every other key is set with ``set_tag``."""

Attributes = Dict[str, Union[str, int]]


def fixed(host: Optional[str], port: Any) -> Attributes:
    """The fixed tags of a span to ``host``/``port`` (None, None: no server named), in the
    order the public API sets them."""
    attrs: Attributes = {COMPONENT: INTEGRATION, SPAN_KIND: "client", DB_SYSTEM: "memcached"}
    if host is not None:
        attrs[OUT_HOST] = host
        attrs[SERVER_ADDRESS] = host
        if port is not None:
            attrs[PORT] = port
    attrs[MEASURED] = 1
    return attrs


def native(attrs: Attributes) -> bool:
    """Whether ``attrs`` may be stored as they are: the host a ``str``, the port an ``int``
    (``set_metric`` would convert another type; the public API does that)."""
    host = attrs.get(OUT_HOST)
    return (host is None or type(host) is str) and type(attrs.get(PORT, 0)) is int


def set_public(span: Any, attrs: Attributes) -> None:
    """``attrs`` through ``set_tag``/``set_metric``: the reference path."""
    for key, value in attrs.items():
        if key in METRICS:
            span.set_metric(key, value)
        else:
            span.set_tag(key, value)


def _own_method(cls: type, name: str) -> bool:
    """Whether ``cls.name`` is still the function ddtrace defines (nobody wrapped it)."""
    method = cls.__dict__.get(name)
    return inspect.isfunction(method) and method.__module__ == cls.__module__


def _snapshot(span: Any) -> dict:
    # By type too: 1 == 1.0 == True, but they are encoded differently.
    return {k: (type(v), v) for k, v in span._get_attributes().items()}


def _detect() -> Optional[type]:
    """ddtrace's ``Span`` if its native ``_set_attributes`` stores our tags exactly as
    ``set_tag``/``set_metric`` do, else None. Checked once, on spans never recorded."""
    try:
        from ddtrace._trace.span import Span

        bulk = getattr(Span, "_set_attributes", None)
        if bulk is None or inspect.isfunction(bulk) or not hasattr(Span, "_get_attributes"):
            return None  # a pure-Python Span (ddtrace 3.x, 4.0)
        if not (_own_method(Span, "set_tag") and _own_method(Span, "set_metric")):
            return None  # wrapped by someone who may want to see every tag
        for host, port in (("127.0.0.1", 11211), ("/tmp/memcached.sock", None), (None, None)):
            attrs = fixed(host, port)
            public, fast = Span("ddtrace_memcached.probe"), Span("ddtrace_memcached.probe")
            set_public(public, attrs)
            fast._set_attributes(attrs)
            if _snapshot(public) != _snapshot(fast) or not set(attrs) <= set(_snapshot(fast)):
                return None
        # Counts (db.row_count): core's one _set_attribute call for an int.
        public, fast = Span("ddtrace_memcached.probe"), Span("ddtrace_memcached.probe")
        public.set_metric(ROW_COUNT, 3)
        fast._set_attribute(ROW_COUNT, 3)
        if _snapshot(public) != _snapshot(fast) or ROW_COUNT not in _snapshot(fast):
            return None
        return Span
    except Exception:
        log.debug("the fast tag path is off: could not probe ddtrace's Span", exc_info=True)
        return None


FAST_SPAN: Optional[type] = _detect()
"""The class whose spans take :func:`fixed` in one ``_set_attributes`` call, or None."""
