"""How the integration gets enabled, how it shares pymemcache with ddtrace's
built-in integration, and what it costs a process that never uses it.

Almost every test runs an app in a fresh interpreter (``run_python``), because
``ddtrace-run``, ``import ddtrace.auto``, the ``.pth`` hook and ``ddtrace.patch``
only mean something at process start. The app records its spans with a public
``TraceFilter`` and prints them as JSON on one marked line (see :func:`app`).
"""

import ast
import importlib.util
from pathlib import Path
import re
import subprocess
import sys
import time

import pytest

import _ddtrace_memcached_hook
from apps import app
from apps import ddtrace_run
from apps import run_python
from apps import spans_of
from apps import subprocess_env
from ddtrace_memcached import registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUILTIN_PATCH_MODULE = "ddtrace.contrib.internal.pymemcache.patch"
NOT_AT_STARTUP = ("ddtrace", "wrapt", "pymemcache", "ddtrace_memcached")


def commands(spans: list) -> list:
    """(resource, component) of every span, in finishing order."""
    return [(s["resource"], s["component"]) for s in spans]


def ours(*resources: str) -> list:
    return [(resource, "memcached") for resource in resources]


def builtins(*resources: str) -> list:
    return [(resource, "pymemcache") for resource in resources]


# set, get and get_many on a Client: three commands, three spans.
CLIENT_COMMANDS = """
from pymemcache.client.base import Client

client = Client(ADDRESS)
client.set("k", b"v", noreply=False)
assert client.get("k") == b"v"
assert client.get_many(["k", "missing"]) == {"k": b"v"}
"""
CLIENT_RESOURCES = ("set", "get", "get_many")


def assert_ours(spans: list, *resources: str) -> None:
    assert commands(spans) == ours(*resources), commands(spans)
    for span in spans:
        assert span["name"] == "memcached.command"
        assert span["service"] == "memcached"
        assert span["error"] == 0
        assert span["tags"]["db.system"] == "memcached"


