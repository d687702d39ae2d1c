"""The fixed tags of a span in one native call, where ddtrace's ``Span`` allows it.

Every span gets the same seven tags and metrics (component, span.kind, db.system, the
server, ``_dd.measured``). Through ``set_tag``/``set_metric`` each one first goes past
the Python comparisons for the keys those methods treat specially (``service``,
sampling keys, ``_dd.measured``, the port); none of ours is one of them but
``_dd.measured`` and the port, and for those two ``set_metric`` stores exactly the
value we pass (``1``, an ``int``). Where ``Span`` is the native ``SpanData`` (ddtrace
4.1+), ``Span._set_attributes`` stores a whole mapping in one call, as those methods
would have. Where it is not (ddtrace 3.x, 4.0), or where the probe below finds any
difference, :data:`FAST_SPAN` is None and the public API is used. Counts
(``db.row_count``) take the same shortcut, one ``_set_attribute`` call, which is what
``set_metric`` makes for an ``int``.
"""

import inspect
import logging
from typing import Any
from typing import Dict
from typing import Optional
from typing import Union

from . import settings

log = logging.getLogger("ddtrace.contrib.memcached")

Attributes = Dict[str, Union[str, int]]

# Set with set_metric by the public path (int values; _dd.measured is 0 or 1); the rest with set_tag.
_METRIC_KEYS = ("network.destination.port", "_dd.measured")


def fixed(host: Optional[str], port: Any) -> Optional[Attributes]:
    """The fixed tags of a span to ``host``/``port`` (None, None: no server named), in
    the order the public API sets them; None when the port is not a plain ``int``
    (``set_metric`` would convert it: the public API does that)."""
    attrs: Attributes = {"component": settings.INTEGRATION, "span.kind": "client", "db.system": "memcached"}
    if host is not None:
        if type(host) is not str or (port is not None and type(port) is not int):
            return None
        attrs["out.host"] = host
        attrs["server.address"] = host
        if port is not None:
            attrs["network.destination.port"] = port
    attrs["_dd.measured"] = 1
    return attrs


def set_public(span: Any, attrs: Attributes) -> None:
    """What :func:`fixed` holds, through ``set_tag``/``set_metric``: the reference path."""
    for key, value in attrs.items():
        if key in _METRIC_KEYS:
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
            public, native = Span("ddtrace_memcached.probe"), Span("ddtrace_memcached.probe")
            set_public(public, attrs)
            native._set_attributes(attrs)
            if _snapshot(public) != _snapshot(native) or not set(attrs) <= set(_snapshot(native)):
                return None
        # Counts (db.row_count): core.set_count's one _set_attribute call for an int.
        public, native = Span("ddtrace_memcached.probe"), Span("ddtrace_memcached.probe")
        public.set_metric("db.row_count", 3)
        native._set_attribute("db.row_count", 3)
        if _snapshot(public) != _snapshot(native) or "db.row_count" not in _snapshot(native):
            return None
        return Span
    except Exception:
        log.debug("the fast tag path is off: could not probe ddtrace's Span", exc_info=True)
        return None


FAST_SPAN: Optional[type] = _detect()
"""The class whose spans take :func:`fixed` in one ``_set_attributes`` call, or None."""
