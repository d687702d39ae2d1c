"""aiomcache: ``Client`` of one server; each operation runs to completion on the adapter's loop."""

import inspect

import aiomcache
from aiomcache.exceptions import ValidationException

from adapters import Adapter
from adapters import runner

run = runner()  # on the adapter's own loop, for the session


class AiomcacheAdapter(Adapter):
    client = "aiomcache"
    client_class = aiomcache.Client
    multi_server = False
    # Released versions connect over TCP only; the unreleased main branch adds Client(path=...).
    unix_socket = "path" in inspect.signature(aiomcache.Client.__init__).parameters
    bad_key_error = ValidationException

    def make(self, servers, **options):
        (address,) = servers
        if isinstance(address, str):
            return aiomcache.Client(path=address, **options)
        return aiomcache.Client(address[0], address[1], **options)

    def make_subclass(self, servers):
        class AppClient(aiomcache.Client):
            pass

        return AppClient(*servers[0])

    def close(self, client):
        run(client.close())

    def set(self, client, key, value):
        return run(client.set(key.encode(), value))

    def get(self, client, key):
        return run(client.get(key.encode()))

    def get_many(self, client, keys):
        values = run(client.multi_get(*[key.encode() for key in keys]))
        return {key: value for key, value in zip(keys, values) if value is not None}

    def delete(self, client, key):
        return run(client.delete(key.encode()))

    def incr(self, client, key, delta):
        return run(client.incr(key.encode(), delta))


ADAPTER = AiomcacheAdapter
