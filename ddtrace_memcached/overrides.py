"""Per-client service and tag overrides: ddtrace's Pin and our own :func:`override`.

A span belongs to the object that sent the command (pymemcache's ``Client``, a
per-server protocol object), but users configure the client they hold, which may be
a pool, a hash ring or a retrying client around it. Those outer clients' methods
are outer calls (``core.outer``), which put their override in a context variable for the
duration of a call (:func:`enter`, :func:`leave`); the span reads it (:func:`for_span`). A pool that makes its own
connection clients can instead :func:`adopt` them: their spans then read the pool's
override directly, which costs no wrapper around the pool's methods.
"""

import contextlib
import contextvars
import logging
from typing import Any
from typing import Dict
from typing import Iterator
from typing import Mapping
from typing import Optional
import weakref

from .records import record

log = logging.getLogger("ddtrace.contrib.memcached")

PIN_ATTR = "_datadog_pin"  # where ddtrace's Pin.onto() puts a Pin, on 3.x and 4.x
OVERRIDE_ATTR = "_ddtrace_memcached_override"
OWNER_ATTR = "_ddtrace_memcached_owner"  # a weak reference to the outer client (adopt())


@record
class Scope:
    """What the enclosing wrapper clients ask of the spans they cause."""

    service: Optional[str] = None
    tags: Optional[Dict[str, str]] = None
    attempt: Optional[int] = None


_NO_SCOPE = Scope()
_scope: contextvars.ContextVar = contextvars.ContextVar("ddtrace_memcached_scope", default=_NO_SCOPE)


def override(client: Any, service: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None) -> None:
    """Sets the service and extra tags of the spans that ``client`` causes.

    Works on every client object of every traced library (pools and hash rings
    included), and on every supported ddtrace version. Calling it again keeps what it does not
    change: tags are merged, and ``service=None`` keeps the current service.
    """
    current = getattr(client, OVERRIDE_ATTR, None)
    if current is None or callable(current):  # see _own
        current = _NO_SCOPE
    merged = dict(current.tags or {})
    merged.update({str(k): str(v) for k, v in (tags or {}).items()})
    setattr(client, OVERRIDE_ATTR, Scope(service or current.service, merged or None))


def _merge(outer: Scope, service: Optional[str], tags: Optional[Mapping]) -> Scope:
    if tags:
        tags = {**outer.tags, **tags} if outer.tags else dict(tags)
    return Scope(service or outer.service, tags or outer.tags, outer.attempt)


def _refine(outer: Scope, pin: Any, own: Any) -> Scope:
    """``outer`` refined by a client's Pin, then by its :func:`override`.

    Neither is callable: ``RetryingClient.__getattr__`` answers every unknown name with a
    function, which is then no Pin or override. They are read with ``getattr`` and a
    default, which does not raise when the name is missing and does not touch
    ``client.__dict__``: reading that makes CPython (3.11+) build the instance's dict, after
    which every attribute read on the client, pymemcache's own per key included, takes the
    slow path.
    """
    if pin is not None and not callable(pin):
        outer = _merge(outer, getattr(pin, "service", None), getattr(pin, "tags", None))
    if own is not None and not callable(own):
        outer = _merge(outer, own.service, own.tags)
    return outer


def _own(client: Any, outer: Scope) -> Scope:
    """``outer`` refined by ``client``'s Pin and override (see :func:`_refine`)."""
    pin = getattr(client, PIN_ATTR, None)
    own = getattr(client, OVERRIDE_ATTR, None)
    if pin is None and own is None:  # most clients have neither
        return outer
    return _refine(outer, pin, own)


def _get_pin(client: Any) -> Any:
    return vars(client).get(PIN_ATTR)


def _set_pin(client: Any, pin: Any) -> None:
    pin._target = id(client)  # the owner, as Pin.onto() marks it
    vars(client)[PIN_ATTR] = pin


PIN_ACCESSORS = {"__getddpin__": _get_pin, "__setddpin__": _set_pin}
"""Pin.get_from()/onto() use these when present: for classes whose ``__getattr__``
answers every name (pymemcache's ``RetryingClient``), while patched."""


def add_pin_accessors(cls: type) -> None:
    for name, accessor in PIN_ACCESSORS.items():
        if name not in vars(cls):
            setattr(cls, name, accessor)


def remove_pin_accessors(cls: type) -> None:
    for name, accessor in PIN_ACCESSORS.items():
        if vars(cls).get(name) is accessor:
            delattr(cls, name)


