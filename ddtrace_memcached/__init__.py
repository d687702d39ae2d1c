"""Datadog tracing for memcached, for every Python client.

Every command a memcached client sends to a server becomes one span, with one span
model whatever the client: ``get``, ``set``, ``get_many``, ``incr``, ``stats`` and the
rest, including on clients created before tracing was enabled. The clients, by the
name of the module you import:

DOCSTRING_CLIENTS

Enabling
~~~~~~~~
Install the package next to ``ddtrace``; nothing else changes::

    pip install ddtrace-memcached

``ddtrace-run`` and ``import ddtrace.auto`` enable it by default::

    ddtrace-run python app.py

In code, before or after the client is imported::

    import ddtrace
    ddtrace.patch(memcached=True)

or without ddtrace's patching machinery::

    import ddtrace_memcached
    ddtrace_memcached.patch()      # ddtrace_memcached.unpatch() undoes it

The package registers the ``memcached`` integration with ddtrace through a
``ddtrace_memcached.pth`` file; a process that never imports ddtrace imports
nothing of it but one small module. Where ``.pth`` files are not processed
(``python -S``, some bundlers), ``import ddtrace_memcached`` registers it too.

Each client is patched when the app imports it: importing one client never imports
another, and a client that is not installed is skipped.

ddtrace's built-in ``pymemcache`` and ``pylibmc`` integrations
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
While this integration covers a client it takes precedence: ddtrace's own
integration for that client is not patched, or is switched off if it already was,
so each command gets exactly one span. ``unpatch()`` hands back to it. To leave a
client to ddtrace's built-in integration, leave it out of
``DD_TRACE_MEMCACHED_CLIENTS`` (e.g. ``DD_TRACE_MEMCACHED_CLIENTS=pymemcache`` keeps
``pylibmc`` with the built-in). To trace no memcached command at all, disable ours
and the built-ins: ``DD_TRACE_MEMCACHED_ENABLED=false``,
``DD_TRACE_PYMEMCACHE_ENABLED=false`` and ``DD_TRACE_PYLIBMC_ENABLED=false``.

Spans
~~~~~
- name ``memcached.command`` (schema v0 and v1), type ``cache``, resource the
  command (``get_multi`` is reported as ``get_many``, ``set_multi`` as
  ``set_many``, ``delete_multi`` as ``delete_many``);
- ``component:memcached``, ``span.kind:client``, ``db.system:memcached``;
- ``out.host`` and ``server.address``: the server the command went to (for
  ``HashClient``, the node; for a unix socket, its path), and the metric
  ``network.destination.port``. ``out.host`` is the ``peer.service`` precursor;
- ``db.row_count`` on reads: the keys found. A stored falsy value is a hit, a
  miss that returns ``get``'s ``default`` is not;
- ``memcached.retry.attempt`` (from 1) on the spans of a ``RetryingClient``;
- errors: ``error.type``, ``error.message`` and ``error.stack``. The exception
  reaches the application unchanged. pymemcache's messages about an illegal key
  quote the key: on the span, the quote is replaced by ``<redacted: ...>`` unless
  ``memcached.query`` is enabled, and it is cut at 1000 characters;
- ``memcached.query``: the command and the keys as sent (with ``key_prefix``),
  only when enabled. Never a value: ``raw_command`` keeps its first line only.
  It is cut at 1000 characters, and then ends with ``...``.

Settings
~~~~~~~~
.. list-table::
   :header-rows: 1

   * - Environment variable
     - ``ddtrace.config.memcached``
     - Default
     - Meaning
   * - ``DD_TRACE_MEMCACHED_ENABLED``
     -
     - ``true``
     - Enable under ``ddtrace-run`` / ``import ddtrace.auto``. Also
       ``DD_PATCH_MODULES=memcached:false``.
   * - ``DD_TRACE_MEMCACHED_CLIENTS``
     -
     - every client above
     - The clients this integration traces: module names, separated by commas
       (case-insensitive; unknown names are ignored). A client left out is not
       traced by it, and stays with ddtrace's built-in integration if it has one.
   * - ``DD_MEMCACHED_SERVICE``
     - ``service``
     - ``memcached`` (schema v0), ``DD_SERVICE`` (schema v1)
     - The spans' service.
   * - ``DD_TRACE_MEMCACHED_COMMAND_ENABLED``
     - ``command_enabled``
     - ``false``
     - Add ``memcached.query`` with the command's keys.

ddtrace's own settings apply as usual: ``DD_TRACE_SPAN_ATTRIBUTE_SCHEMA``,
``DD_TRACE_PEER_SERVICE_DEFAULTS_ENABLED``, ``DD_TRACE_PEER_SERVICE_MAPPING``,
``DD_TRACE_REMOVE_INTEGRATION_SERVICE_NAMES_ENABLED``, ``DD_SERVICE_MAPPING``,
``DD_TRACE_SAFE_INSTRUMENTATION_ENABLED`` (each client's supported versions are
listed above; an unsupported one is left untraced).

Per-client overrides
~~~~~~~~~~~~~~~~~~~~
On any client object of any client (pools, hash rings and retrying clients
included), and on every supported ddtrace version::

    ddtrace_memcached.override(client, service="sessions-cache", tags={"team": "web"})

An override on an outer client (pymemcache's ``PooledClient``, ``HashClient`` or
``RetryingClient``, a pool) applies to every span it causes. ddtrace's ``Pin.override(client, service=..., tags=...)``
is honored too (``ddtrace.trace.Pin`` on ddtrace 3.x). The most specific wins: a
client's ``override`` over its ``Pin``, and a client's own settings over those of
the clients that wrap it.

Debug logs go to the ``ddtrace.contrib.memcached`` logger (``DD_TRACE_DEBUG=true``).
The integration's own failures are logged there and never reach the application.
"""

import _ddtrace_memcached_hook

from .overrides import override
from .patch import get_versions
from .patch import patch
from .patch import unpatch

__version__ = "0.1.0"
__all__ = ["patch", "unpatch", "override", "get_versions", "__version__"]

_ddtrace_memcached_hook.install()
