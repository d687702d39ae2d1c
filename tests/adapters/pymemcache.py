"""pymemcache: ``Client`` for one server, ``HashClient`` for several."""

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheIllegalInputError

from adapters import Adapter


class PymemcacheAdapter(Adapter):
    client = "pymemcache"
    client_class = Client
    bad_key_error = MemcacheIllegalInputError
    # A HashClient of one dead node raises on every command (ignore_exc is off).
    dead_server_raises = Adapter.dead_server_raises

    def make(self, servers, **options):
        options.setdefault("connect_timeout", 2)
        options.setdefault("timeout", 2)
        if len(servers) == 1:
            return Client(servers[0], **options)
        return HashClient(servers, **options)

    def make_subclass(self, servers):
        class AppClient(Client):
            pass

        return AppClient(servers[0])

    def close(self, client):
        client.close()

    def set(self, client, key, value):
        return client.set(key, value, noreply=False)

    def get(self, client, key):
        return client.get(key)

    def get_many(self, client, keys):
        return client.get_many(keys)

    def delete(self, client, key):
        return client.delete(key, noreply=False)

    def incr(self, client, key, delta):
        return client.incr(key, delta, noreply=False)


ADAPTER = PymemcacheAdapter
