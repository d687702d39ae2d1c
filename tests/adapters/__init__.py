"""Adapters: what the contract suite (``tests/test_contract.py``) needs to know of a client.

A client passes the whole contract by adding one module here that defines a subclass of
:class:`Adapter` named ``ADAPTER``, and its name to :data:`CLIENTS`. The adapter speaks
in a few generic operations (``set``, ``get``, ``get_many``, ``delete``, ``incr``) with
``str`` keys and ``bytes`` values; it converts to what its client takes. Async clients
run each operation to completion on the adapter's own event loop, so the contract stays
synchronous.
"""

import asyncio
import importlib
import socket
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional

CLIENTS = ["pymemcache", "pylibmc", "memcache", "bmemcached", "meta_memcache", "aiomcache", "emcache"]
"""The clients with an adapter, in ``tests/adapters/<client>.py``."""

Address = Any  # ("127.0.0.1", port) or a unix socket path


class Adapter:
    client = ""  # the client's name in DD_TRACE_MEMCACHED_CLIENTS, and its module
    client_class: type = object  # what make() builds (isinstance is checked)
    multi_server = True  # make() accepts several servers and routes each key to one
    unix_socket = True  # make() accepts a unix socket path
    # The resource of each generic operation's span.
    resources: Dict[str, str] = {"set": "set", "get": "get", "get_many": "get_many", "delete": "delete", "incr": "incr"}
    # Operations that a dead server makes raise (the others return a value, e.g. a miss):
    # their spans must be errors all the same (see ``Adapter.dead_server_error``).
    dead_server_raises = ("set", "get", "get_many", "delete", "incr")
    # Values the client stores and gives back as they are, falsy ones included.
    values = (b"v", b"", b"0")
    # A key the client refuses before sending anything, and the exception type it raises.
    bad_key: Optional[str] = "bad key"
    bad_key_error: Optional[type] = None
    # What an app of this client needs in its environment under ddtrace-run / ddtrace.auto.
    auto_env: Dict[str, str] = {}

    def __init__(self):
        self.module = importlib.import_module(self.client)

    # --- clients -------------------------------------------------------------------
    def make(self, servers: List[Address], **options) -> Any:
        """A client of ``servers`` (several only when ``multi_server``)."""
        raise NotImplementedError

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

    def call(self, op: str, client, *args) -> Any:
        return getattr(self, op)(client, *args)

    def outcome(self, op: str, client, *args):
        """``("ok", result)`` or ``("raised", type name, message)``: what the app sees."""
        try:
            return ("ok", self.call(op, client, *args))
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))


def spec(address: Address) -> str:
    """The server string of pylibmc and bmemcached: ``host:port``, or a unix socket path as it is."""
    return address if isinstance(address, str) else "%s:%d" % tuple(address)


def runner() -> Callable[[Any], Any]:
    """``run(coro)`` for an async client's adapter: runs ``coro`` to completion in a task of a
    new event loop, the same one on every call (clients keep connections bound to it); the
    task copies the caller's context (its active span), as ``asyncio.run`` would."""
    return asyncio.new_event_loop().run_until_complete


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
