"""Commands as data, and the helpers that read them: names, keys, redaction, misses.

Each client module keeps its command table as rows of :func:`command`: the method, the
resource its span gets, where its keys sit among the arguments, how its result counts
the keys found, and where a ``noreply`` flag sits. Nothing here creates spans: these
functions say what a call is called, which keys it sends and what it found, so that the
span lifecycle (``core.py``) stays free of any client's argument conventions.
"""

from collections.abc import Collection
from collections.abc import Mapping
import dataclasses
import enum
import re
from typing import Any
from typing import Optional
from typing import Pattern
from typing import Tuple

from .records import record

QUERY_MAX_LENGTH = 1000
"""``memcached.query`` and quoted error messages are cut to this many characters (then ``...``)."""

TRUNCATED = "..."


class Keys(enum.Enum):
    """What a command's key argument holds."""

    NONE = None
    ONE = "key"  # one key
    MANY = "keys"  # a collection of keys
    MAPPING = "values"  # a dict of key -> value
    PAIRS = "key_values"  # a collection of (key, anything) pairs
    ARGS = "*args"  # every positional argument (``stats``)
    RAW = "command"  # the first line of ``raw_command``'s command


class Read(enum.Enum):
    """How a command's result says how many keys were found."""

    NONE = "none"
    ONE = "one"  # get: a hit or a miss, told apart with a sentinel default
    ONE_WITH_CAS = "one_with_cas"  # gets: the same, in a (value, cas) pair
    MANY = "many"  # get_many / gets_many: the dict of the keys found
    VALUE = "value"  # get without a default: None is a miss (a stored None cannot be told apart)


@record
class Arg:
    """Where an argument sits: its position among the positional arguments (``self``
    excluded; None for a keyword-only parameter), or its name as a keyword."""

    position: Optional[int]
    name: str
    default: Any = None  # when the call does not pass it


# The replies of memcached's text protocol that mean "not there" or "not stored": a command
# that gets one did its job, and its span is no error (``db.response.status_code``). A plain
# ``set`` is stored whatever was there: it has none.
NOT_FOUND = "NOT_FOUND"
NOT_STORED = "NOT_STORED"
EXISTS = "EXISTS"  # cas: the item changed since it was read

Misses = Tuple[Tuple[Any, str], ...]
"""``(result, reply)`` pairs: a command that returns ``result`` got that reply."""

NOT_STORED_IF_FALSE: Misses = ((False, NOT_STORED),)
NOT_FOUND_IF_FALSE: Misses = ((False, NOT_FOUND),)
NOT_FOUND_IF_NONE: Misses = ((None, NOT_FOUND),)


@record
class Command:
    method: str  # the attribute of the client class
    resource: str  # the span's resource: aliases are reported under the name they alias
    keys: Keys
    read: Read
    since: tuple  # the first version of the client library that has it
    key: Optional[Arg]  # where the keys sit (``keys`` says what they are)
    prefix: Optional[Arg]  # where a per-call key prefix sits (pylibmc's ``key_prefix``)
    noreply: Optional[Arg]  # where a per-call ``noreply`` flag sits
    misses: Misses  # results that mean a miss (see NOT_FOUND)
    reads_result: bool  # the result says something: the keys found (``read``), or a miss
    nests: bool  # calls other commands of its client, which are then part of its span


def command(
    method: str,
    keys: Keys = Keys.NONE,
    read: Read = Read.NONE,
    since: tuple = (),
    resource: Optional[str] = None,
    key: Optional[Arg] = None,
    prefix: Optional[Arg] = None,
    noreply: Optional[Arg] = None,
    misses: Misses = (),
    nests: bool = False,
) -> Command:
    """A row of a client's command table. ``key`` defaults to the first argument, named
    after ``keys`` (``key``, ``keys``, ``values``...)."""
    if key is None and keys not in (Keys.NONE, Keys.ARGS):
        key = Arg(0, keys.value)
    return Command(
        method,
        resource or method,
        keys,
        read,
        since,
        key,
        prefix,
        noreply,
        misses,
        read is not Read.NONE or bool(misses),
        nests,
    )


def as_part_of(cmd: Command, app_command: Command) -> Command:
    """A round trip's ``cmd`` as part of the app's call that caused it: named after it, and
    reading its result as the app's command would. Where its keys sit stays its own."""
    return dataclasses.replace(
        cmd,
        resource=app_command.resource,
        read=app_command.read,
        misses=app_command.misses,
        reads_result=app_command.reads_result,
    )


def parse_version(version: str) -> tuple:
    """``"4.0.0"`` -> ``(4, 0, 0)``; each part's leading digits (``"1.6.3rc1"`` -> ``(1, 6, 3)``)."""
    return tuple(int(re.match(r"\d*", part).group() or 0) for part in version.split(".")[:3])


def for_version(table: tuple, version: tuple) -> tuple:
    """The commands of ``table`` that the installed ``version`` of the library has."""
    return tuple(c for c in table if version >= c.since)


def argument(args: tuple, kwargs: dict, where: Arg) -> Any:
    """The argument at ``where``, or its default when the call did not pass it."""
    position = where.position
    if position is not None and len(args) > position:
        return args[position]
    return kwargs.get(where.name, where.default)


def key_of(cmd: Command, args: tuple, kwargs: dict) -> Any:
    """The key (``Keys.ONE``) or the keys' container that the call passed, or None."""
    return None if cmd.key is None else argument(args, kwargs, cmd.key)


