"""One module per memcached client library, named after the library's module.

Each defines ``SUPPORTED`` (a version range), ``get_version()``, ``patch()`` and
``unpatch()``, and imports its library at the top: :mod:`ddtrace_memcached.patch`
imports a client module only once the app has imported that library.
"""
