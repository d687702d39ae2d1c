"""Datadog tracing for memcached, for every Python client: the ``memcached`` integration.

Every call the app makes on a memcached client becomes a ``memcached.command`` span, with
one span model whatever the client (``registry.CLIENTS`` lists them). ``ddtrace-run``,
``import ddtrace.auto`` and ``ddtrace.patch(memcached=True)`` enable it; so does
:func:`patch`. The README is the documentation: the clients and what is traced of each,
the span model, the settings, overrides, and how to add a client.

Importing this package imports nothing of ddtrace or of a client: the ``.pth`` hook
(``_ddtrace_memcached_hook``) reads :mod:`.registry` while ddtrace itself is importing.
"""

import _ddtrace_memcached_hook

from .patch import get_versions
from .patch import patch
from .patch import unpatch

__version__ = "0.1.0"
__all__ = ["patch", "unpatch", "override", "get_versions", "__version__"]


def __getattr__(name: str):
    if name == "override":  # imports ddtrace: only once asked for
        from .overrides import override

        return override
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


_ddtrace_memcached_hook.install()
