"""libmc: one ``libmc.Client`` for one server or several (a hash ring in C++); threads share
a ``ThreadedClient`` (a pool of workers), as libmc's own clients are for one thread each.

libmc raises for no failure: a command returns False or None, and ``get_last_error()``
gives its code. The adapter raises that code, as an app that checks it does: an exception
named after libmc's constant (``MC_RETURN_RECV_ERR``...), which the span's ``error.type``
(``libmc.MC_RETURN_RECV_ERR``) must name too. So the contract's outcomes, traced and
untraced, compare the codes as well as the results.
"""

import libmc

from adapters import Adapter
from adapters import spec

# What make() takes beyond the constructor's arguments: libmc's config() settings.
CONFIG = {
    "poll_timeout": libmc.MC_POLL_TIMEOUT,  # ms to wait for an answer (300 by default)
    "connect_timeout": libmc.MC_CONNECT_TIMEOUT,  # ms per connection attempt (10 by default)
    "retry_timeout": libmc.MC_RETRY_TIMEOUT,  # s before a dead server is tried again (5 by default)
}


class LibmcError(Exception):
    """A failure libmc reported through ``get_last_error()``; a subclass per code."""


ERRORS = {
    getattr(libmc, name): type(name, (LibmcError,), {})
    for name in dir(libmc)
    if name.startswith("MC_RETURN_") and name != "MC_RETURN_OK"
}


def checked(client, result):
    """``result``, or libmc's failure raised. A ``ThreadedClient``'s ``get_last_error()`` is
    that of whichever worker answers it: only a ``Client``'s is read."""
    if isinstance(client, libmc.Client):
        code = client.get_last_error()
        if code != libmc.MC_RETURN_OK:
            raise ERRORS[code]("%s (%d)" % (client.get_last_strerror(), code))
    return result


class LibmcAdapter(Adapter):
    client = "libmc"
    client_class = libmc.Client
    # delete returns True whether the key was there or not: no miss to tell.
    replies = {**Adapter.replies, "delete": None}
    # libmc refuses a key over 250 bytes or with a space or a control character without
    # sending it: alone, with get_last_error() -2 (raised here), but in a get_multi beside
    # other keys with 0 and the key left out, which an app cannot tell and the contract's
    # random scripts would then count as a clean call. tests/clients/libmc covers both, and
    # the TypeError of a key that is not a str.
    bad_key = None
    # A server that never answers: libmc gives up after its poll timeout (get_last_error() -6).
    timeout_options = {"poll_timeout": 200}
    # A server that failed is tried again after retry_timeout seconds (5 by default).
    reconnect_options = {"retry_timeout": 1}
    command_classes = (libmc.Client,)
    not_commands = {
        "config": "changes the client's settings",
        "update_servers": "replaces the client's servers (a pool's; a Client's returns False)",
        "get_host_by_key": "names the server a key maps to, a hash computed locally",
        "get_realtime_host_by_key": "names the live server a key goes to (may reconnect it; sends no command)",
        "get_last_error": "reads the code the last command left",
        "get_last_strerror": "reads the name of that code",
        "normalize_key": "encodes and prefixes a key, locally",
        "toggle_flush_all_feature": "allows or forbids flush_all, locally",
        "reset": "forgets the thread the client belongs to",
        "clear_thread_ident": "forgets the thread the client belongs to",
    }

    def make(self, servers, **options):
        """``poll_timeout``, ``connect_timeout`` and ``retry_timeout`` go to ``config()``."""
        config = {CONFIG[name]: options.pop(name) for name in list(options) if name in CONFIG}
        client = libmc.Client([spec(s) for s in servers], **options)
        for option, value in config.items():
            client.config(option, value)
        return client

    def make_shared(self, servers):
        return libmc.ThreadedClient([spec(s) for s in servers])

    def make_subclass(self, servers):
        class AppClient(libmc.Client):
            pass

        return AppClient([spec(s) for s in servers])

    def set(self, client, key, value):
        return checked(client, client.set(key, value))

    def get(self, client, key):
        return checked(client, client.get(key))

    def get_many(self, client, keys):
        return checked(client, client.get_multi(keys))

    def delete(self, client, key):
        return checked(client, client.delete(key))

    def incr(self, client, key, delta):
        return checked(client, client.incr(key, delta))

    def add(self, client, key, value):
        return checked(client, client.add(key, value))

    def set_noreply(self, client, key, value):
        """libmc sends without waiting per client (``noreply=True``): a second client of the same servers."""
        noreply = libmc.Client(client.servers, noreply=True)
        return checked(noreply, noreply.set(key, value))


ADAPTER = LibmcAdapter
