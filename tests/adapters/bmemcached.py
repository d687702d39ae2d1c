"""python-binary-memcached: ``bmemcached.Client`` (a ``ReplicatingClient``) for one server,
``DistributedClient`` for several (a ``ReplicatingClient`` writes every key everywhere)."""

import bmemcached

from adapters import Adapter
from adapters import spec


class BmemcachedAdapter(Adapter):
    client = "bmemcached"
    client_class = bmemcached.Client
    # A dead server never raises: commands return False/None/{} (the spans are errors all the same).
    dead_server_raises = ()
    # The binary protocol has no key charset: every str key is sent (the server refuses
    # empty or long ones, see test_bmemcached.py).
    bad_key = None

    def make(self, servers, **options):
        options.setdefault("socket_timeout", 2)
        if len(servers) == 1:
            return bmemcached.Client([spec(servers[0])], **options)
        return bmemcached.DistributedClient([spec(s) for s in servers], **options)

    def make_subclass(self, servers):
        class AppClient(bmemcached.Client):
            pass

        return AppClient([spec(s) for s in servers], socket_timeout=2)

    def close(self, client):
        client.disconnect_all()


ADAPTER = BmemcachedAdapter