def keys_of(cmd: Command, args: tuple, kwargs: dict) -> Optional[Collection]:
    """The keys of a multi-key call, or None when they may not be read (an iterator would
    be consumed) or the command has none."""
    found = key_of(cmd, args, kwargs)
    if cmd.keys is Keys.ONE:
        return None if found is None else (found,)
    if isinstance(found, Mapping):
        return found.keys()
    if not isinstance(found, Collection) or isinstance(found, (str, bytes)):
        return None
    if cmd.keys is Keys.PAIRS:
        return [pair[0] for pair in found]
    return found


def _key_text(key: Any, prefix: Any = b"") -> str:
    key = getattr(key, "key", key)  # a client's key object (meta-memcache's Key): its key
    if isinstance(prefix, str):
        prefix = prefix.encode("utf-8", "backslashreplace")
    elif not isinstance(prefix, bytes):
        prefix = b""
    if isinstance(key, str):
        return prefix.decode("utf-8", "backslashreplace") + key
    if isinstance(key, bytes):
        return (prefix + key).decode("utf-8", "backslashreplace")
    return "<%s>" % type(key).__name__


def query(cmd: Command, args: tuple, kwargs: dict, key_prefix: Any = b"") -> str:
    """``memcached.query``: the command and the keys as sent, never a value.

    Iterators are left alone (reading them would consume the app's keys); the result is
    cut at :data:`QUERY_MAX_LENGTH`. A per-call prefix (``cmd.prefix``) replaces the client's.
    """
    if cmd.prefix is not None:
        key_prefix = argument(args, kwargs, cmd.prefix) or b""
    parts = [cmd.resource]
    kind = cmd.keys
    if kind is Keys.ARGS:
        parts.extend(_key_text(arg) for arg in args)
    elif kind is Keys.RAW:
        raw = key_of(cmd, args, kwargs)
        if isinstance(raw, (str, bytes)):
            # Storage commands carry their value after the first line: drop it.
            parts = [_key_text(raw).split("\r", 1)[0].split("\n", 1)[0]]
    elif kind is Keys.ONE:
        parts.append(_key_text(key_of(cmd, args, kwargs), key_prefix))
    elif kind is not Keys.NONE:
        keys = keys_of(cmd, args, kwargs)
        # Stop early: a get_many of 100,000 keys must not build a huge string.
        length = len(cmd.resource)
        for key in keys or ():
            text = _key_text(key, key_prefix)
            parts.append(text)
            length += len(text) + 1
            if length > QUERY_MAX_LENGTH:
                break
    return cut(" ".join(parts))


def cut(text: str) -> str:
    """``text`` cut to :data:`QUERY_MAX_LENGTH` characters, ending with ``...`` if it was."""
    if len(text) > QUERY_MAX_LENGTH:
        return text[: QUERY_MAX_LENGTH - len(TRUNCATED)] + TRUNCATED
    return text


REDACTED = "<redacted: DD_TRACE_MEMCACHED_COMMAND_ENABLED is off>"


def redact(message: str, quote: Optional[Pattern], keys_enabled: bool) -> str:
    """The ``error.message`` of an error whose message may quote a key.

    ``quote`` finds the quoted key: the first of its groups that matched is replaced with
    :data:`REDACTED`, unless key capture is on. The message is then cut like a query.
    """
    if not keys_enabled and quote is not None:
        found = quote.search(message)
        if found is not None:
            for group in range(1, (found.re.groups or 0) + 1):
                if found.start(group) >= 0:
                    message = message[: found.start(group)] + REDACTED + message[found.end(group) :]
                    break
    return cut(message)


HEAD_QUOTE: Pattern = re.compile(r"\A(?:(?!: ).)*key(?:(?!: ).)*: (.*)\Z", re.I | re.S)
"""``Head naming a key: <the key>``, pymemcache's ``MemcacheIllegalInputError`` form."""


# --- misses: a sentinel default tells a miss from a stored value -------------------------

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


def restore_default(cmd: Command, result: Any, default: Any):
    """Undoes :func:`with_miss_sentinel`; returns the app's result and the row count."""
    if cmd.read is _ONE_WITH_CAS:
        if isinstance(result, tuple) and len(result) == 2 and result[0] is MISS:
            return (default, result[1]), 0
        return result, 1
    if result is MISS:
        return default, 0
    return result, 1


def without_sentinel(result: Any, default: Any) -> Any:
    """The app's result when :func:`restore_default` could not run: never the sentinel."""
    if result is MISS:
        return default
    if isinstance(result, tuple) and result and result[0] is MISS:
        return (default,) + result[1:]
    return result


def reply(cmd: Command, result: Any) -> Optional[str]:
    """The miss a command's ``result`` means (:data:`NOT_FOUND`...), or None. ``False`` is
    not ``0``: results are told apart by type too."""
    for value, name in cmd.misses:
        if result is value or (type(result) is type(value) and result == value):
            return name
    return None


def found(cmd: Command, result: Any) -> Optional[int]:
    """The number of keys a read found: the size of a ``Read.MANY`` mapping, 0 or 1 for
    ``Read.VALUE``; None when the result does not say."""
    if cmd.read is _VALUE:
        return 0 if result is None else 1
    return len(result) if type(result) is dict or isinstance(result, Mapping) else None