def _run(argv, env, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- 1. ddtrace-run and import ddtrace.auto ------------------------------------------


def test_ddtrace_run_traces_every_command(memcached):
    """``ddtrace-run python -c app``: one span per command, ours."""
    spans = spans_of(run_python(app(CLIENT_COMMANDS, memcached), argv_prefix=ddtrace_run()))
    assert_ours(spans, *CLIENT_RESOURCES)


def test_safe_instrumentation_accepts_the_supported_pymemcache(memcached):
    """With DD_TRACE_SAFE_INSTRUMENTATION_ENABLED ddtrace checks get_versions() against
    _supported_versions() before patching; the installed pymemcache passes."""
    env = {"DD_TRACE_SAFE_INSTRUMENTATION_ENABLED": "true"}
    spans = spans_of(run_python(app(CLIENT_COMMANDS, memcached), env=env, argv_prefix=ddtrace_run()))
    assert_ours(spans, *CLIENT_RESOURCES)


def test_version_helpers():
    import pymemcache

    from ddtrace_memcached.clients import pymemcache as client_module

    patch_module = importlib.import_module("ddtrace_memcached.patch")  # the package's patch is the function

    assert patch_module.get_versions()["pymemcache"] == pymemcache.__version__
    assert patch_module._supported_versions()["pymemcache"] == ">=3.4"
    # Every client's range, imported or not (dd-trace-py's harness asks before the import).
    assert patch_module._supported_versions() == {c.module: c.supported for c in registry.CLIENTS}
    assert client_module.VERSION == tuple(int(p) for p in pymemcache.__version__.split(".")[:3])


def test_import_ddtrace_auto_traces_every_command(memcached):
    """``import ddtrace.auto`` at the top of the app, no ddtrace-run: the same spans."""
    spans = spans_of(run_python(app(CLIENT_COMMANDS, memcached, prelude="import ddtrace.auto")))
    assert_ours(spans, *CLIENT_RESOURCES)


# --- 2. switching it off under ddtrace-run -------------------------------------------

OURS_OFF = [
    pytest.param({"DD_TRACE_MEMCACHED_ENABLED": "false"}, id="DD_TRACE_MEMCACHED_ENABLED"),
    pytest.param({"DD_PATCH_MODULES": "memcached:false"}, id="DD_PATCH_MODULES"),
]


@pytest.mark.parametrize("env", OURS_OFF)
def test_disabled_hands_back_to_builtin(memcached, env):
    """Ours disabled: none of its spans; the built-in pymemcache (on by default) traces instead."""
    spans = spans_of(run_python(app(CLIENT_COMMANDS, memcached), env=env, argv_prefix=ddtrace_run()))
    assert not [s for s in spans if s["component"] == "memcached"]
    assert commands(spans) == builtins(*CLIENT_RESOURCES)


@pytest.mark.parametrize("env", OURS_OFF)
def test_disabled_with_builtin_disabled_traces_nothing(memcached, env):
    """Ours and ``DD_TRACE_PYMEMCACHE_ENABLED=false``: no memcached span at all."""
    env = dict(env, DD_TRACE_PYMEMCACHE_ENABLED="false")
    spans = spans_of(run_python(app(CLIENT_COMMANDS, memcached), env=env, argv_prefix=ddtrace_run()))
    assert spans == []


# --- 3. ddtrace.patch(memcached=True) ------------------------------------------------


def test_ddtrace_patch_after_pymemcache_import(memcached):
    """pymemcache imported and a Client created first: ``ddtrace.patch`` traces that client too."""
    body = """
    import pymemcache.client.base

    early = pymemcache.client.base.Client(ADDRESS)

    import ddtrace

    ddtrace.patch(memcached=True)
    early.set("k", b"v", noreply=False)
    assert early.get("k") == b"v"
    late = pymemcache.client.base.Client(ADDRESS)
    assert late.get_many(["k"]) == {"k": b"v"}
    """
    assert_ours(spans_of(run_python(app(body, memcached))), *CLIENT_RESOURCES)


def test_ddtrace_patch_before_pymemcache_import(memcached):
    """``ddtrace.patch`` before pymemcache is imported: patched when it is."""
    body = """
    import sys

    import ddtrace

    ddtrace.patch(memcached=True)
    assert "pymemcache" not in sys.modules
    """
    assert_ours(spans_of(run_python(app([body, CLIENT_COMMANDS], memcached))), *CLIENT_RESOURCES)


# --- 4. coexistence with ddtrace's built-in pymemcache integration -------------------

# Clients of every kind, each sending two commands.
MIXED_COMMANDS = """
import pymemcache.client.base
import pymemcache.client.hash

client = pymemcache.client.base.Client(ADDRESS)
client.set("a", b"1", noreply=False)
assert client.get("a") == b"1"
hashed = pymemcache.client.hash.HashClient([ADDRESS], use_pooling=True)
hashed.set("b", b"2", noreply=False)
assert hashed.get("b") == b"2"
"""
MIXED_RESOURCES = ("set", "get", "set", "get")

# Both of pymemcache's classes are the real ones, and behave so.
REAL_CLASSES = """
assert pymemcache.client.base.Client is REAL_CLIENT, pymemcache.client.base.Client
assert pymemcache.client.hash.HashClient is REAL_HASH_CLIENT, pymemcache.client.hash.HashClient
assert isinstance(pymemcache.client.base.Client(ADDRESS), pymemcache.client.base.Client)
"""

SAVE_REAL_CLASSES = """
import pymemcache.client.base
import pymemcache.client.hash

REAL_CLIENT = pymemcache.client.base.Client
REAL_HASH_CLIENT = pymemcache.client.hash.HashClient
assert (REAL_CLIENT.__module__, REAL_CLIENT.__name__) == ("pymemcache.client.base", "Client")
assert (REAL_HASH_CLIENT.__module__, REAL_HASH_CLIENT.__name__) == ("pymemcache.client.hash", "HashClient")
"""


def test_coexistence_ddtrace_run_defaults(memcached):
    """ddtrace-run enables both by default: one span per command, ours."""
    spans = spans_of(run_python(app(MIXED_COMMANDS, memcached), argv_prefix=ddtrace_run()))
    assert_ours(spans, *MIXED_RESOURCES)


@pytest.mark.parametrize("imported_first", [True, False], ids=["pymemcache-imported-first", "ddtrace-patch-first"])
def test_coexistence_patch_both_at_once(memcached, imported_first):
    """``ddtrace.patch(memcached=True, pymemcache=True)``: one span per command, ours."""
    body = """
    import ddtrace

    ddtrace.patch(memcached=True, pymemcache=True)
    """
    blocks = ["import pymemcache.client.hash"] if imported_first else []
    assert_ours(spans_of(run_python(app([*blocks, body, MIXED_COMMANDS], memcached))), *MIXED_RESOURCES)


def test_coexistence_builtin_first_then_ours(memcached):
    """Built-in patched, clients made, then ours: old and new clients give one span each, ours.

    Also a new Client and HashClient made after ours is patched must be traced.
    """
    builtin_first = """
    import ddtrace

    ddtrace.patch(pymemcache=True)
    early = pymemcache.client.base.Client(ADDRESS)
    early_hashed = pymemcache.client.hash.HashClient([ADDRESS], use_pooling=True)
    assert type(early) is not REAL_CLIENT  # the built-in's proxy: this test means something

    ddtrace.patch(memcached=True)
    """
    early_clients = """
    early.set("a", b"1", noreply=False)
    assert early.get("a") == b"1"
    early_hashed.set("b", b"2", noreply=False)
    assert early_hashed.get("b") == b"2"
    """
    blocks = [SAVE_REAL_CLASSES, builtin_first, REAL_CLASSES, early_clients, MIXED_COMMANDS]
    spans = spans_of(run_python(app(blocks, memcached)))
    assert_ours(spans, *MIXED_RESOURCES, *MIXED_RESOURCES)


@pytest.mark.parametrize("imported_first", [True, False], ids=["pymemcache-imported-first", "pymemcache-imported-last"])
def test_coexistence_ours_first_then_builtin(memcached, imported_first):
    """Ours patched, then ``ddtrace.patch(pymemcache=True)``: still one span per command, ours."""
    body = """
    import ddtrace

    ddtrace.patch(memcached=True)
    ddtrace.patch(pymemcache=True)
    """
    blocks = [SAVE_REAL_CLASSES, body] if imported_first else [body, SAVE_REAL_CLASSES]
    blocks += [REAL_CLASSES, MIXED_COMMANDS]
    assert_ours(spans_of(run_python(app(blocks, memcached))), *MIXED_RESOURCES)


# --- 4b. several clients: each on its own import, and DD_TRACE_MEMCACHED_CLIENTS -------

CLIENT_MODULES = sorted(registry.BY_MODULE)


@pytest.mark.parametrize("client", CLIENT_MODULES)
def test_importing_a_client_imports_no_other(client):
    """Under ddtrace-run, importing one client patches it and imports no other client."""
    if importlib.util.find_spec(client) is None:
        pytest.skip("%s is not installed" % client)
    body = """
    import sys

    import %s

    others = sorted(m for m in %r if m in sys.modules)
    assert others == [], others
    assert "ddtrace_memcached.clients.%s" in sys.modules
    assert [m for m in sys.modules if m.startswith("ddtrace_memcached.clients.")] == ["ddtrace_memcached.clients.%s"]
    """ % (client, [m for m in CLIENT_MODULES if m != client], client, client)
    spans_of(run_python(app(body, ("127.0.0.1", 1)), argv_prefix=ddtrace_run()))


def test_a_client_left_out_stays_with_the_builtin(memcached):
    """``DD_TRACE_MEMCACHED_CLIENTS`` without pymemcache: ddtrace's built-in traces it."""
    env = {"DD_TRACE_MEMCACHED_CLIENTS": "pylibmc"}
    spans = spans_of(run_python(app(CLIENT_COMMANDS, memcached), env=env, argv_prefix=ddtrace_run()))
    assert commands(spans) == builtins(*CLIENT_RESOURCES)


@pytest.mark.parametrize("value", ["pymemcache", " PyMemcache , pylibmc", "all", "nosuchclient,pymemcache"])
def test_clients_setting_that_covers_pymemcache(memcached, value):
    """Names are case-insensitive, separated by commas or spaces; unknown names cover nothing
    (and warn: tests/test_diagnostics.py)."""
    env = {"DD_TRACE_MEMCACHED_CLIENTS": value}
    assert_ours(
        spans_of(run_python(app(CLIENT_COMMANDS, memcached), env=env, argv_prefix=ddtrace_run())), *CLIENT_RESOURCES
    )


def test_covered_clients_parsing(monkeypatch):
    monkeypatch.setenv("DD_TRACE_MEMCACHED_CLIENTS", "pylibmc emcache,,PYMEMCACHE")
    assert _ddtrace_memcached_hook.covered_clients() == ("pymemcache", "pylibmc", "emcache")
    monkeypatch.setenv("DD_TRACE_MEMCACHED_CLIENTS", "")
    assert _ddtrace_memcached_hook.covered_clients() == tuple(client.module for client in registry.CLIENTS)


def test_direct_patch_traces_a_client_imported_later(memcached):
    """``ddtrace_memcached.patch()`` before pymemcache is imported: patched when it is."""
    body = """
    import sys

    import ddtrace_memcached

    ddtrace_memcached.patch()
    assert "pymemcache" not in sys.modules
    """
    assert_ours(spans_of(run_python(app([body, CLIENT_COMMANDS], memcached))), *CLIENT_RESOURCES)


def test_direct_patch_traces_a_client_whose_module_the_app_imported_first(memcached):
    """The app imports ``ddtrace_memcached.clients.pymemcache`` (for its ``error.type``
    constants) after ``patch()`` and before pymemcache: pymemcache's import, at the top of
    that module, finds it half-made; the client is patched once the module is whole."""
    body = """
    import sys

    import ddtrace_memcached

    ddtrace_memcached.patch()
    assert "pymemcache" not in sys.modules
    from ddtrace_memcached.clients.pymemcache import FAILED_SERVER
    """
    assert_ours(spans_of(run_python(app([body, CLIENT_COMMANDS], memcached))), *CLIENT_RESOURCES)


# --- 5. patch / unpatch --------------------------------------------------------------


def _patched_classes() -> list:
    from pymemcache.client.base import Client
    from pymemcache.client.base import PooledClient
    from pymemcache.client.hash import HashClient

    classes = [Client, PooledClient, HashClient]
    try:
        from pymemcache.client.retrying import RetryingClient
    except ImportError:  # pymemcache < 3.5
        pass
    else:
        classes.append(RetryingClient)
    return classes


def _methods(cls) -> dict:
    """The functions in the class's own namespace (what ``patch()`` may wrap)."""
    return {name: value for name, value in vars(cls).items() if callable(value) and not isinstance(value, type)}


def _assert_restored(saved: dict) -> None:
    for cls, (names, methods) in saved.items():
        assert set(vars(cls)) == names, cls
        for name, original in methods.items():
            assert vars(cls)[name] is original, "%s.%s is %r" % (cls.__name__, name, vars(cls)[name])


def test_patch_twice_unpatch_once_restores_everything(memcached, spans):
    """patch(); patch(); unpatch() restores every method (identity); a second unpatch is harmless;
    patch() again traces with exactly one span per command (no stacked wrappers)."""
    from ddtrace.trace import tracer
    from pymemcache.client.base import Client
    from pymemcache.client.hash import HashClient

    import ddtrace_memcached

    saved = {cls: (set(vars(cls)), _methods(cls)) for cls in _patched_classes()}
    assert saved[Client][1]["get"].__name__ == "get"
    try:
        ddtrace_memcached.patch()
        ddtrace_memcached.patch()
        assert vars(Client)["get"] is not saved[Client][1]["get"]
        ddtrace_memcached.unpatch()
        _assert_restored(saved)
        ddtrace_memcached.unpatch()
        _assert_restored(saved)

        client = Client(memcached)
        client.set("k", b"v", noreply=False)
        tracer.flush()
        assert spans.spans == []

        ddtrace_memcached.patch()
        ddtrace_memcached.patch()
        client.set("k", b"w", noreply=False)
        assert client.get("k") == b"w"
        hashed = HashClient([memcached], use_pooling=True)
        assert hashed.get("k") == b"w"
        tracer.flush()
        assert [(s.resource, s.get_tag("component")) for s in spans.spans] == ours("set", "get", "get")
    finally:
        ddtrace_memcached.unpatch()
    _assert_restored(saved)


def test_builtin_module_path_exists():
    """builtin.py silences ddtrace's integration through this module: it must exist."""
    assert importlib.util.find_spec(BUILTIN_PATCH_MODULE) is not None


def test_unpatch_restores_builtin_state(memcached):
    """Built-in patched first; ours patch + unpatch leaves the built-in's state as it was.

    While ours is patched, the built-in's proxies (made before) give one span, ours;
    after unpatch, pymemcache.client.base.Client is its proxy class again and it traces again.
    """
    body = """
    import pymemcache
    import pymemcache.client.base
    import pymemcache.client.hash

    from ddtrace.contrib.internal.pymemcache import client as builtin_client
    from ddtrace.contrib.internal.pymemcache import patch as builtin_module
    from ddtrace.contrib.internal.pymemcache.patch import patch as builtin_patch


    def state():
        return dict(
            datadog_patch=getattr(pymemcache, "_datadog_patch", None),
            base_Client=pymemcache.client.base.Client,
            hash_Client=pymemcache.client.hash.Client,
            hash_HashClient=pymemcache.client.hash.HashClient,
            client_class=builtin_client._HashClient.client_class,
            module_patch=builtin_module.patch,
            trace_function=vars(builtin_client._WrapperBase)["_trace_function_as_command"],
        )


    builtin_patch()
    before = state()
    assert before["base_Client"] is builtin_client.WrappedClient
    early = pymemcache.client.base.Client(ADDRESS)

    import ddtrace_memcached

    ddtrace_memcached.patch()
    early.set("k", b"v", noreply=False)
    ddtrace_memcached.unpatch()

    after = state()
    changed = [name for name in before if after[name] is not before[name]]
    assert not changed, changed
    assert pymemcache.client.base.Client is builtin_client.WrappedClient
    assert early.get("k") == b"v"
    pymemcache.client.base.Client(ADDRESS).get("k")
    """
    spans = spans_of(run_python(app(body, memcached)))
    assert commands(spans) == ours("set") + builtins("get", "get")


def test_unpatch_without_builtin_leaves_hashclient_untraced(memcached):
    """The built-in never enabled: after patch + unpatch, HashClient's nodes are plain Clients
    again and HashClient commands make no span (nobody enabled any tracing of pymemcache)."""
    body = """
    import pymemcache.client.base
    import pymemcache.client.hash

    import ddtrace_memcached

    original_client_class = pymemcache.client.hash.HashClient.client_class
    ddtrace_memcached.patch()
    ddtrace_memcached.unpatch()
    print("client_class restored:", pymemcache.client.hash.HashClient.client_class is original_client_class)
    print("client_class:", pymemcache.client.hash.HashClient.client_class)
    hashed = pymemcache.client.hash.HashClient([ADDRESS])
    hashed.set("k", b"v", noreply=False)
    assert hashed.get("k") == b"v"
    """
    proc = run_python(app(body, memcached))
    spans = spans_of(proc)
    assert "client_class restored: True" in proc.stdout, proc.stdout
    assert spans == []


# --- 5b. unpatch() hands back to ddtrace --------------------------------------------

HAND_BACK = """
import pymemcache.client.base

import ddtrace_memcached

pymemcache.client.base.Client(ADDRESS).set("k", b"v", noreply=False)
ddtrace_memcached.unpatch()
pymemcache.client.base.Client(ADDRESS).get("k")
"""
PYLIBMC_LATER = """
import pylibmc

pylibmc.Client(["%s:%d" % ADDRESS]).get("k")
"""
TAKE_OVER = """
ddtrace_memcached.patch()
pymemcache.client.base.Client(ADDRESS).get("k")
"""


def test_unpatch_under_ddtrace_run_hands_back_to_the_builtins(memcached):
    """Under ddtrace-run, after ``unpatch()``: a new pymemcache client is traced by ddtrace's
    built-in again, and a pylibmc imported only then by its built-in too, not by this package
    (the import hooks of ``ddtrace.patch(memcached=True)`` are cancelled). ``patch()`` takes
    over again, for both."""
    pytest.importorskip("pylibmc")
    blocks = [HAND_BACK, PYLIBMC_LATER, TAKE_OVER, 'pylibmc.Client(["%s:%d" % ADDRESS]).get("k")']
    spans = spans_of(run_python(app(blocks, memcached), argv_prefix=ddtrace_run()))
    assert commands(spans) == [
        ("set", "memcached"),
        ("get", "pymemcache"),
        ("get", "pylibmc"),
        ("get", "memcached"),
        ("get", "memcached"),
    ]


def test_unpatch_before_the_import_leaves_the_client_to_the_builtin(memcached):
    """Under ddtrace-run, ``unpatch()`` before the app imports pymemcache: this package never
    patches it; the built-in does."""
    body = """
    import sys

    import ddtrace_memcached

    ddtrace_memcached.unpatch()
    assert "pymemcache" not in sys.modules
    """
    spans = spans_of(run_python(app([body, CLIENT_COMMANDS], memcached), argv_prefix=ddtrace_run()))
    assert commands(spans) == builtins(*CLIENT_RESOURCES)


def test_unpatch_hands_back_a_builtin_the_app_asked_for(memcached):
    """``ddtrace.patch(pymemcache=True)`` made while ours is on does nothing then, and takes
    effect after ``unpatch()``."""
    asked = """
    import ddtrace

    ddtrace.patch(memcached=True)
    ddtrace.patch(pymemcache=True)
    """
    spans = spans_of(run_python(app([asked, HAND_BACK, TAKE_OVER], memcached)))
    assert commands(spans) == [("set", "memcached"), ("get", "pymemcache"), ("get", "memcached")]


@pytest.mark.parametrize(
    "env, argv_prefix",
    [({"DD_TRACE_PYMEMCACHE_ENABLED": "false"}, ddtrace_run()), ({}, ())],
    ids=["builtin-off-under-ddtrace-run", "patched-by-hand"],
)
def test_unpatch_hands_back_nothing_nobody_asked_for(memcached, env, argv_prefix):
    """Where ddtrace would not have enabled its built-in, ``unpatch()`` enables nothing."""
    prelude = "" if argv_prefix else "import ddtrace_memcached\n\nddtrace_memcached.patch()\n"
    spans = spans_of(run_python(app([prelude, HAND_BACK], memcached), env=env, argv_prefix=argv_prefix))
    assert commands(spans) == [("set", "memcached")]


# --- 6. startup cost -----------------------------------------------------------------

# Started with -S, then runs site.main() as a normal start would, optionally with the
# one .pth of this package left out. Nothing is imported after site.main() returns.
_SITE_MAIN = """
import sys
import site

_addpackage = site.addpackage


def _filtered(sitedir, name, known_paths):
    if SKIP_OURS and name == "ddtrace_memcached.pth":
        return known_paths
    return _addpackage(sitedir, name, known_paths)


site.addpackage = _filtered
site.main()
print(sorted(sys.modules))
"""

_MODULES = "import sys; print(sorted(sys.modules))"


def _modules(proc: subprocess.CompletedProcess) -> set:
    assert proc.returncode == 0, proc.stderr
    return set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))


