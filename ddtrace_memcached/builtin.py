"""Keeps ddtrace's built-in ``pymemcache`` integration quiet while ours is patched.

The built-in swaps pymemcache's classes for ``wrapt.ObjectProxy`` subclasses and
traces in ``_WrapperBase._trace_function_as_command``. While ours is patched:

- its classes are swapped back (its own ``unpatch`` has a typo that breaks ``HashClient``);
- ``HashClient.client_class``, which its module points at its proxy, is reset;
- proxies that already exist forward their calls untraced, to our spans;
- its ``patch()`` does nothing.

:func:`unpatch` puts everything back as it was, so the built-in resumes.
"""

import logging
import sys

import pymemcache
import pymemcache.client.base
import pymemcache.client.hash
import wrapt

log = logging.getLogger("ddtrace.contrib.memcached")

_saved: list = []  # (object, attribute, value before we changed it)


def _set(obj, name, value) -> None:
    _saved.append((obj, name, getattr(obj, name, None)))
    setattr(obj, name, value)


def _bypass_trace(wrapped, instance, args, kwargs):
    """Runs the command the built-in was about to trace, without its span."""
    func = args[0]
    return func(*args[2:], **kwargs)


def _skip_patch(wrapped, instance, args, kwargs):
    log.debug("ddtrace's pymemcache integration not patched: the memcached integration is")


_BUILTIN_CLIENT = "ddtrace.contrib.internal.pymemcache.client"


def original_classes() -> tuple:
    """pymemcache's own ``Client`` and ``HashClient``, even while the built-in's proxies stand in."""
    builtin_client = sys.modules.get(_BUILTIN_CLIENT)
    if builtin_client is not None:
        return builtin_client._Client, builtin_client._HashClient
    return pymemcache.client.base.Client, pymemcache.client.hash.HashClient


def silence() -> None:
    """Called by our ``patch()``."""
    if _saved:
        return
    original_client, original_hash_client = original_classes()
    # Importing the built-in's client module points HashClient at its proxy.
    client_class = original_hash_client.client_class
    try:
        from ddtrace.contrib.internal.pymemcache import client as builtin_client
        from ddtrace.contrib.internal.pymemcache import patch as builtin_patch
    except ImportError:
        return
    _saved.append((original_hash_client, "client_class", client_class))
    original_hash_client.client_class = original_client
    if getattr(pymemcache, "_datadog_patch", False):
        _set(pymemcache, "_datadog_patch", False)
        _set(pymemcache.client.base, "Client", original_client)
        _set(pymemcache.client.hash, "Client", original_client)
        _set(pymemcache.client.hash, "HashClient", original_hash_client)
    _set(builtin_patch, "patch", wrapt.FunctionWrapper(builtin_patch.patch, _skip_patch))
    base = builtin_client._WrapperBase
    _set(base, "_trace_function_as_command", wrapt.FunctionWrapper(base._trace_function_as_command, _bypass_trace))


def restore() -> None:
    """Called by our ``unpatch()``."""
    while _saved:
        obj, name, value = _saved.pop()
        setattr(obj, name, value)
