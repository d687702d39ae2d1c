"""python-memcached: one ``memcache.Client`` for one or several servers (a ``threading.local``:
threads share it)."""

import memcache

from adapters import Adapter


def spec(address) -> str:
    """python-memcached's server string for a (host, port) or a unix socket path."""
    if isinstance(address, str):
        return "unix:%s" % address
    return "%s:%d" % address


class MemcacheAdapter(Adapter):
    client = "memcache"
    client_class = memcache.Client
    bad_key_error = memcache.Client.MemcachedKeyCharacterError
    # A dead server never raises: commands return 0/None (the spans are errors all the same).
    dead_server_raises = ()
    # delete returns 1 whether the key was there or not
    replies = {**Adapter.replies, "delete": None}
    timeout_options = {"socket_timeout": 0.2}
    # A server marked dead is skipped for dead_retry seconds (30 by default).
    reconnect_options = {"dead_retry": 0}
    command_classes = (memcache.Client,)
    not_commands = {
        "check_key": "validates a key, locally",
        "debuglog": "writes the client's debug log",
        "disconnect_all": "closes the client's sockets",
        "forget_dead_hosts": "clears the client's dead marks",
        "reset_cas": "clears the client's cas ids",
        "set_servers": "replaces the client's server list",
    }

    def make(self, servers, **options):
        options.setdefault("socket_timeout", 2)
        return memcache.Client([spec(s) for s in servers], **options)

    def make_subclass(self, servers):
        class AppClient(memcache.Client):
            pass

        return AppClient([spec(s) for s in servers], socket_timeout=2)

    def close(self, client):
        client.disconnect_all()

    def set_noreply(self, client, key, value):
        return client.set(key, value, noreply=True)


ADAPTER = MemcacheAdapter
