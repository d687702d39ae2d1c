from pymemcache.client.base import Client


def test_get_is_one_span(memcached, spans, patched):
    client = Client(memcached)
    client.set("k", b"v", noreply=False)
    assert client.get("k") == b"v"
    got = spans.memcached()
    assert [s.resource for s in got] == ["set", "get"]
    assert got[1].get_metric("db.row_count") == 1