def _loaded(modules: set, top_level: str) -> list:
    return sorted(m for m in modules if m == top_level or m.startswith(top_level + "."))


def test_startup_imports_only_the_hook():
    """A process that never imports ddtrace loads ``_ddtrace_memcached_hook`` and nothing else.

    Method: two interpreters started with ``-S`` both run ``site.main()`` themselves, i.e.
    exactly what a normal start does; in one of them ``site.addpackage`` skips
    ``ddtrace_memcached.pth``. Everything else (interpreter, sys.path, other .pth files,
    sitecustomize) is identical, so the difference of their ``sys.modules`` is what our
    .pth costs. A third, normal start (``run_python``) must load the same modules as the
    simulated start with the .pth, which checks the simulation.
    """
    normal = _modules(run_python(_MODULES))
    with_pth = _modules(_run([sys.executable, "-S", "-c", "SKIP_OURS = False\n" + _SITE_MAIN], subprocess_env()))
    without_pth = _modules(_run([sys.executable, "-S", "-c", "SKIP_OURS = True\n" + _SITE_MAIN], subprocess_env()))

    added = sorted(with_pth - without_pth)
    print("\nstartup: ddtrace_memcached.pth adds %d module(s): %s" % (len(added), added))
    assert "_ddtrace_memcached_hook" in normal
    assert "_ddtrace_memcached_hook" not in without_pth
    for name in NOT_AT_STARTUP:
        assert _loaded(normal, name) == [], name
    assert with_pth == normal, (sorted(with_pth - normal), sorted(normal - with_pth))
    assert without_pth <= with_pth
    assert len(added) <= 2, added


