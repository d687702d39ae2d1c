"""Datadog tracing for memcached, for every Python client.

Every command a memcached client sends to a server becomes one span, with one span
model whatever the client: ``get``, ``set``, ``get_many``, ``incr``, ``stats`` and the
rest, including on clients created before tracing was enabled. The clients, by the
name of the module you import:

- ``pymemcache`` (>= 3.4): every command of ``Client``, also through
  ``PooledClient``, ``HashClient`` (a span per node) and ``RetryingClient`` (a
  span per attempt);
- ``pylibmc`` (>= 1.6): every command of ``Client`` and ``c[key]``, ``key in c``,
  ``c[key] = v``, ``del c[key]``; clones and pooled clients. The host is
  libmemcached's choice, ``client.addresses[client.hash(key)]``;
- ``memcache``, python-memcached (>= 1.60): every command of ``Client``; the host is
  the server ``Client._get_server`` picked;
- ``bmemcached``, python-binary-memcached (>= 0.31): ``Client``
  (``ReplicatingClient``) and ``DistributedClient``, a span per server round trip;
- ``meta_memcache``, meta-memcache (>= 4.0): ``CacheClient`` with any router and
  pool provider, a span per server round trip, named after the method called;
- ``aiomcache`` (>= 0.8) and ``emcache`` (>= 1.3.1), asyncio: every command
  coroutine; an emcache multi-key command over several nodes also gets a child
  span per node round trip.

Where a client sends one call to several servers with no place to see each
round trip (pylibmc's and python-memcached's multi-key commands), the call is one
span that names no host, none being right, and has the metric
``memcached.servers``. Failures a client swallows instead of raising (a dead
server for python-memcached and bmemcached, meta-memcache's ``*_DUE_TO_ERROR``
results) are error spans; the result the app gets is left as it is.

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

If the installed ddtrace lacks what the registration needs, one warning on the
``ddtrace.contrib.memcached`` logger says so, ddtrace's built-in pymemcache/pylibmc
integrations stand in, and ``ddtrace_memcached.patch()`` still works by hand.
``python -m ddtrace_memcached`` reports what is enabled and by whom.

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
- ``out.host`` and ``server.address``: the server the command went to (for a
  hash ring, the node; for a unix socket, its path), and the metric
  ``network.destination.port``. ``out.host`` is the ``peer.service`` precursor;
- ``db.row_count`` on reads: the keys found. A stored falsy value is a hit, a
  miss that returns ``get``'s ``default`` is not;
- ``memcached.retry.attempt`` (from 1) on the spans of a ``RetryingClient``;
- on asyncio clients, the span starts when the command is awaited, under the
  awaiting task's span; a cancellation (``CancelledError`` from ``wait_for`` or
  ``task.cancel()``) finishes it with ``memcached.cancelled:true``, not as an
  error: the caller gave up, memcached did not fail;
- errors: ``error.type``, ``error.message`` and ``error.stack``. The exception
  reaches the application unchanged. Where a client's message quotes the key it
  refused (pymemcache, pylibmc, python-memcached, aiomcache), the quote is replaced
  on the span by ``<redacted: ...>`` unless ``memcached.query`` is enabled, and it
  is cut at 1000 characters;
- ``memcached.query``: the command and the keys as the app gave them (with a
  client's ``key_prefix``),
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
