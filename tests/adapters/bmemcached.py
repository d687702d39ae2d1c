"""python-binary-memcached: ``bmemcached.Client`` (a ``ReplicatingClient``) for one server,
``DistributedClient`` for several (a ``ReplicatingClient`` writes every key everywhere).
Its ``Protocol`` objects are ``threading.local``: threads share a client."""

import bmemcached

from adapters import Adapter
from adapters import spec


class BmemcachedAdapter(Adapter):
    client = "bmemcached"
    client_class = bmemcached.Client
    # A dead server never raises: commands return False/None/{} (the spans are errors all the same).
    dead_server_raises = ()
    # The binary protocol's incr creates a missing counter, and delete returns True whether
    # the key was there or not: neither is a miss the client can tell.
    replies = {**Adapter.replies, "incr": None, "delete": None}
    # The binary protocol has no key charset: every str key is sent (the server refuses
    # empty or long ones, see tests/clients/bmemcached).
    cannot = {**Adapter.cannot, "noreply": "the binary protocol client always waits for the reply"}
    bad_key = None
    timeout_options = {"socket_timeout": 0.2}
    # After a second failure in a row, a server is not tried for 5 s (enable_retry_delay).
    reconnect_options = {"retry_delay": False}
    command_classes = (bmemcached.ReplicatingClient, bmemcached.DistributedClient, bmemcached.protocol.Protocol)
    not_commands = {
        "disconnect_all": "closes the client's sockets",
        "enable_retry_delay": "changes the client's reconnection setting",
        "set_servers": "replaces the client's servers",
        "serialize": "Protocol: encodes a value, locally",
        "deserialize": "Protocol: decodes a value, locally",
        "disconnect": "Protocol: closes its socket",
        "set_retry_delay": "Protocol: changes its reconnection setting",
        "split_host_port": "Protocol: parses a server string",
    }

    def make(self, servers, **options):
        """``retry_delay=False``: ``enable_retry_delay(False)`` (a single server's client)."""
        retry_delay = options.pop("retry_delay", True)
        options.setdefault("socket_timeout", 2)
        if len(servers) == 1:
            client = bmemcached.Client([spec(servers[0])], **options)
            if not retry_delay:
                client.enable_retry_delay(False)
            return client
        assert retry_delay, "DistributedClient has no enable_retry_delay"
        return bmemcached.DistributedClient([spec(s) for s in servers], **options)

    def make_subclass(self, servers):
        class AppClient(bmemcached.Client):
            pass

        return AppClient([spec(s) for s in servers], socket_timeout=2)

    def close(self, client):
        client.disconnect_all()


ADAPTER = BmemcachedAdapter
