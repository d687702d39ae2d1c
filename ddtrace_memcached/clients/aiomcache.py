"""aiomcache: one span per awaited command of a ``Client`` (one server each).

Every command coroutine of ``aiomcache.client.FlagClient`` (``Client`` on 0.7, which
has no ``FlagClient``) is wrapped at class level with :func:`core.trace_async`, so
``aiomcache.Client``, ``FlagClient``, subclasses and clients created before patching
are traced, and the methods stay coroutine functions. The span starts when the command
is awaited and covers waiting for a pooled connection, any connect, and the round trip.
aiocache's ``MemcachedCache`` calls these methods, so it is traced as well.
"""

from functools import partial
import re
from typing import Iterator

import aiomcache.client
from aiomcache.exceptions import ClientException
from aiomcache.exceptions import ValidationException

from .. import core
from .. import wrapping
from ..commands import NOT_FOUND
from ..commands import NOT_FOUND_IF_FALSE
from ..commands import NOT_STORED_IF_FALSE
from ..commands import Keys
from ..commands import Read
from ..commands import command

COMMANDS = (
    # storage
    # replace/append/prepend return True, delete True, cas False, whether the key was there or not
    command("set", Keys.ONE),
    command("add", Keys.ONE, misses=NOT_STORED_IF_FALSE),
    command("replace", Keys.ONE),
    command("append", Keys.ONE),
    command("prepend", Keys.ONE),
    command("cas", Keys.ONE),
    # retrieval
    command("get", Keys.ONE, Read.ONE),
    command("gets", Keys.ONE, Read.ONE_WITH_CAS),
    command("multi_get", Keys.ARGS, Read.MANY, resource="get_many"),
    # deletion, arithmetic, touch
    command("delete", Keys.ONE),
    command("incr", Keys.ONE),
    command("decr", Keys.ONE),
    command("touch", Keys.ONE, misses=NOT_FOUND_IF_FALSE),
    # server
    command("stats", Keys.ARGS),
    command("version"),
    command("flush_all"),
)
"""Every command coroutine of ``FlagClient`` (``close`` sends nothing)."""

APP_COMMANDS = COMMANDS
"""What the app calls, in every release: the README's commands table is generated from it."""


# 0.8 moved the commands to FlagClient, Client's generic base. Wrapping Client there
# would add the methods to Client only, and leave FlagClient instances untraced.
COMMAND_CLASS = getattr(aiomcache.client, "FlagClient", aiomcache.client.Client)


class Aiomcache(core.Library):
    inner = False  # no hooks inside
    key_errors = (ValidationException,)
    # The ValidationException messages that quote the key after a colon:
    # "invalid key: b'...'", "trailing newline: b'...'", "key must be bytes: '...'".
    key_quote = re.compile(r"\A(?:invalid key|trailing newline|key must be bytes): (.*)\Z", re.S)

    def server(self, call, args, kwargs):
        pool = getattr(call.instance, "_pool", None)
        # Released versions keep _host/_port; the main branch (unix sockets, unreleased)
        # renames _host to _target, a host or a socket path, and sets _unix.
        target = getattr(pool, "_host", None) or getattr(pool, "_target", None)
        if target is None:
            return None
        if getattr(pool, "_unix", False):
            return target
        return (target, getattr(pool, "_port", None))

    def raised_reply(self, call, exc):
        # incr/decr of a missing counter: "Memcached b'incr' command failed: bytearray(b'NOT_FOUND')"
        if type(exc) is ClientException and str(exc).endswith("NOT_FOUND')"):
            return NOT_FOUND
        return None

    def found(self, call, result):
        # multi_get: a tuple in key order, None where a key was missed (b"" is a hit).
        if isinstance(result, tuple):
            return sum(1 for value in result if value is not None)
        return None


LIBRARY = Aiomcache()


def targets() -> Iterator[wrapping.Target]:
    """(class, method, wrapper) for everything :func:`patch` wraps; absent methods are skipped."""
    for cmd in COMMANDS:
        yield COMMAND_CLASS, cmd.method, partial(core.trace_async, LIBRARY, cmd)


def patch() -> None:
    wrapping.wrap_all(targets())


def unpatch() -> None:
    wrapping.unwrap_all(targets())
