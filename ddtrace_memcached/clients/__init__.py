"""One module per memcached client library, named after the library's module.

Each defines its command table, a ``core.Library`` subclass, ``targets()``, ``patch()``
and ``unpatch()``, and imports its library at the top: :mod:`ddtrace_memcached.patch`
imports a client module only once the app has imported that library.
"""
