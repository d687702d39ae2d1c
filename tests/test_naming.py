"""Service and operation naming under schema v0/v1, and peer.service.

Each case runs in its own interpreter: ddtrace reads the schema settings once.
"""

import pytest

from apps import app
from apps import run_python
from apps import spans_of

SET_GET = """
import ddtrace
ddtrace.patch(memcached=True)
from pymemcache.client.base import Client
client = Client(ADDRESS)
client.set("k", "v", noreply=False)
client.get("k")
"""


def spans_with(memcached, **env):
    spans = spans_of(run_python(app(SET_GET, memcached), env=env))
    assert [s["resource"] for s in spans] == ["set", "get"]
    return spans


@pytest.mark.parametrize(
    "env, service",
    [
        ({}, "memcached"),
        ({"DD_SERVICE": "shop"}, "memcached"),
        ({"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v0"}, "memcached"),
        ({"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1", "DD_SERVICE": "shop"}, "shop"),
        ({"DD_MEMCACHED_SERVICE": "sessions"}, "sessions"),
        (
            {"DD_MEMCACHED_SERVICE": "sessions", "DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1", "DD_SERVICE": "shop"},
            "sessions",
        ),
        ({"DD_TRACE_REMOVE_INTEGRATION_SERVICE_NAMES_ENABLED": "true", "DD_SERVICE": "shop"}, "shop"),
        ({"DD_SERVICE_MAPPING": "memcached:cache-cluster"}, "cache-cluster"),
    ],
)
def test_service_and_operation_name(memcached, env, service):
    for span in spans_with(memcached, **env):
        assert span["name"] == "memcached.command"
        assert span["service"] == service


def test_schema_v1_without_dd_service_uses_the_process_default_service(memcached):
    """Under v1 with no DD_SERVICE the spans take the application's service, not 'memcached'."""
    for span in spans_with(memcached, DD_TRACE_SPAN_ATTRIBUTE_SCHEMA="v1"):
        assert span["service"] != "memcached"
        assert span["service"]


@pytest.mark.parametrize(
    "env",
    [
        {"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1", "DD_SERVICE": "shop"},
        {"DD_TRACE_PEER_SERVICE_DEFAULTS_ENABLED": "true"},
    ],
)
def test_peer_service_is_derived_from_out_host(memcached, env):
    for span in spans_with(memcached, **env):
        assert span["tags"]["peer.service"] == memcached[0]
        assert span["tags"]["_dd.peer.service.source"] == "out.host"


def test_no_peer_service_under_v0_by_default(memcached):
    for span in spans_with(memcached):
        assert "peer.service" not in span["tags"]


def test_peer_service_mapping_remaps_it(memcached):
    spans = spans_with(
        memcached,
        DD_TRACE_PEER_SERVICE_DEFAULTS_ENABLED="true",
        DD_TRACE_PEER_SERVICE_MAPPING="%s:memcached-primary" % memcached[0],
    )
    for span in spans:
        assert span["tags"]["peer.service"] == "memcached-primary"
        assert span["tags"]["_dd.peer.service.remapped_from"] == memcached[0]
