"""What users see: ddtrace's own diagnostics, the warnings about settings, unsupported versions.

Each test reads what a real process printed: an app in a new interpreter, under
``ddtrace-run`` where that is what matters, its startup log (``DD_TRACE_STARTUP_LOGS`` with
``DD_TRACE_DEBUG``, which puts it on stderr), its debug log and its warnings. Client
versions the venv does not have (pymemcache 3.3, aiomcache 0.7, the fork pylibmc2) are
installed with ``pip --target`` into a directory put first on the app's ``PYTHONPATH``.
"""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from apps import app
from apps import ddtrace_run
from apps import run_python
from apps import spans_of
from apps import subprocess_env
from ddtrace_memcached import registry

needs_pylibmc = pytest.mark.skipif(importlib.util.find_spec("pylibmc") is None, reason="the app uses pylibmc too")
STARTUP_LOG = "- DATADOG TRACER CONFIGURATION - "
UNSUPPORTED = "Unsupported Datadog configuration variable accessed: "
UNKNOWN_CLIENTS = "no memcached client, ignored"
DEBUG = {"DD_TRACE_DEBUG": "true", "DD_TRACE_STARTUP_LOGS": "true"}
# The app asks ddtrace's own collector again, after it imported its clients.
COLLECT_AGAIN = """
from ddtrace.internal import debug
from ddtrace.internal.utils.tracer_debug_info import TracerDebugInfo

print("@@COLLECTED@@" + _json.dumps(debug.collect(TracerDebugInfo.from_tracer(_tracer))["integrations"]))
"""
USE_BOTH = """
import pymemcache.client.base
import pylibmc

pymemcache.client.base.Client(ADDRESS).set("k", b"v", noreply=False)
pylibmc.Client(["%s:%d" % ADDRESS]).get("k")
"""


def startup_integrations(proc: subprocess.CompletedProcess) -> dict:
    """The ``integrations`` of the one startup log the process wrote."""
    (line,) = [line for line in proc.stderr.splitlines() if STARTUP_LOG in line]
    return ast.literal_eval(line.split(STARTUP_LOG, 1)[1])["integrations"]


def collected_again(proc: subprocess.CompletedProcess) -> dict:
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("@@COLLECTED@@")]
    return json.loads(line[len("@@COLLECTED@@") :])


