"""Wrapping and unwrapping class methods with wrapt, symmetrically, for every client.

A client module lists what it wraps as ``(class, method, wrapper)`` targets. Ours are
told apart from other wrappers (ddtrace's, an APM vendor's, the app's) by their
function, so that patching twice never stacks, and unpatching removes ours even from
under a wrapper that someone put on top of it.
"""

from typing import Any
from typing import Callable
from typing import Iterable
from typing import Tuple

import wrapt

Target = Tuple[type, str, Callable]

_OURS: set = set()


def ours(function: Callable) -> Callable:
    """Marks ``function`` as one of our wrappers (also when bound with ``partial``)."""
    _OURS.add(function)
    return function


def is_ours(attribute: Any) -> bool:
    wrapper = attribute._self_wrapper
    return wrapper in _OURS or getattr(wrapper, "func", None) in _OURS


def wrap(cls: type, method: str, wrapper: Callable) -> None:
    """Wraps ``cls.method`` unless our wrapper is already anywhere in its chain.

    Inherited methods are wrapped on ``cls`` itself (a C base class's included);
    a method the class does not have is skipped.
    """
    attribute = vars(cls).get(method)
    if attribute is None and not hasattr(cls, method):
        return
    while isinstance(attribute, wrapt.FunctionWrapper):
        if is_ours(attribute):
            return
        attribute = attribute.__wrapped__
    wrapt.wrap_function_wrapper(cls, method, wrapper)


def unwrap(cls: type, method: str) -> None:
    """Removes our wrapper, also from under a wrapper someone put on top of it."""
    outer, attribute = None, vars(cls).get(method)
    while isinstance(attribute, wrapt.FunctionWrapper):
        if is_ours(attribute):
            if outer is not None:
                outer.__wrapped__ = attribute.__wrapped__
            elif _inherited(cls, method, attribute.__wrapped__):
                delattr(cls, method)  # it was wrapped from a base class: inherit it again
            else:
                setattr(cls, method, attribute.__wrapped__)
            return
        outer, attribute = attribute, attribute.__wrapped__


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
