"""python-binary-memcached's real user, end to end under ``ddtrace-run``: dogpile.cache's
``dogpile.cache.bmemcached`` backend (see ``framework_steps``: each cache call checked for
its own memcached spans).
"""

import pytest

from framework_steps import DOGPILE_STEPS
from framework_steps import assert_steps
from framework_steps import run_steps


def test_dogpile_bmemcached_backend(memcached):
    pytest.importorskip("dogpile.cache")
    pytest.importorskip("bmemcached")
    setup = """
    from dogpile.cache import make_region

    region = make_region().configure(
        "dogpile.cache.bmemcached",
        expiration_time=30,
        arguments={"url": ["%s:%d" % ADDRESS], "username": None, "password": None},
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
            "delete_multi": ["delete", "delete"],  # the backend loops delete
        },
        memcached,
    )