def under_ddtrace_run(body, address, **env) -> subprocess.CompletedProcess:
    proc = run_python(app(body, address), env=env, argv_prefix=ddtrace_run(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


# --- ddtrace's startup log -----------------------------------------------------------------


@needs_pylibmc
def test_startup_log_lists_memcached_and_the_builtins_it_replaces(memcached):
    """``memcached`` is there like a built-in, enabled, with the clients it covers; the
    built-ins it replaces say so instead of "enabled, not instrumented". Asked again once the
    app has imported and used its clients, the entry says they are imported and traced."""
    proc = under_ddtrace_run([USE_BOTH, COLLECT_AGAIN], memcached, **DEBUG)
    integrations = startup_integrations(proc)
    ours = integrations["memcached"]
    assert (ours["enabled"], ours["instrumented"]) == (True, True)
    assert ours["config"] == {"service": "memcached", "command_enabled": False}
    assert list(ours["clients"]) == [client.module for client in registry.CLIENTS]
    assert ours["clients"]["pymemcache"] == {
        "version": registry.client_version("pymemcache"),
        "imported": False,
        "traced": False,
    }
    for builtin in ("pymemcache", "pylibmc"):
        assert integrations[builtin]["replaced_by"] == "memcached", integrations[builtin]
        assert (integrations[builtin]["enabled"], integrations[builtin]["instrumented"]) == (False, False)

    later = collected_again(proc)["memcached"]
    for client in ("pymemcache", "pylibmc"):
        assert later["clients"][client]["imported"] is later["clients"][client]["traced"] is True
    assert later["module_imported"] is True
    assert [s["component"] for s in spans_of(proc)] == ["memcached", "memcached"]


@needs_pylibmc
def test_startup_log_keeps_a_client_left_to_its_builtin(memcached):
    """``DD_TRACE_MEMCACHED_CLIENTS=pylibmc``: pymemcache stays ddtrace's, and says so."""
    proc = under_ddtrace_run([USE_BOTH], memcached, DD_TRACE_MEMCACHED_CLIENTS="pylibmc", **DEBUG)
    integrations = startup_integrations(proc)
    assert list(integrations["memcached"]["clients"]) == ["pylibmc"]
    assert integrations["pylibmc"]["replaced_by"] == "memcached"
    assert "replaced_by" not in integrations["pymemcache"]
    assert integrations["pymemcache"]["instrumented"] is True
    assert [s["component"] for s in spans_of(proc)] == ["pymemcache", "memcached"]


@needs_pylibmc
@pytest.mark.parametrize("env", [{"DD_TRACE_MEMCACHED_ENABLED": "false"}, {"DD_PATCH_MODULES": "memcached:false"}])
def test_startup_log_when_memcached_is_off(memcached, env):
    proc = under_ddtrace_run([USE_BOTH], memcached, **env, **DEBUG)
    integrations = startup_integrations(proc)
    assert integrations["memcached"]["enabled"] is False
    assert integrations["memcached"]["config"] is None
    assert not [name for name, entry in integrations.items() if "replaced_by" in entry]
    assert [s["component"] for s in spans_of(proc)] == ["pymemcache", "pylibmc"]


# --- ddtrace's debug log: the settings are known ----------------------------------------------

# A variable nobody registers, read through ddtrace's own reader: this process's check is on.
READ_AN_UNKNOWN = """
from ddtrace.internal.settings import env as _env

_env.get("DD_MEMCACHED_NO_SUCH_SETTING")
"""


@needs_pylibmc
def test_debug_log_calls_no_memcached_setting_unsupported(memcached):
    """ddtrace reads ``DD_TRACE_MEMCACHED_ENABLED`` and ``DD_MEMCACHED_SERVICE`` through its
    checked reader. (Left unset on purpose: ddtrace reads the variables that are set before
    its debug log is configured, so those it never reports, registered or not.)"""
    proc = under_ddtrace_run([USE_BOTH, READ_AN_UNKNOWN], memcached, DD_TRACE_DEBUG="true")
    reported = set(re.findall(re.escape(UNSUPPORTED) + r"(\S+)", proc.stderr))
    assert "DD_MEMCACHED_NO_SUCH_SETTING" in reported, proc.stderr[-3000:]
    assert not {name for name in reported if "MEMCACHED" in name} - {"DD_MEMCACHED_NO_SUCH_SETTING"}, reported
    assert [s["component"] for s in spans_of(proc)] == ["memcached", "memcached"]


def test_every_setting_is_in_ddtraces_registry():
    """Where ddtrace keeps a registry of its settings (4.x), ours are in it; a ddtrace without
    one (3.19) checks no setting, and the state says so."""
    import ddtrace  # noqa: F401 (registers)

    from ddtrace_memcached import diagnostics

    assert set(diagnostics.SETTINGS) == {
        "DD_TRACE_MEMCACHED_ENABLED",
        "DD_MEMCACHED_SERVICE",
        "DD_TRACE_MEMCACHED_CLIENTS",
        "DD_TRACE_MEMCACHED_COMMAND_ENABLED",
    }
    assert {registry.CLIENTS_ENV, diagnostics.SERVICE_ENV, diagnostics.COMMAND_ENABLED_ENV} < set(diagnostics.SETTINGS)
    env = sys.modules.get(diagnostics.ENV_MODULE)  # the module: the package's "env" is its reader
    if env is None:
        assert diagnostics.state()["supported_configurations"] == "ok (this ddtrace checks no settings)"
        return
    assert set(diagnostics.SETTINGS) <= env.SUPPORTED_CONFIGURATIONS
    assert diagnostics.state()["supported_configurations"] == "ok"


# --- DD_TRACE_MEMCACHED_CLIENTS ------------------------------------------------------------------

PATCH_AGAIN = """
import ddtrace_memcached

ddtrace_memcached.patch()
ddtrace_memcached.unpatch()
ddtrace_memcached.patch()
"""


@needs_pylibmc
@pytest.mark.parametrize(
    "value, unknown, components",
    [
        ("pymemcache,bogus", ["bogus"], ["memcached", "pylibmc"]),
        ("bogus", ["bogus"], ["pymemcache", "pylibmc"]),
        ("memcached, nope", ["memcached", "nope"], ["pymemcache", "pylibmc"]),
        ("python-memcached,pylibmc", [], ["pymemcache", "memcached"]),
    ],
)
def test_unknown_client_names_warn_once(memcached, value, unknown, components):
    """A name that is no client's covers nothing and is named in one warning, with the valid
    names, however often the integration is set up; the clients it does name are covered."""
    proc = under_ddtrace_run([USE_BOTH, PATCH_AGAIN], memcached, DD_TRACE_MEMCACHED_CLIENTS=value)
    warnings = [line for line in proc.stderr.splitlines() if UNKNOWN_CLIENTS in line]
    if not unknown:
        assert warnings == [], proc.stderr
    else:
        assert len(warnings) == 1, proc.stderr
        for name in unknown:
            assert repr(name) in warnings[0]
        assert registry.described() in warnings[0] and value in warnings[0]
    assert [s["component"] for s in spans_of(proc)] == components


# --- client versions outside the supported range ------------------------------------------------

OLD = {"pymemcache": "3.3.0", "aiomcache": "0.7.0"}
# What the old releases import that a venv of today's clients may lack: pymemcache 3.3 imports six.
OLD_NEEDS = ["six"]
USE = {
    "pymemcache": """
import pymemcache.client.base

pymemcache.client.base.Client(ADDRESS).get("k")
""",
    "aiomcache": """
import asyncio

import aiomcache


async def _get():
    client = aiomcache.Client(*ADDRESS)
    await client.get(b"k")
    await client.close()


asyncio.run(_get())
""",
}
# Patched again and again, then used again: the version is checked each time.
REPATCH = """
import ddtrace_memcached

ddtrace_memcached.unpatch()
ddtrace_memcached.patch()
ddtrace_memcached.unpatch()
ddtrace_memcached.patch()
"""


def pip_target(directory, *requirements) -> str:
    """``requirements`` installed (without dependencies) into ``directory``; skips the test
    only when pip failed for want of a network."""
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(directory), *requirements]
    env = subprocess_env(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        if re.search(r"connection|resolution|unreachable|proxy", proc.stderr, re.I):
            pytest.skip("pip install %s: no network" % " ".join(requirements))
        pytest.fail(proc.stderr)
    return str(directory)


@pytest.fixture(scope="module")
def old_clients(tmp_path_factory):
    return pip_target(tmp_path_factory.mktemp("old"), *("%s==%s" % pair for pair in OLD.items()), *OLD_NEEDS)


def status_json(env: dict) -> dict:
    proc = run_python("from ddtrace_memcached.status import main; main(['--json'])", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def first_on_path(directory: str) -> dict:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [directory, os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("client", sorted(OLD))
def test_unsupported_version_is_traced_and_said_once(memcached, old_clients, client):
    """Traced as any other version, with one debug line however often it is patched."""
    body = [USE[client], REPATCH, USE[client]]
    proc = under_ddtrace_run(body, memcached, DD_TRACE_DEBUG="true", **first_on_path(old_clients))
    said = [line for line in proc.stderr.splitlines() if "is outside the supported range" in line]
    expected = "memcached: %s %s is outside the supported range (%s); traced anyway" % (
        client,
        OLD[client],
        registry.BY_MODULE[client].supported,
    )
    assert len(said) == 1 and expected in said[0], said
    assert [s["component"] for s in spans_of(proc)] == ["memcached", "memcached"]


@pytest.mark.parametrize("client", sorted(OLD))
def test_unsupported_version_with_safe_instrumentation_is_not_traced(memcached, old_clients, client):
    """``DD_TRACE_SAFE_INSTRUMENTATION_ENABLED=true``: not traced, as ddtrace decides for its own
    integrations (under ddtrace-run its check refuses; by hand, ours), and the status says so."""
    env = dict(first_on_path(old_clients), DD_TRACE_SAFE_INSTRUMENTATION_ENABLED="true")
    proc = under_ddtrace_run([USE[client], REPATCH, USE[client]], memcached, **env)
    assert spans_of(proc) == []
    assert "Skipped patching 'memcached' integration, installed version: %s" % OLD[client] in proc.stderr
    assert proc.stderr.count("memcached: %s %s is not supported" % (client, OLD[client])) == 1  # by hand, once

    report = status_json(env)
    row = {row["client"]: row for row in report["clients"]}[client]
    assert (row["version"], row["in_range"]) == (OLD[client], False)
    expected = "%s %s is outside the supported range %s: not traced (DD_TRACE_SAFE_INSTRUMENTATION_ENABLED)" % (
        client,
        OLD[client],
        registry.BY_MODULE[client].supported,
    )
    assert expected in report["problems"], report["problems"]


def test_status_flags_unsupported_versions(old_clients):
    proc = run_python("from ddtrace_memcached.status import main; main([])", env=first_on_path(old_clients))
    assert proc.returncode == 0, proc.stderr
    for client, version in OLD.items():
        supported = registry.BY_MODULE[client].supported
        row = r"^  %s +%s +%s \(unsupported: %s\) " % (client, client, version, supported)
        assert re.search(row, proc.stdout, re.M), proc.stdout
        assert "  %s %s is outside the supported range %s: traced anyway" % (client, version, supported) in proc.stdout


# --- a fork that installs the same module ---------------------------------------------------------


def test_versions_come_from_the_fork_that_ships_the_module(memcached, tmp_path):
    """pylibmc2 installs ``pylibmc``: with its metadata and pylibmc's both visible, the one
    whose files ``import pylibmc`` loads gives the version, to ddtrace and to the status."""
    if importlib_metadata_version("pylibmc") is None:
        pytest.skip("needs pylibmc's metadata beside the fork's")
    fork = pip_target(tmp_path / "fork", "pylibmc2==1.6.4")
    body = """
    import pylibmc

    import ddtrace_memcached

    pylibmc.Client(["%s:%d" % ADDRESS]).get("k")
    print("@@VERSIONS@@", ddtrace_memcached.get_versions()["pylibmc"], pylibmc.__version__)
    """
    proc = under_ddtrace_run(body, memcached, **first_on_path(fork))
    assert "@@VERSIONS@@ 1.6.4 1.6.4" in proc.stdout, proc.stdout
    assert [s["component"] for s in spans_of(proc)] == ["memcached"]
    report = status_json(first_on_path(fork))
    row = {row["client"]: row for row in report["clients"]}["pylibmc"]
    assert (row["distribution"], row["version"], row["in_range"]) == ("pylibmc2", "1.6.4", True)


def importlib_metadata_version(distribution: str):
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
