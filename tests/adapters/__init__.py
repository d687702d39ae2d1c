"""Adapters: what the contract suite (``tests/test_contract.py``) needs to know of a client.

Every client of ``ddtrace_memcached.registry`` has one module here, named after its
module, that defines a subclass of :class:`Adapter` named ``ADAPTER`` (the contract fails
for a registry client without one). The adapter speaks in a few generic operations
(``set``, ``get``, ``get_many``, ``delete``, ``incr``) with ``str`` keys and ``bytes``
values; it converts to what its client takes. An asyncio client's adapter is an
:class:`AsyncAdapter`: each operation is a coroutine, which the synchronous operations
run to completion on the adapter's own event loop, so the contract stays synchronous.

What a client cannot take is declared here, with the reason, never left to a silent
skip: :attr:`Adapter.cannot`.
"""

import asyncio
import importlib
import socket
from typing import Any
from typing import Awaitable
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

from ddtrace_memcached import registry

CLIENTS = [client.module for client in registry.CLIENTS]
"""The clients the contract runs for: every client of the registry, each with its adapter
in ``tests/adapters/<module>.py``."""

Address = Any  # ("127.0.0.1", port) or a unix socket path

SHARED_BY = 8
"""The most threads (or tasks) that share a client of ``Adapter.make_shared``."""


class Adapter:
    client = ""  # the client's name in DD_TRACE_MEMCACHED_CLIENTS, and its module
    client_class: type = object  # what make() builds (isinstance is checked)
    is_async = False  # an asyncio client (see AsyncAdapter)
    multi_server = True  # make() accepts several servers and routes each key to one
    unix_socket = True  # make() accepts a unix socket path
    # The resource of each generic operation's span.
    resources: Dict[str, str] = {
        "set": "set",
        "get": "get",
        "get_many": "get_many",
        "delete": "delete",
        "incr": "incr",
        "add": "add",
        "set_noreply": "set",
    }
    # The db.response.status_code of a miss: ``incr`` of a missing counter, ``delete`` of a
    # missing key, ``add`` of an existing one; None where the client's answer cannot tell
    # (the adapter says why). Never an error span either way.
    replies: Dict[str, Optional[str]] = {"incr": "NOT_FOUND", "delete": "NOT_FOUND", "add": "NOT_STORED"}
    # Operations that raise the client's own exception on a miss (the app handles it).
    miss_raises: Tuple[str, ...] = ()
    # Operations that a dead server makes raise (the others return a value, e.g. a miss):
    # their spans must be errors all the same (the contract's dead and killed server cases).
    dead_server_raises = ("set", "get", "get_many", "delete", "incr")
    # Values the client stores and gives back as they are, falsy ones included.
    values = (b"v", b"", b"0")
    # A key the client refuses before sending anything, and the exception type it raises.
    bad_key: Optional[str] = "bad key"
    bad_key_error: Optional[type] = None
    # What an app of this client needs in its environment under ddtrace-run / ddtrace.auto.
    auto_env: Dict[str, str] = {}
    # make() options with short timeouts (a fraction of a second), for a server that never answers.
    timeout_options: Dict[str, Any] = {}
    # Operations whose timeout the client reports as a miss: nothing raised, nothing to mark.
    timeout_misses: Tuple[str, ...] = ()
    # make() options under which the client tries a server that failed again at once, or
    # soon (the contract then polls, untraced, until the restarted server answers).
    reconnect_options: Dict[str, Any] = {}
    # The contract cases the client cannot take -> why: the case is skipped with that reason.
    cannot: Dict[str, str] = {}
    # The classes whose public methods the drift test checks: each must be a command of the
    # client module's tables, or in ``not_commands`` (method -> why it sends nothing).
    command_classes: Tuple[type, ...] = ()
    not_commands: Dict[str, str] = {}

    def __init__(self):
        self.module = importlib.import_module(self.client)

    # --- clients -------------------------------------------------------------------
    def make(self, servers: List[Address], **options) -> Any:
        """A client of ``servers`` (several only when ``multi_server``)."""
        raise NotImplementedError

    def make_shared(self, servers: List[Address]) -> Any:
        """A client that up to SHARED_BY threads (or an asyncio client's tasks) share, as apps do."""
        return self.make(servers)

    def make_subclass(self, servers: List[Address]) -> Any:
        """A client of a subclass of the client class, defined by the app."""
        raise NotImplementedError

    def close(self, client: Any) -> None:
        pass

    def wire_key(self, key: str) -> bytes:
        """The key as the client sends it to the server."""
        return key.encode()

    # --- the generic operations: python-memcached's API, which most clients share ----
    def set(self, client, key: str, value: bytes) -> Any:
        return client.set(key, value)

    def get(self, client, key: str) -> Any:
        """The value, or None on a miss."""
        return client.get(key)

    def get_many(self, client, keys: List[str]) -> Dict[str, bytes]:
        return client.get_multi(keys)

    def delete(self, client, key: str) -> Any:
        return client.delete(key)

    def incr(self, client, key: str, delta: int) -> Any:
        return client.incr(key, delta)

    def add(self, client, key: str, value: bytes) -> Any:
        return client.add(key, value)

    def set_noreply(self, client, key: str, value: bytes) -> Any:
        """``set`` sent without waiting for the reply (the contract's ``noreply`` case; a
        client that cannot send one declares it in ``cannot``)."""
        raise NotImplementedError

    def call(self, op: str, client, *args) -> Any:
        return getattr(self, op)(client, *args)

    def outcome(self, op: str, client, *args):
        """``("ok", result)`` or ``("raised", type name, message)``: what the app sees."""
        try:
            return ("ok", self.call(op, client, *args))
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))


