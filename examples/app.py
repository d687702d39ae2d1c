"""A user-profile endpoint that reads through a memcached cache.

``handle_request(name)`` serves ``GET /users/<name>``: the profile comes from a
pymemcache HashClient over two memcached servers (``MEMCACHED_SERVERS=host:port,host:port``),
or, on a miss, from the database, and is then cached. The handler also counts the
profile's views and fetches the friends' cached profiles with one ``get_many``.
A profile too large for memcached's 1 MB items is served without being cached. The
user's session is kept by another client on the same servers, pylibmc, as an app
that grew two caching layers would: both are traced alike.

Run it under ``ddtrace-run``: each request becomes a trace, and each memcached command
a span in it. ``scripts/demo`` does, and draws the traces that the APM test agent received.
"""

import logging
import os
import time

from ddtrace.trace import tracer
import pylibmc
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError
from pymemcache.serde import pickle_serde

log = logging.getLogger("app")

SERVERS = os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211")
KEY_PREFIX = os.environ.get("CACHE_KEY_PREFIX", "app:")
cache = HashClient(
    [(host, int(port)) for host, port in (server.rsplit(":", 1) for server in SERVERS.split(","))],
    serde=pickle_serde,
    key_prefix=KEY_PREFIX.encode(),
    connect_timeout=1,
    timeout=1,
    no_delay=True,  # else Nagle holds a command after a noreply set for 40 ms
)
sessions = pylibmc.Client(SERVERS.split(","), behaviors={"connect_timeout": 1000})

# The database: dave's profile embeds a 2 MB photo.
DATABASE = {
    "alice": {"name": "Alice", "friends": ["bob", "carol"]},
    "bob": {"name": "Bob", "friends": ["alice"]},
    "carol": {"name": "Carol", "friends": ["alice", "bob"]},
    "dave": {"name": "Dave", "friends": ["alice"], "photo": b"\x89PNG" + bytes(2 * 1024 * 1024)},
}


def load_profile(name):
    with tracer.trace("db.load_profile", resource="SELECT * FROM profiles WHERE name = %s", span_type="sql"):
        time.sleep(0.005)  # a database round trip
        return DATABASE.get(name)


def get_profile(name):
    key = "user:" + name
    profile = cache.get(key)
    if profile is None:
        profile = load_profile(name)
        try:
            cache.set(key, profile, expire=300, noreply=False)
        except MemcacheError as error:
            log.warning("profile %r not cached: %s", name, error)  # served from the database anyway
    return profile


def handle_request(name):
    """GET /users/<name>: the profile, its view count and the friends found in the cache."""
    with tracer.trace("web.request", resource="GET /users/{name}", span_type="web") as span:
        span.set_tag("http.method", "GET")
        span.set_tag("http.url", "/users/" + name)
        profile = get_profile(name)
        if cache.incr("views:" + name, 1) is None:
            cache.set("views:" + name, 1)
        friends = cache.get_many(["user:" + friend for friend in profile["friends"]])
        sessions.set(KEY_PREFIX + "session:" + name, {"user": name, "seen": time.time()}, time=1800)
        span.set_tag("http.status_code", 200)
        return {"name": profile["name"], "friends_cached": len(friends)}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for user in ("alice", "bob", "alice", "dave"):
        handle_request(user)
        log.info("GET /users/%s 200", user)
