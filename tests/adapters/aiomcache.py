"""aiomcache: ``Client`` of one server; each operation a coroutine on the adapter's loop."""

import asyncio
import inspect

import aiomcache
from aiomcache.exceptions import ValidationException

from adapters import AsyncAdapter


class AiomcacheAdapter(AsyncAdapter):
    client = "aiomcache"
    client_class = aiomcache.Client
    loop = asyncio.new_event_loop()
    multi_server = False
    # Released versions connect over TCP only; the unreleased main branch adds Client(path=...).
    unix_socket = "path" in inspect.signature(aiomcache.Client.__init__).parameters
    bad_key_error = ValidationException
    miss_raises = ("incr",)  # ClientException: NOT_FOUND
    # delete returns True whether the key was there or not
    replies = {**AsyncAdapter.replies, "delete": None}
    cannot = {
        "noreply": "aiomcache always waits for the reply",
        "server_restart": "aiomcache 0.8.2 spins forever reading a pooled connection whose server died (untraced "
        "too): tests/clients/aiomcache kills and restarts a server with a client per phase",
        "timeout": "aiomcache has no timeout of its own: a caller's asyncio.wait_for cancels the command, "
        "a cancellation and not an error (tests/clients/aiomcache)",
        "threads": "an asyncio client belongs to its event loop: its tasks share it (test_tasks_share_one_client)",
    }
    command_classes = (aiomcache.Client, getattr(aiomcache.client, "FlagClient", aiomcache.Client))
    not_commands = {"close": "closes the pool's connections"}

    def make(self, servers, **options):
        (address,) = servers
        if isinstance(address, str):
            return aiomcache.Client(path=address, **options)
        return aiomcache.Client(address[0], address[1], **options)

    def make_shared(self, servers):
        return self.make(servers, pool_size=4)

    def make_subclass(self, servers):
        class AppClient(aiomcache.Client):
            pass

        return AppClient(*servers[0])

    async def a_set(self, client, key, value):
        return await client.set(key.encode(), value)

    async def a_get(self, client, key):
        return await client.get(key.encode())

    async def a_get_many(self, client, keys):
        values = await client.multi_get(*[key.encode() for key in keys])
        return {key: value for key, value in zip(keys, values) if value is not None}

    async def a_delete(self, client, key):
        return await client.delete(key.encode())

    async def a_incr(self, client, key, delta):
        return await client.incr(key.encode(), delta)

    async def a_add(self, client, key, value):
        return await client.add(key.encode(), value)


ADAPTER = AiomcacheAdapter