# --- 7. the built wheel in a fresh venv ----------------------------------------------

_NO_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|No route to host|ConnectTimeoutError"
    r"|Cannot connect to proxy",
    re.IGNORECASE,
)


def _pip(argv, what: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs pip; skips the test only when it failed for want of a network."""
    env = subprocess_env(PIP_NO_INPUT="1")
    env.pop("PYTHONPATH", None)
    proc = _run(argv, env, timeout=timeout)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if _NO_NETWORK.search(output):
            pytest.skip("%s: no network: %s" % (what, _NO_NETWORK.search(output).group(0)))
        pytest.fail("%s failed:\n%s" % (what, output))
    return proc


@pytest.mark.wheel
def test_wheel_in_fresh_venv(memcached, tmp_path):
    """Build the wheel, install it in a new venv, and run an app under that venv's ddtrace-run,
    without PYTHONPATH, from an empty directory: our spans. Also measures what installing the
    wheel adds to sys.modules at startup (fresh venv before vs after the install)."""
    started = time.monotonic()
    wheels, venv, cwd = tmp_path / "wheels", tmp_path / "venv", tmp_path / "cwd"
    cwd.mkdir()
    _pip([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(PROJECT_ROOT)], "pip wheel")
    (wheel,) = wheels.glob("ddtrace_memcached-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, bindir = str(venv / "bin" / "python"), venv / "bin"

    env = subprocess_env()
    env.pop("PYTHONPATH", None)
    before = _modules(_run([python, "-c", _MODULES], env, cwd=cwd))
    installing = time.monotonic()
    # No client is a dependency: the pymemcache extra brings the one the app uses.
    _pip([python, "-m", "pip", "install", "%s[pymemcache]" % wheel], "pip install")
    installed = time.monotonic()
    after = _modules(_run([python, "-c", _MODULES], env, cwd=cwd))

    where = """
    import sys

    import ddtrace
    import pymemcache

    print("@@FILE@@", sys.modules["ddtrace_memcached"].__file__)
    print("@@VERSIONS@@ ddtrace %s, pymemcache %s" % (ddtrace.__version__, pymemcache.__version__))
    """
    proc = _run([str(bindir / "ddtrace-run"), python, "-c", app([CLIENT_COMMANDS, where], memcached)], env, cwd=cwd)
    spans = spans_of(proc)

    added = sorted(after - before)
    versions = [line[len("@@VERSIONS@@ ") :] for line in proc.stdout.splitlines() if line.startswith("@@VERSIONS@@")]
    print(
        "\nwheel (%s): startup modules %d -> %d, added %d: %s; pip install %.1fs, whole test %.1fs"
        % (versions, len(before), len(after), len(added), added, installed - installing, time.monotonic() - started)
    )
    assert_ours(spans, *CLIENT_RESOURCES)
    (location,) = [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("@@FILE@@")]
    assert Path(location).resolve().is_relative_to(venv.resolve()), location
    assert "_ddtrace_memcached_hook" in after
    for name in NOT_AT_STARTUP:
        assert _loaded(after, name) == [], name
    assert len(added) <= 2, added


def test_unpatch_under_a_foreign_wrapper(memcached, spans):
    """Another tool wraps Client.get over ours: unpatch takes ours out from under it,
    theirs keeps working, and patching again wraps once more, not twice."""
    from pymemcache.client.base import Client
    import wrapt

    import ddtrace_memcached

    original = vars(Client)["get"]
    calls = []

    def theirs(wrapped, instance, args, kwargs):
        calls.append(args)
        return wrapped(*args, **kwargs)

    ddtrace_memcached.patch()
    try:
        wrapt.wrap_function_wrapper(Client, "get", theirs)
        ddtrace_memcached.unpatch()
        assert vars(Client)["get"].__wrapped__ is original
        client = Client(memcached)
        assert client.get("k", default=7) == 7
        assert calls == [("k",)] and spans.memcached() == []

        ddtrace_memcached.patch()
        ddtrace_memcached.patch()
        assert client.get("k") is None
        assert [s.resource for s in spans.memcached()] == ["get"]
    finally:
        ddtrace_memcached.unpatch()
        setattr(Client, "get", original)
