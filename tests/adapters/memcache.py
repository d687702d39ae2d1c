"""python-memcached: one ``memcache.Client`` for one or several servers."""

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

    def make(self, servers, **options):
        options.setdefault("socket_timeout", 2)
        return memcache.Client([spec(s) for s in servers], **options)

    def make_subclass(self, servers):
        class AppClient(memcache.Client):
            pass

        return AppClient([spec(s) for s in servers], socket_timeout=2)

    def close(self, client):
        client.disconnect_all()


ADAPTER = MemcacheAdapter
