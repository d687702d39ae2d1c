"""meta-memcache: ``CacheClient.cache_client_from_servers`` over one or several servers.

Its spans are named after the method the app called: ``delta`` for the contract's
``incr``, ``get_many`` for ``multi_get``. Unix sockets need a socket factory of the
app's own (the library's builder makes TCP sockets only). Threads share a client: its
pools hand each a connection of its own.
"""

import socket

from meta_memcache import CacheClient
from meta_memcache import ConnectionPool
from meta_memcache import ServerAddress
from meta_memcache import connection_pool_factory_builder
from meta_memcache.protocol import SetMode

from adapters import SHARED_BY
from adapters import Adapter

TIMEOUT = 2


def server_address(address) -> ServerAddress:
    if isinstance(address, str):
        return ServerAddress(host=address, port=0)
    return ServerAddress(host=address[0], port=address[1])


def unix_pool_factory(address: ServerAddress) -> ConnectionPool:
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(address.host)
        return s

    return ConnectionPool(server=str(address), socket_factory_fn=connect, initial_pool_size=1, max_pool_size=3)


def pool_factory(servers, **options):
    if any(isinstance(address, str) for address in servers):
        return unix_pool_factory
    options.setdefault("connection_timeout", TIMEOUT)
    options.setdefault("recv_timeout", TIMEOUT)
    return connection_pool_factory_builder(**options)


class MetaMemcacheAdapter(Adapter):
    client = "meta_memcache"
    client_class = CacheClient
    resources = {**Adapter.resources, "incr": "delta", "add": "set"}  # add: set(set_mode=SetMode.ADD)
    # Keys are encoded on the wire (base64, or a hash when long): every key is accepted.
    bad_key = None
    timeout_options = {"connection_timeout": 0.2, "recv_timeout": 0.2}
    # A pool whose server refused a connection is marked down for mark_down_period_s (5 s).
    reconnect_options = {"mark_down_period_s": 0}
    command_classes = (CacheClient,)
    not_commands = {
        "cache_client_from_servers": "builds a client",
        "cache_client_with_gutter_from_servers": "builds a client",
        "ephemeral_cache_client_from_servers": "builds a client",
        "get_counters": "the pools' counters, read locally",
    }

    def make(self, servers, **options):
        return CacheClient.cache_client_from_servers(
            [server_address(a) for a in servers], pool_factory(servers, **options)
        )

    def make_shared(self, servers):
        return self.make(servers, max_pool_size=SHARED_BY)

    def make_subclass(self, servers):
        class AppClient(CacheClient):
            pass

        client = self.make(servers)
        return AppClient(router=client.router)

    def set(self, client, key, value):
        return client.set(key, value, ttl=0)

    def get(self, client, key):
        return client.get(key)

    def get_many(self, client, keys):
        found = client.multi_get(keys)
        return {k.key: v for k, v in found.items() if v is not None}

    def delete(self, client, key):
        return client.delete(key)

    def incr(self, client, key, delta):
        return client.delta(key, delta)

    def add(self, client, key, value):
        return client.set(key, value, ttl=0, set_mode=SetMode.ADD)

    def set_noreply(self, client, key, value):
        return client.set(key, value, ttl=0, no_reply=True)


ADAPTER = MetaMemcacheAdapter