class AsyncAdapter(Adapter):
    """An asyncio client: ``coroutine(op, client, *args)`` is the operation as the app awaits
    it (``a_<op>`` of the subclass); the synchronous operations run it to completion in a task
    of the adapter's loop, which copies the caller's context (its active span), as
    ``asyncio.run`` would. The loop is the same on every call, for the session: clients keep
    connections bound to it."""

    is_async = True
    loop: asyncio.AbstractEventLoop  # each subclass: asyncio.new_event_loop()

    def run(self, awaitable: Awaitable) -> Any:
        return self.loop.run_until_complete(awaitable)

    def coroutine(self, op: str, client, *args) -> Awaitable:
        return getattr(self, "a_" + op)(client, *args)

    def call(self, op: str, client, *args) -> Any:
        return self.run(self.coroutine(op, client, *args))

    def close(self, client: Any) -> None:
        self.run(self.a_close(client))

    async def a_close(self, client) -> None:
        await client.close()

    def set(self, client, key, value):
        return self.call("set", client, key, value)

    def get(self, client, key):
        return self.call("get", client, key)

    def get_many(self, client, keys):
        return self.call("get_many", client, keys)

    def delete(self, client, key):
        return self.call("delete", client, key)

    def incr(self, client, key, delta):
        return self.call("incr", client, key, delta)

    def add(self, client, key, value):
        return self.call("add", client, key, value)

    def set_noreply(self, client, key, value):
        return self.call("set_noreply", client, key, value)


def spec(address: Address) -> str:
    """The server string of pylibmc and bmemcached: ``host:port``, or a unix socket path as it is."""
    return address if isinstance(address, str) else "%s:%d" % tuple(address)


def load(client: str) -> Adapter:
    """The client's adapter; ImportError when the client (or its adapter) is not installed."""
    return importlib.import_module("adapters.%s" % client).ADAPTER()


def holder(servers: List[Address], wire_key: bytes) -> Address:
    """The one server of ``servers`` that holds ``wire_key``, asked directly over the wire."""
    found = []
    for address in servers:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family) as s:
            s.settimeout(5)
            s.connect(address)
            s.sendall(b"mg " + wire_key + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += s.recv(4096)
            if reply.startswith(b"HD") or reply.startswith(b"VA"):
                found.append(address)
    assert len(found) == 1, "%r is on %d servers" % (wire_key, len(found))
    return found[0]
