"""Commands as data, and the helpers that name them and read their keys.

Each client module keeps its command table as rows of :func:`command`. Nothing here
creates spans: these functions say what a call is called, which keys it sends and how
many it found, so that ``core.py`` stays about span lifecycle.
"""

from collections.abc import Collection
from collections.abc import Mapping
import enum
from typing import Any
from typing import NamedTuple
from typing import Optional

QUERY_MAX_LENGTH = 1000
"""``memcached.query`` is cut to this many characters and then ends with ``...``."""

TRUNCATED = "..."


class Keys(enum.Enum):
    """Where a command's keys are in its arguments; the value names the parameter."""

    NONE = None
    ONE = "key"  # the first argument
    MANY = "keys"  # the first argument, a collection of keys
    MAPPING = "values"  # the first argument, a dict of key -> value
    ARGS = "*args"  # every positional argument (``stats``)
    RAW = "command"  # the first line of ``raw_command``'s command


class Read(enum.Enum):
    """How a command's result says how many keys were found."""

    NONE = "none"
    ONE = "one"  # get: a hit or a miss, told apart with a sentinel default
    ONE_WITH_CAS = "one_with_cas"  # gets: the same, in a (value, cas) pair
    MANY = "many"  # get_many / gets_many: the dict of the keys found
    VALUE = "value"  # get without a default: None is a miss (a stored None cannot be told apart)


class Command(NamedTuple):
    method: str  # the attribute of the client class
    resource: str  # the span's resource: aliases are reported under the name they alias
    keys: Keys
    read: Read
    since: tuple  # the first version of the client library that has it


def command(method: str, keys: Keys = Keys.NONE, read: Read = Read.NONE, since: tuple = (), resource=None) -> Command:
    """A row of a client's command table."""
    return Command(method, resource or method, keys, read, since)


def parse_version(version: str) -> tuple:
    """``"4.0.0"`` -> ``(4, 0, 0)``; what is not a digit is ignored (``"1.6.3rc1"``)."""
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def for_version(table: tuple, version: tuple) -> tuple:
    """The commands of ``table`` that the installed ``version`` of the library has."""
    return tuple(c for c in table if version >= c.since)


def _key_text(key: Any, prefix: bytes) -> str:
    if isinstance(key, str):
        return prefix.decode("utf-8", "backslashreplace") + key
    if isinstance(key, bytes):
        return (prefix + key).decode("utf-8", "backslashreplace")
    return "<%s>" % type(key).__name__


def _first_arg(args: tuple, kwargs: dict, name: str) -> Any:
    if args:
        return args[0]
    return kwargs.get(name)


def query(command: Command, args: tuple, kwargs: dict, key_prefix: bytes) -> str:
    """``memcached.query``: the command and the keys as sent, never a value.

    Iterators are left alone (reading them would consume the app's keys); the
    result is cut at :data:`QUERY_MAX_LENGTH`.
    """
    parts = [command.resource]
    kind = command.keys
    if kind is Keys.ONE:
        parts.append(_key_text(_first_arg(args, kwargs, kind.value), key_prefix))
    elif kind is Keys.MANY or kind is Keys.MAPPING:
        keys = _first_arg(args, kwargs, kind.value)
        if isinstance(keys, Collection):
            # Stop early: a get_many of 100,000 keys must not build a huge string.
            length = len(command.resource)
            for key in keys:
                text = _key_text(key, key_prefix)
                parts.append(text)
                length += len(text) + 1
                if length > QUERY_MAX_LENGTH:
                    break
    elif kind is Keys.ARGS:
        parts.extend(_key_text(arg, b"") for arg in args)
    elif kind is Keys.RAW:
        raw = _first_arg(args, kwargs, kind.value)
        if isinstance(raw, (str, bytes)):
            # Storage commands carry their value after the first line: drop it.
            parts = [_key_text(raw, b"").split("\r", 1)[0].split("\n", 1)[0]]
    return _cut(" ".join(parts))


def _cut(text: str) -> str:
    if len(text) > QUERY_MAX_LENGTH:
        return text[: QUERY_MAX_LENGTH - len(TRUNCATED)] + TRUNCATED
    return text


REDACTED = "<redacted: DD_TRACE_MEMCACHED_COMMAND_ENABLED is off>"


def input_error_message(message: str, keys_enabled: bool) -> str:
    """The ``error.message`` of a ``MemcacheIllegalInputError``, which quotes what it refused.

    ``Key contains whitespace: b'...'`` quotes a key: it is kept only when key capture is
    on. Whatever is quoted is cut like a query.
    """
    head, colon, _ = message.partition(": ")
    if colon and not keys_enabled and "key" in head.lower():
        return head + colon + REDACTED
    return _cut(message)


_ONE_WITH_CAS, _VALUE = Read.ONE_WITH_CAS, Read.VALUE  # globals are quicker to reach than enum members

MISS = object()
"""Passed as ``get``/``gets``'s default so that a miss cannot look like a stored value."""


def with_miss_sentinel(args: tuple, kwargs: dict):
    """Swaps the caller's ``default`` for :data:`MISS`; returns args, kwargs, default.

    Arguments that would not bind are left as they are, so the client raises the same
    ``TypeError`` it raises untraced.
    """
    if len(args) == 1 and "default" not in kwargs:  # get(key), the common call: no copy
        return (args[0], MISS), kwargs, None
    if len(args) >= 2:
        return (args[0], MISS) + args[2:], kwargs, args[1]
    kwargs = dict(kwargs)
    default = kwargs.get("default")
    kwargs["default"] = MISS
    return args, kwargs, default


def restore_default(command: Command, result: Any, default: Any):
    """Undoes :func:`with_miss_sentinel`; returns the app's result and the row count."""
    if command.read is _ONE_WITH_CAS:
        if isinstance(result, tuple) and len(result) == 2 and result[0] is MISS:
            return (default, result[1]), 0
        return result, 1
    if result is MISS:
        return default, 0
    return result, 1


def found(command: Command, result: Any) -> Optional[int]:
    """The number of keys a read found: the size of a ``Read.MANY`` mapping, 0 or 1 for
    ``Read.VALUE``; None when the result does not say."""
    if command.read is _VALUE:
        return 0 if result is None else 1
    return len(result) if type(result) is dict or isinstance(result, Mapping) else None
