"""pylibmc: one ``Client`` for one server or several (libmemcached picks the server in C)."""

import re

import pylibmc

from adapters import Adapter
from adapters import spec

# Short timeouts: the contract's dead and silent servers must not take libmemcached's 4-5 s.
BEHAVIORS = {"connect_timeout": 2000, "receive_timeout": 2_000_000, "send_timeout": 2_000_000, "_poll_timeout": 2000}
_POINTER = re.compile(r"\(0x[0-9a-f]+\)")


class PylibmcAdapter(Adapter):
    client = "pylibmc"
    client_class = pylibmc.Client
    # pylibmc refuses keys over 250 bytes before sending; a key with a space is sent, and
    # with libmemcached 1.0 the server's CLIENT_ERROR leaves the connection out of step.
    bad_key = "k" * 251
    bad_key_error = ValueError

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
