"""pymemcache: ``Client`` for one server, ``HashClient`` for several; threads share a
``PooledClient`` (a pooled ``HashClient`` for several servers)."""

from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheIllegalInputError

from adapters import SHARED_BY
from adapters import Adapter

try:
    from pymemcache.client.retrying import RetryingClient
except ImportError:  # pymemcache < 3.5
    RETRYING_CLIENTS: tuple = ()
else:
    RETRYING_CLIENTS = (RetryingClient,)


class PymemcacheAdapter(Adapter):
    client = "pymemcache"
    client_class = Client
    bad_key_error = MemcacheIllegalInputError
    # A HashClient of one dead node raises on every command (ignore_exc is off).
    dead_server_raises = Adapter.dead_server_raises
    timeout_options = {"connect_timeout": 0.2, "timeout": 0.2}
    command_classes = (Client, PooledClient, HashClient) + RETRYING_CLIENTS
    not_commands = {
        "check_key": "validates and encodes a key, locally",
        "close": "closes the client's sockets",
        "disconnect_all": "close's other name",
        "add_server": "HashClient: a node joins the ring",
        "remove_server": "HashClient: a node leaves the ring",
    }

    def make(self, servers, **options):
        options.setdefault("connect_timeout", 2)
        options.setdefault("timeout", 2)
        if len(servers) == 1:
            return Client(servers[0], **options)
        return HashClient(servers, **options)

    def make_shared(self, servers):
        # A pool raises rather than waits when every client is taken: one per thread.
        options = dict(max_pool_size=SHARED_BY, connect_timeout=2, timeout=2)
        if len(servers) == 1:
            return PooledClient(servers[0], **options)
        return HashClient(servers, use_pooling=True, **options)

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

    def add(self, client, key, value):
        return client.add(key, value, noreply=False)

    def set_noreply(self, client, key, value):
        return client.set(key, value)  # the client's default_noreply, True by default


ADAPTER = PymemcacheAdapter
