"""emcache: a cluster client of one or several nodes; each operation a coroutine on the
adapter's loop."""

import asyncio

import emcache
import emcache.client

from adapters import AsyncAdapter

CLOSE_TIMEOUT = 0.5


def addresses(servers):
    return [
        emcache.MemcachedUnixSocketPath(s) if isinstance(s, str) else emcache.MemcachedHostAddress(*s) for s in servers
    ]


class EmcacheAdapter(AsyncAdapter):
    client = "emcache"
    client_class = emcache.client._Client  # what create_client() returns
    loop = asyncio.new_event_loop()
    bad_key_error = ValueError  # "Key has invalid charcters", raised before anything is sent
    miss_raises = ("incr", "delete", "add")  # NotFoundCommandError, NotStoredStorageCommandError
    # ddtrace-run and ddtrace.auto unload the modules imported while they start when gevent
    # is installed (DataDog/dd-trace-py#10550): asyncio is then loaded twice, and emcache's
    # close() fails on the other copy's CancelledError, traced or not. ddtrace's own switch:
    auto_env = {"DD_UNLOAD_MODULES_FROM_SITECUSTOMIZE": "0"}
    timeout_options = {"timeout": 0.2}
    # Its pool reconnects in the background (backing off from 1 s); a call meanwhile times out.
    reconnect_options = {"timeout": 0.2}
    cannot = {
        "threads": "an asyncio client belongs to its event loop: its tasks share it (test_tasks_share_one_client)",
    }
    command_classes = (emcache.client._Client,)
    not_commands = {
        "close": "closes the nodes' connection pools",
        "cluster_managment": "the cluster's node health, read locally",
    }

    def make(self, servers, **options):
        options.setdefault("timeout", 1.0)
        return self.run(emcache.create_client(addresses(servers), **options))

    def make_shared(self, servers):
        return self.make(servers, max_connections=4)

    def make_subclass(self, servers):
        class AppClient(emcache.client._Client):
            pass

        # create_client() builds the module's _Client: the app's subclass stands in for it.
        emcache.client._Client = AppClient
        try:
            return self.make(servers)
        finally:
            emcache.client._Client = AppClient.__bases__[0]

    async def a_close(self, client):
        # emcache (1.3.3, untraced too) can wait forever to close a client whose node is
        # down: its pool's reconnect task outlives the cancel. Bounded, so tests go on.
        try:
            await asyncio.wait_for(client.close(), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            pass

    async def a_set(self, client, key, value):
        await client.set(key.encode(), value)
        return True  # emcache returns None, and raises when the value is not stored

    async def a_get(self, client, key):
        item = await client.get(key.encode())
        return None if item is None else item.value

    async def a_get_many(self, client, keys):
        items = await client.get_many([key.encode() for key in keys])
        return {key.decode(): item.value for key, item in items.items()}

    async def a_delete(self, client, key):
        await client.delete(key.encode())
        return True  # a miss raises NotFoundCommandError

    async def a_incr(self, client, key, delta):
        return await client.increment(key.encode(), delta)

    async def a_add(self, client, key, value):
        await client.add(key.encode(), value)
        return True  # a miss raises NotStoredStorageCommandError

    async def a_set_noreply(self, client, key, value):
        return await client.set(key.encode(), value, noreply=True)


ADAPTER = EmcacheAdapter
