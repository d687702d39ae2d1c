"""Wrapping and unwrapping class methods, symmetrically, for every client.

A client module lists what it wraps as ``(class, method, wrapper)`` targets. A wrapper is
either a wrapt wrapper ``(wrapped, instance, args, kwargs)``, installed as a
``wrapt.FunctionWrapper``, or a :class:`Hook`, installed as a plain function with the
method's own parameters (:func:`passing`; a coroutine function's is one too), which costs a
fifth of a ``FunctionWrapper`` call while nothing is traced (1.0k instructions against
5.4k, ``benchmarks/anatomy.py``).

wrapt wraps the commands of pymemcache, pylibmc and aiomcache: a command is the one layer
of theirs it passes, which fits the tracer-disabled budget, and wrapt's descriptor handling
keeps pylibmc's C methods right. Hooks are everything else: the hooks inside a client, the
methods below the app's command (libmc's ``get_raw``; meta-memcache's meta methods and
executor; bmemcached's protocol; emcache's requests), and the commands of the clients
whose commands pass those (python-memcached, bmemcached, meta-memcache, emcache, libmc),
which with wrapt's 5.4k on top cost 5.9k to 8.8k per command with the tracer disabled.

Ours are told apart from other wrappers (ddtrace's, an APM vendor's, the app's)
by their function, so that patching twice never stacks, and unpatching removes ours even
from under a wrapper that someone put on top of it.
"""

from functools import partial
import inspect
from types import MethodType
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Tuple
from typing import Union

from ddtrace.trace import tracer
import wrapt


class Hook:
    """A wrapper installed as a plain function: ``make(original)`` returns the function."""

    def __init__(self, make: Callable[[Callable], Callable]):
        self.make = make


def passing(original: Callable, active: Callable[[], Any], slow: Callable[..., Any], bound: bool = False) -> Callable:
    """A plain function for :class:`Hook`\\ s to install in place of the method ``original``,
    with its parameters: while ``active()`` is falsy it calls ``original`` with them, and
    otherwise returns ``slow(self, args, kwargs)``, the arguments bound as ``original``
    binds them (every one that has a position, by position; defaults included). With
    ``bound``, ``slow`` is a wrapt-style wrapper, called as ``slow(method, self, args, kwargs)``
    with ``original`` bound to ``self``: a ``partial`` of ``core.trace`` needs no Python frame
    of its own between this function and it.

    Why its parameters, not ``(self, *args, **kwargs)``: CPython (3.11+) neither
    specializes nor inlines a call to a function of ``*args``, nor the call it makes with
    them, and packs a tuple and a dict each time: 1.5k instructions more per method, paid
    on every command that passes it, traced or not (``benchmarks/anatomy.py``). A method
    whose parameters cannot be read (a C method) gets that function.

    The frame ends without the app's arguments (see ``core.trace``).
    """
    namespace = {"_ddtm_original": original, "_ddtm_active": active, "_ddtm_slow": slow, "_ddtm_bind": MethodType}
    source = _passing_source(original, namespace, bound)
    if source is None:

        def passing(self, *args, **kwargs):
            try:
                if not active():
                    return original(self, *args, **kwargs)
                if bound:
                    return slow(MethodType(original, self), self, args, kwargs)
                return slow(self, args, kwargs)
            finally:
                args = kwargs = None  # noqa: F841

        if not inspect.iscoroutinefunction(original):
            return passing

        async def passing_async(self, *args, **kwargs):
            try:
                return await passing(self, *args, **kwargs)
            finally:
                args = kwargs = None  # noqa: F841

        return passing_async
    name = original.__name__
    exec(compile(source, "<ddtrace_memcached: %s>" % getattr(original, "__qualname__", name), "exec"), namespace)
    return namespace[name]


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _passing_source(original: Callable, namespace: dict, bound: bool):
    """The source of :func:`passing`'s function for ``original``, its defaults put in
    ``namespace``; None when its parameters cannot be spelled."""
    try:
        parameters = list(inspect.signature(original, follow_wrapped=False).parameters.values())
        name = original.__name__
    except (TypeError, ValueError, AttributeError):
        return None
    if not name.isidentifier() or not parameters or parameters[0].kind not in _POSITIONAL:
        return None
    if any(p.name.startswith("_ddtm_") for p in parameters):
        return None
    spelled, forward, positional, keywords = [], [], [], []
    star = False
    for i, p in enumerate(parameters):
        default = ""
        if p.default is not p.empty:
            namespace["_ddtm_%d" % i] = p.default
            default = "=_ddtm_%d" % i
        if p.kind in _POSITIONAL:
            spelled.append(p.name + default)
            forward.append(p.name)
            positional.append(p.name)
            if p.kind is inspect.Parameter.POSITIONAL_ONLY and (
                i + 1 == len(parameters) or parameters[i + 1].kind is not inspect.Parameter.POSITIONAL_ONLY
            ):
                spelled.append("/")
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            star = True
            spelled.append("*" + p.name)
            forward.append("*" + p.name)
            positional.append("*" + p.name)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            if not star:
                star = True
                spelled.append("*")
            spelled.append(p.name + default)
            forward.append("%s=%s" % (p.name, p.name))
            keywords.append("%r: %s" % (p.name, p.name))
        else:  # VAR_KEYWORD
            spelled.append("**" + p.name)
            forward.append("**" + p.name)
            keywords.append("**" + p.name)
    own = [p.name for p in parameters[1:]]
    self = parameters[0].name
    method = "_ddtm_bind(_ddtm_original, %s), " % self if bound else ""
    # A coroutine function's stays one (inspect.iscoroutinefunction), awaiting what it calls.
    define, wait = ("async def", "await ") if inspect.iscoroutinefunction(original) else ("def", "")
    call = [
        "if not _ddtm_active():",
        "    return %s_ddtm_original(%s)" % (wait, ", ".join(forward)),
        "return %s_ddtm_slow(%s%s, (%s), {%s})"
        % (wait, method, self, "".join(a + ", " for a in positional[1:]), ", ".join(keywords)),
    ]
    lines = ["%s %s(%s):" % (define, name, ", ".join(spelled))]
    if own:  # the app's arguments, cleared when the frame ends
        lines += ["    try:"] + ["        " + line for line in call]
        lines += ["    finally:", "        %s = None" % " = ".join(own)]
    else:
        lines += ["    " + line for line in call]
    return "\n".join(lines) + "\n"


