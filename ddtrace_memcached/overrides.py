"""Per-client service and tag overrides: ddtrace's Pin and our own :func:`override`.

A span belongs to the ``Client`` that sent the command, but users configure the
client they hold, which may be a ``PooledClient``, ``HashClient`` or
``RetryingClient`` around it. Those wrapper clients put their override in a
context variable for the duration of a call; the ``Client`` span reads it.
"""

import contextvars
import logging
from typing import Any
from typing import Dict
from typing import Mapping
from typing import NamedTuple
from typing import Optional

log = logging.getLogger("ddtrace.contrib.memcached")

PIN_ATTR = "_datadog_pin"  # where ddtrace's Pin.onto() puts a Pin, on 3.x and 4.x
OVERRIDE_ATTR = "_ddtrace_memcached_override"


def _attr(obj: Any, name: str) -> Any:
    """``obj.name``, or None; never what a ``__getattr__`` makes up.

    ``RetryingClient.__getattr__`` answers every unknown name with a function, and
    neither a Pin nor an override is callable. A plain ``getattr`` with a default does
    not raise when the name is missing, and does not touch ``obj.__dict__``: reading
    that makes CPython (3.11+) build the instance's dict, after which every attribute
    read on the client, pymemcache's own per key included, takes the slow path.
    """
    value = getattr(obj, name, None)
    return None if callable(value) else value


class Scope(NamedTuple):
    """What the enclosing wrapper clients ask of the spans they cause."""

    service: Optional[str] = None
    tags: Optional[Dict[str, str]] = None
    attempt: Optional[int] = None


_NO_SCOPE = Scope()
_scope: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_scope", default=_NO_SCOPE)


def override(client: Any, service: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None) -> None:
    """Sets the service and extra tags of the spans that ``client`` causes.

    Works on ``Client``, ``PooledClient``, ``HashClient`` and ``RetryingClient``, and
    on every supported ddtrace version. Calling it again keeps what it does not
    change: tags are merged, and ``service=None`` keeps the current service.
    """
    current = _attr(client, OVERRIDE_ATTR) or _NO_SCOPE
    merged = dict(current.tags or {})
    merged.update({str(k): str(v) for k, v in (tags or {}).items()})
    setattr(client, OVERRIDE_ATTR, Scope(service or current.service, merged or None))


def _merge(outer: Scope, service: Optional[str], tags: Optional[Mapping]) -> Scope:
    if tags:
        tags = {**outer.tags, **tags} if outer.tags else dict(tags)
    return Scope(service or outer.service, tags or outer.tags, outer.attempt)


def _own(client: Any, outer: Scope) -> Scope:
    """``outer`` refined by the client's Pin, then by its :func:`override`."""
    # Inlined _attr: this runs on every command, and most clients have neither.
    pin = getattr(client, PIN_ATTR, None)
    own = getattr(client, OVERRIDE_ATTR, None)
    if pin is None and own is None:
        return outer
    scope = outer
    if pin is not None and not callable(pin):
        scope = _merge(scope, getattr(pin, "service", None), getattr(pin, "tags", None))
    if own is not None and not callable(own):
        scope = _merge(scope, own.service, own.tags)
    return scope


def _get_pin(client: Any) -> Any:
    return vars(client).get(PIN_ATTR)


def _set_pin(client: Any, pin: Any) -> None:
    pin._target = id(client)  # the owner, as Pin.onto() marks it
    vars(client)[PIN_ATTR] = pin


PIN_ACCESSORS = {"__getddpin__": _get_pin, "__setddpin__": _set_pin}
"""Pin.get_from()/onto() use these when present; RetryingClient gets them while patched."""


def for_span(client: Any) -> Scope:
    """The scope of a span that ``client`` (a ``Client``) is about to create.

    The most specific setting wins: the client's own over its wrappers', inner
    wrappers over outer ones.
    """
    return _own(client, _scope.get())


def within(wrapped, instance, args, kwargs):
    """wrapt wrapper for wrapper clients' methods: their override covers the call."""
    outer = _scope.get()
    try:
        scope = _own(instance, outer)
    except Exception:
        log.debug("could not read the overrides of %r", type(instance), exc_info=True)
        scope = outer
    if scope is outer:
        return wrapped(*args, **kwargs)
    token = _scope.set(scope)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _scope.reset(token)


def within_retry(wrapped, instance, args, kwargs):
    """wrapt wrapper for ``RetryingClient._retry``: numbers each attempt, from 1."""
    if len(args) < 2:
        return wrapped(*args, **kwargs)
    try:
        scope = _own(instance, _scope.get())
    except Exception:
        log.debug("could not read the overrides of %r", type(instance), exc_info=True)
        return wrapped(*args, **kwargs)
    name, func, rest = args[0], args[1], args[2:]
    attempts = 0

    def attempt(*a, **kw):
        nonlocal attempts
        attempts += 1
        token = _scope.set(scope._replace(attempt=attempts))
        try:
            return func(*a, **kw)
        finally:
            _scope.reset(token)

    return wrapped(name, attempt, *rest, **kwargs)
