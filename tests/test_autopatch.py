"""The ddtrace-run suite: this test process itself was started by ``ddtrace-run``.

Nothing here calls ``patch()``: ``ddtrace-run`` must have installed the integration (and
kept ddtrace's built-in ``pymemcache`` one quiet) before pytest imported anything.
Run with ``ddtrace-run pytest -m ddtrace_run`` (riot's ``ddtrace-run`` suite).
"""

import sys

import pymemcache
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
import pytest
import wrapt

from ddtrace_memcached import wrapping
from ddtrace_memcached.clients import pymemcache as dm_pymemcache

UNDER_DDTRACE_RUN = "ddtrace/bootstrap" in getattr(sys.modules.get("sitecustomize"), "__file__", "").replace("\\", "/")

pytestmark = [
    pytest.mark.ddtrace_run,
    pytest.mark.skipif(not UNDER_DDTRACE_RUN, reason="needs the test process started by ddtrace-run"),
]


def test_client_methods_carry_our_wrapper():
    for command in dm_pymemcache.COMMANDS:
        attribute = vars(Client)[command.method]
        assert isinstance(attribute, wrapt.FunctionWrapper), command.method
        assert wrapping.is_ours(attribute), command.method


def test_builtin_proxies_are_not_installed():
    """The public names are pymemcache's own classes: isinstance keeps working."""
    assert pymemcache.Client is Client
    assert not issubclass(Client, wrapt.ObjectProxy) and not issubclass(HashClient, wrapt.ObjectProxy)
    assert isinstance(Client(("127.0.0.1", 1)), Client)


@pytest.mark.parametrize(
    "make",
    [
        lambda address: Client(address),
        lambda address: PooledClient(address),
        lambda address: HashClient([address]),
        lambda address: HashClient([address], use_pooling=True),
    ],
    ids=["Client", "PooledClient", "HashClient", "HashClient-pooled"],
)
def test_one_span_per_command(memcached, spans, make):
    client = make(memcached)
    assert client.set("k", b"v", noreply=False) is True
    assert client.get("k") == b"v"
    assert [(s.name, s.resource) for s in spans.spans] == [("memcached.command", "set"), ("memcached.command", "get")]
    assert all(s.get_tag("component") == "memcached" for s in spans.spans)