Target = Tuple[type, str, Union[Callable, Hook]]

TRACING = partial(getattr, tracer, "enabled")
"""Whether the tracer is enabled, asked in C: a FunctionWrapper's ``enabled`` (while the
tracer is disabled, wrapt calls the method without calling our wrapper: 5.3k instructions
added per command, not 6.6k), and :func:`passing`'s ``active`` for ``core.as_function``."""

_OURS: set = set()
_HOOKED = "_ddtrace_memcached_hook"  # set on the plain functions that Hooks make


def ours(function: Callable) -> Callable:
    """Marks ``function`` as one of our wrappers (also when bound with ``partial``)."""
    _OURS.add(function)
    return function


def is_ours(attribute: Any) -> bool:
    if getattr(attribute, _HOOKED, False):
        return True
    wrapper = getattr(attribute, "_self_wrapper", None)
    return wrapper in _OURS or getattr(wrapper, "func", None) in _OURS


def _inner(attribute: Any) -> Any:
    """What ``attribute`` wraps: a FunctionWrapper's or a Hook's original, else None."""
    if isinstance(attribute, wrapt.FunctionWrapper):
        return attribute.__wrapped__
    if getattr(attribute, _HOOKED, False):
        return attribute.__wrapped__
    return None


def _install(cls: type, method: str, original: Any, wrapper: Union[Callable, Hook]) -> None:
    if isinstance(wrapper, Hook):
        function = wrapper.make(original)
        function.__wrapped__ = original
        for name in ("__name__", "__qualname__", "__doc__", "__module__"):
            try:
                setattr(function, name, getattr(original, name))
            except (AttributeError, TypeError):
                pass
        setattr(function, _HOOKED, True)
        setattr(cls, method, function)
    else:
        wrapt.wrap_object(cls, method, wrapt.FunctionWrapper, (wrapper,), {"enabled": TRACING})


def in_chain(attribute: Any) -> bool:
    """Whether our wrapper is anywhere in ``attribute``'s chain of wrappers."""
    while attribute is not None:
        if is_ours(attribute):
            return True
        attribute = _inner(attribute)
    return False


def wrap(cls: type, method: str, wrapper: Union[Callable, Hook]) -> None:
    """Wraps ``cls.method`` unless our wrapper is already anywhere in its chain.

    Inherited methods are wrapped on ``cls`` itself (a C base class's included);
    a method the class does not have is skipped.
    """
    attribute = vars(cls).get(method)
    if (attribute is None and not hasattr(cls, method)) or in_chain(attribute):
        return
    _install(cls, method, getattr(cls, method), wrapper)


def unwrap(cls: type, method: str) -> None:
    """Removes our wrapper, also from under a wrapper someone put on top of it."""
    outer, attribute = None, vars(cls).get(method)
    while attribute is not None:
        inner = _inner(attribute)
        if inner is None:
            return
        if is_ours(attribute):
            if outer is not None:
                outer.__wrapped__ = inner
            elif _inherited(cls, method, inner):
                delattr(cls, method)  # it was wrapped from a base class: inherit it again
            else:
                setattr(cls, method, inner)
            return
        outer, attribute = attribute, inner


def _inherited(cls: type, method: str, original: Any) -> bool:
    for base in cls.__mro__[1:]:
        if method in vars(base):
            return vars(base)[method] is original
    return False


def wrap_all(targets: Iterable[Target]) -> None:
    for cls, method, wrapper in targets:
        wrap(cls, method, wrapper)


def unwrap_all(targets: Iterable[Target]) -> None:
    for cls, method, _ in targets:
        unwrap(cls, method)


class Replaced:
    """Attributes replaced while patched (how a client module quiets ddtrace's built-in
    integration for its client), each put back by :meth:`restore`, newest first."""

    def __init__(self) -> None:
        self._saved: list = []  # (object, attribute, value before)

    def __bool__(self) -> bool:
        return bool(self._saved)

    def save(self, obj: Any, name: str, value: Any) -> None:
        """Records that ``obj.name`` was ``value``, for an attribute changed elsewhere."""
        self._saved.append((obj, name, value))

    def set(self, obj: Any, name: str, value: Any) -> None:
        self.save(obj, name, getattr(obj, name, None))
        setattr(obj, name, value)

    def restore(self) -> None:
        while self._saved:
            obj, name, value = self._saved.pop()
            setattr(obj, name, value)