class _SharedAttribute:
    """A class attribute whose per-instance values every thread sees.

    A ``threading.local`` subclass (python-memcached's ``Client``, bmemcached's
    ``Protocol``) keeps its instance attributes per thread, so a Pin or an override set
    in one thread would be missing in the others. While patched, their classes hold
    these descriptors for :data:`PIN_ATTR` and :data:`OVERRIDE_ATTR`, backed by a
    ``WeakKeyDictionary``; other classes, and the hot path, are unchanged.
    """

    def __init__(self, name: str):
        self.name = name
        self.values: "weakref.WeakKeyDictionary" = _SHARED.setdefault(name, weakref.WeakKeyDictionary())
        # Its dict of weak references: empty while no client has a value, which __get__ asks
        # on every command; a WeakKeyDictionary's own len() is a Python call (about 1k instructions).
        self.refs: dict = self.values.data

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        """The value set for ``obj`` in any thread, else one set in this thread before
        patching, else None: what ``getattr(obj, name, None)`` gives for a missing attribute,
        without an AttributeError to raise and catch on every command of every client that
        has none (most). The dictionary is empty until some client of the process has one."""
        if obj is None:
            return self
        if self.refs:
            try:
                value = self.values.get(obj)
            except TypeError:  # unhashable or not weak-referenceable: per thread, as unpatched
                value = None
            if value is not None:
                return value
        return getattr(obj, "__dict__", _NO_DICT).get(self.name)  # set in this thread before patching

    def __set__(self, obj: Any, value: Any) -> None:
        try:
            self.values[obj] = value
        except TypeError:
            vars(obj)[self.name] = value

    def __delete__(self, obj: Any) -> None:
        try:
            self.values.pop(obj, None)
        except TypeError:
            pass
        getattr(obj, "__dict__", {}).pop(self.name, None)


_SHARED: Dict[str, "weakref.WeakKeyDictionary"] = {}  # kept across unpatch/patch
_NO_DICT: Dict[str, Any] = {}


def share_across_threads(cls: type) -> None:
    """Makes the Pin and override of ``cls``'s instances (``threading.local``) seen by every thread."""
    for name in (PIN_ATTR, OVERRIDE_ATTR):
        if name not in vars(cls):
            setattr(cls, name, _SharedAttribute(name))


def unshare_across_threads(cls: type) -> None:
    for name in (PIN_ATTR, OVERRIDE_ATTR):
        if isinstance(vars(cls).get(name), _SharedAttribute):
            delattr(cls, name)


def adopt(client: Any, owner: Any) -> None:
    """Makes ``owner``'s override and Pin apply to ``client``'s spans, as if ``owner``'s
    methods were outer calls (:func:`enter`): for the clients a pool creates itself."""
    setattr(client, OWNER_ATTR, weakref.ref(owner))


def for_span(client: Any) -> Scope:
    """The scope of a span (or a call) that ``client`` is about to make.

    The most specific setting wins: the client's own over its owner's (:func:`adopt`),
    and that over its outer clients', inner outer clients over outer ones. Most clients
    have none of the three: then no more than three attribute reads.
    """
    outer = _scope.get()
    owner = getattr(client, OWNER_ATTR, None)
    pin = getattr(client, PIN_ATTR, None)
    own = getattr(client, OVERRIDE_ATTR, None)
    if owner is None and pin is None and own is None:
        return outer
    if type(owner) is weakref.ref:  # not what a __getattr__ makes up
        owner = owner()
        if owner is not None:
            outer = _own(owner, outer)
    return _refine(outer, pin, own)


def enter_scope(scope: Scope) -> Any:
    """Puts ``scope`` in force for the spans that follow; :func:`leave` undoes it."""
    return _scope.set(scope)


def enter(client: Any) -> Any:
    """Puts ``client``'s override and Pin in force for the spans that follow (an outer
    client's, for the calls it makes); returns what :func:`leave` needs, None when nothing
    changed."""
    outer = _scope.get()
    try:
        scope = _own(client, outer)
    except Exception:
        log.debug("could not read the overrides of %r", type(client), exc_info=True)
        return None
    return None if scope is outer else _scope.set(scope)


def leave(token: Any) -> None:
    """Undoes :func:`enter`."""
    if token is not None:
        _scope.reset(token)


@contextlib.contextmanager
def covering(client: Any) -> Iterator[None]:
    """``with covering(pool):`` the override and Pin of ``client`` cover the spans of the block.

    For outer objects whose clients work outside their own methods: pylibmc's pools hand
    out a client in ``with pool.reserve() as mc:``, and the commands run in the block.
    """
    outer = _scope.get()
    token = enter(client)
    try:
        yield
    finally:
        try:
            leave(token)
        except ValueError:  # left in another context than it was entered in
            _scope.set(outer)
