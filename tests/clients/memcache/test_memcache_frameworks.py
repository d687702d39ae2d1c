"""python-memcached's real users, end to end under ``ddtrace-run``: dogpile.cache's
``dogpile.cache.memcached`` backend and cachelib's ``MemcachedCache`` (see
``framework_steps``: each cache call checked for its own memcached spans).
"""

import pytest

from framework_steps import DOGPILE_STEPS
from framework_steps import assert_steps
from framework_steps import run_steps


def test_dogpile_memcached_backend(memcached):
    pytest.importorskip("dogpile.cache")
    pytest.importorskip("memcache")
    setup = """
    from dogpile.cache import make_region

    region = make_region().configure(
        "dogpile.cache.memcached",
        expiration_time=30,
        arguments={"url": "%s:%d" % ADDRESS, "memcached_expire_time": 60},
    )
    """
    by_step = run_steps(setup, DOGPILE_STEPS, memcached)
    assert_steps(
        by_step,
        {
            "set": ["set"],
            "get": ["get"],
            "get_or_create": ["get", "get", "set"],
            "set_multi": ["set_many"],
            "get_multi": ["get_many"],
            "delete": ["delete"],
            "delete_multi": ["delete_many"],
        },
        memcached,
    )


def test_cachelib_memcached_cache_with_python_memcached(memcached):
    pytest.importorskip("cachelib")
    pytest.importorskip("memcache")
    setup = """
    import inspect

    from cachelib import MemcachedCache
    import memcache

    servers = ["%s:%d" % ADDRESS]
    if "memcache_client_lib" in inspect.signature(MemcachedCache).parameters:
        cache = MemcachedCache(servers, key_prefix="app:", memcache_client_lib="memcache")
    else:  # older cachelib picks pylibmc first when installed: hand it the client
        cache = MemcachedCache(memcache.Client(servers), key_prefix="app:")
    assert isinstance(cache._client, memcache.Client)
    """
    steps = [
        ("set", "assert cache.set('a', 1)"),
        ("get", "assert cache.get('a') == 1"),
        ("has", "assert cache.has('a')"),
        ("inc", "cache.set('n', 1); assert cache.inc('n') == 2"),
        ("set_many", "assert cache.set_many({'x': 1, 'y': 2}) == ['x', 'y']"),
        ("get_many", "assert cache.get_many('x', 'y', 'z') == [1, 2, None]"),
        ("delete", "assert cache.delete('a')"),
        ("delete_many", "cache.delete_many('x', 'y')"),
        ("clear", "cache.clear()"),  # its result differs across cachelib versions
    ]
    by_step = run_steps(setup, steps, memcached)
    assert_steps(
        by_step,
        {
            "set": ["set"],
            "get": ["get"],
            "has": ["append"],
            "inc": ["set", "get", "set"],
            "set_many": ["set_many"],
            "get_many": ["get_many"],
            "delete": ["delete"],
            "delete_many": ["delete_many", "append", "append"],
            "clear": ["flush_all"],
        },
        memcached,
    )
