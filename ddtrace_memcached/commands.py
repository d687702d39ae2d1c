"""The traced commands as data, and the helpers that name them and read their keys.

Nothing here creates spans: these functions say what a call is called, which keys
it sends and how many it found, so that ``patch.py`` stays about span lifecycle.
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


class Command(NamedTuple):
    method: str  # the attribute of ``Client``
    resource: str  # the span's resource: aliases are reported under the name they alias
    keys: Keys
    read: Read
    since: tuple  # the first pymemcache version that has it


def _command(method, keys=Keys.NONE, read=Read.NONE, since=(3, 4), resource=None):
    return Command(method, resource or method, keys, read, since)


COMMANDS = (
    # storage
    _command("set", Keys.ONE),
    _command("set_many", Keys.MAPPING),
    _command("set_multi", Keys.MAPPING, resource="set_many"),
    _command("add", Keys.ONE),
    _command("replace", Keys.ONE),
    _command("append", Keys.ONE),
    _command("prepend", Keys.ONE),
    _command("cas", Keys.ONE),
    # retrieval
    _command("get", Keys.ONE, Read.ONE),
    _command("get_many", Keys.MANY, Read.MANY),
    _command("get_multi", Keys.MANY, Read.MANY, resource="get_many"),
    _command("gets", Keys.ONE, Read.ONE_WITH_CAS),
    _command("gets_many", Keys.MANY, Read.MANY),
    # deletion, arithmetic, touch
    _command("delete", Keys.ONE),
    _command("delete_many", Keys.MANY),
    _command("delete_multi", Keys.MANY, resource="delete_many"),
    _command("incr", Keys.ONE),
    _command("decr", Keys.ONE),
    _command("touch", Keys.ONE),
    # server
    _command("stats", Keys.ARGS),
    _command("version"),
    _command("flush_all"),
    _command("quit"),
    _command("cache_memlimit"),
    _command("shutdown", since=(3, 5)),
    _command("raw_command", Keys.RAW, since=(4, 0)),
)
"""Every method of ``pymemcache.client.base.Client`` that talks to a server."""


def commands_for(version: tuple) -> tuple:
    """The commands that pymemcache ``version`` has."""
    return tuple(c for c in COMMANDS if version >= c.since)


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


_ONE_WITH_CAS = Read.ONE_WITH_CAS  # a global is quicker to reach than an enum's member

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


def found(result: Any) -> Optional[int]:
    """The number of keys a ``get_many``/``gets_many`` found."""
    return len(result) if type(result) is dict or isinstance(result, Mapping) else None
