"""emcache: a cluster client of one or several nodes; each operation runs to completion on
the adapter's loop."""

import asyncio

import emcache
import emcache.client

from adapters import Adapter
from adapters import runner

CLOSE_TIMEOUT = 0.5
run = runner()  # on the adapter's own loop, for the session


def addresses(servers):
    return [
        emcache.MemcachedUnixSocketPath(s) if isinstance(s, str) else emcache.MemcachedHostAddress(*s) for s in servers
    ]


class EmcacheAdapter(Adapter):
    client = "emcache"
    client_class = emcache.client._Client  # what create_client() returns
    bad_key_error = ValueError  # "Key has invalid charcters", raised before anything is sent
    # ddtrace-run and ddtrace.auto unload the modules imported while they start when gevent
    # is installed (DataDog/dd-trace-py#10550): asyncio is then loaded twice, and emcache's
    # close() fails on the other copy's CancelledError, traced or not. ddtrace's own switch:
    auto_env = {"DD_UNLOAD_MODULES_FROM_SITECUSTOMIZE": "0"}

    def make(self, servers, **options):
        options.setdefault("timeout", 1.0)
        return run(emcache.create_client(addresses(servers), **options))

    def make_subclass(self, servers):
        class AppClient(emcache.client._Client):
            pass

        # create_client() builds the module's _Client: the app's subclass stands in for it.
        emcache.client._Client = AppClient
        try:
            return self.make(servers)
        finally:
            emcache.client._Client = AppClient.__bases__[0]

    def close(self, client):
        # emcache (1.3.3, untraced too) can wait forever to close a client whose node is
        # down: its pool's reconnect task outlives the cancel. Bounded, so tests go on.
        try:
            run(asyncio.wait_for(client.close(), CLOSE_TIMEOUT))
        except asyncio.TimeoutError:
            pass

    def set(self, client, key, value):
        run(client.set(key.encode(), value))
        return True  # emcache returns None, and raises when the value is not stored

    def get(self, client, key):
        item = run(client.get(key.encode()))
        return None if item is None else item.value

    def get_many(self, client, keys):
        items = run(client.get_many([key.encode() for key in keys]))
        return {key.decode(): item.value for key, item in items.items()}

    def delete(self, client, key):
        run(client.delete(key.encode()))
        return True  # a miss raises NotFoundCommandError

    def incr(self, client, key, delta):
        return run(client.increment(key.encode(), delta))


ADAPTER = EmcacheAdapter
