"""pylibmc: one ``Client`` for one server or several (libmemcached picks the server in C)."""

import re

import pylibmc

from adapters import Adapter
from adapters import spec

# Short timeouts: the contract's dead and silent servers must not take libmemcached's 4-5 s.
BEHAVIORS = {"connect_timeout": 2000, "receive_timeout": 2_000_000, "send_timeout": 2_000_000, "_poll_timeout": 2000}
_POINTER = re.compile(r"\(0x[0-9a-f]+\)")
# libmemcached 1.0 (pylibmc's wheels) and 1.1 (built from source, e.g. Debian's) differ in
# their messages and in one fault: a timed-out read.
LIBMEMCACHED_1_0 = pylibmc.libmemcached_version.startswith("1.0.")


class PylibmcAdapter(Adapter):
    client = "pylibmc"
    client_class = pylibmc.Client
    # pylibmc refuses keys over 250 bytes before sending; a key with a space is sent, and
    # with libmemcached 1.0 the server's CLIENT_ERROR leaves the connection out of step.
    bad_key = "k" * 251
    bad_key_error = ValueError
    timeout_options = {
        "behaviors": {"connect_timeout": 200, "_poll_timeout": 200, "receive_timeout": 200_000, "send_timeout": 200_000}
    }
    # libmemcached 1.0 reports a timed-out read as a miss: pylibmc returns the default, and
    # no error reaches Python for the span to record (documented). 1.1 raises on a `get`,
    # but its multi-get still returns what arrived, `{}`, with no error.
    timeout_misses = ("get", "get_many") if LIBMEMCACHED_1_0 else ("get_many",)
    # A failed server is retried after retry_timeout seconds (2 by default; 0 is refused).
    reconnect_options = {"behaviors": {"retry_timeout": 1}}
    miss_raises = ("incr",)  # pylibmc.NotFound
    cannot = {
        "noreply": "pylibmc sends no command without waiting but under its private `_noreply` behavior",
        "threads": "a pylibmc.Client is one libmemcached handle, never shared between threads: threads "
        "share a pool (tests/clients/pylibmc: test_threads_with_a_thread_mapped_pool)",
    }
    command_classes = (pylibmc.Client,)
    not_commands = {
        "clone": "a new client with the same servers and behaviors",
        "serialize": "encodes a value, locally",
        "deserialize": "decodes a value, locally",
        "disconnect_all": "closes the client's connections",
        "get_behaviors": "reads the client's settings",
        "set_behaviors": "changes the client's settings",
        "hash": "libmemcached's hash of a key, computed locally",
    }

    def outcome(self, op, client, *args):
        """As :meth:`Adapter.outcome`, without the address of the C client object that
        libmemcached 1.1 puts in its messages ("(0x55d0c4a3e2a0) CONNECTION FAILURE"),
        which differs between any two clients."""
        result = super().outcome(op, client, *args)
        if result[0] == "raised":
            return result[:2] + (_POINTER.sub("(0x...)", result[2]),)
        return result

    def make(self, servers, **options):
        behaviors = dict(BEHAVIORS, **options.pop("behaviors", {}))
        return pylibmc.Client([spec(s) for s in servers], behaviors=behaviors, **options)

    def make_subclass(self, servers):
        class AppClient(pylibmc.Client):
            pass

        return AppClient([spec(s) for s in servers], behaviors=BEHAVIORS)

    def close(self, client):
        client.disconnect_all()


ADAPTER = PylibmcAdapter
