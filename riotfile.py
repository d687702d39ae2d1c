"""The test matrix, run with riot (``scripts/test`` runs all of it).

Following dd-trace-py's library support policy: for each client, the oldest and latest
minor of its current major released in the last two years, or its latest release when
it has none; every Python we support is in some suite.

- ``tests``: the core and pymemcache (every test that needs no other client), on the
  newest Python with the latest ddtrace, and on the oldest all that a Python can change; what a release can change
  (``*_VERSIONED_TESTS``) on pymemcache 3.4 (below the gates of RetryingClient, shutdown and
  raw_command), and on ddtrace 3.19 (the oldest supported) and 4.0.
- one suite per other client of ``ddtrace_memcached.registry`` (``client_suite``): the
  contract for that client and ``tests/clients/<module>/`` (its own tests, snapshots aside,
  and its real users: Django, dogpile.cache, cachelib, aiocache), with only that client
  installed; which releases, by the policy above, is ``CLIENT_SUITES``.
- ``ddtrace-run``: the suite's process itself started by ``ddtrace-run``: no explicit
  patch, the integration must be there already (``tests/test_autopatch.py``).
- ``snapshot``: the traces sent to the APM test agent against ``snapshots/``, with every
  client, and with pymemcache 3.4; one pinned ddtrace, since the snapshots hold ddtrace's
  own tags.
- ``wheel``: the built wheel in a fresh venv, under ddtrace-run (the artifact users get).
- ``benchmarks``: a smoke run of ``benchmarks/`` (every variant, OpenTelemetry's too), and the
  instruction budget (``benchmarks/budget.json``), on the Python and ddtrace it was recorded with.
- ``canary``: the newest ddtrace, pre-releases included (reported, never blocking).
- ``stress``: the long reliability runs, of every client (not in CI's run: ``scripts/test stress``).

Commands run ``python -m pytest``: riot's ``python`` is the venv that holds this package
(and its ``.pth`` hook), while the console scripts it installs run another interpreter.

riot finds interpreters as ``python3.X`` on PATH: with pyenv, make them all visible,
e.g. ``PYENV_VERSION=3.11.7:3.9.18:3.10.13:3.12.1:3.13.0`` (``scripts/test`` does).
"""

import os
import sys

from riot import Venv
from riot import latest

# The clients come from the registry, which imports nothing of ddtrace or of a client.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddtrace_memcached import registry  # noqa: E402

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
# pymemcache has had no release in two years (4.0.0, 2022-10): the policy tests the
# latest; 3.4.4 on the oldest Python keeps the version gates (RetryingClient and shutdown
# from 3.5, raw_command from 4.0) tested from below.
PYMEMCACHE_OLDEST = "~=3.4.4"
DDTRACE_OLDER = ["~=3.19.0", "~=4.0.0"]
# (python, ddtrace): the oldest ddtrace on the oldest Python, the oldest 4.x on the newest.
DDTRACE_OLDER_ON = [(PYTHONS[0], DDTRACE_OLDER[0]), (PYTHONS[-1], DDTRACE_OLDER[1])]
# The snapshots hold ddtrace's own tags, and the instruction budget its costs, so they are
# compared with the release they were recorded with; the budget also on its Python.
DDTRACE_SNAPSHOTS = "==4.16.0"
BUDGET_PYTHON = "3.11"
# No background chatter. (DD_TRACE_AGENT_URL, when set, names a test agent to reuse.)
QUIET = {
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_CRASHTRACKING_ENABLED": "false",
}

# Tests that run in a suite of their own only.
OWN_SUITE_MARKERS = ["snapshot", "ddtrace_run", "wheel", "benchmark", "stress"]
NOT_OWN_SUITES = " and ".join("not " + m for m in OWN_SUITE_MARKERS)


# The client the `tests` suite runs with the whole suite; every other one has a suite of its own.
CORE_CLIENT = "pymemcache"
# dd-trace-py's patch-test harness: ~2 s a test, a new interpreter each.
HARNESS = ["tests/ddtrace_harness/"]
# What an older pymemcache can change: the spans and their names; an older ddtrace, also
# ddtrace-run and ddtrace's diagnostics. Not the package's files (test_release, test_registry),
# dd-trace-py's harness, nor the long runs over the integration's own code (the differential
# and memory runs): those run once per Python, in the venvs of the latest releases.
PYMEMCACHE_VERSIONED_TESTS = [
    "tests/test_contract.py",
    "tests/clients/pymemcache/",
    "--ignore=tests/clients/pymemcache/test_differential.py",
    "--ignore=tests/clients/pymemcache/test_stability.py",
    "tests/test_naming.py",
    "tests/test_fast_path.py",
]
DDTRACE_VERSIONED_TESTS = PYMEMCACHE_VERSIONED_TESTS + ["tests/test_entrypoints.py", "tests/test_diagnostics.py"]


# What the newest Python runs alone of the whole suite: the package's files (the wheel suite
# installs it on both), dd-trace-py's harness and the differential run, none of which depends
# on the Python.
NOT_ON_THE_OLDEST_PYTHON = [
    "--ignore=tests/test_release.py",
    "--ignore=tests/ddtrace_harness/",
    "--ignore=tests/clients/pymemcache/test_differential.py",
]


def pymemcache_venv(python: str, ddtrace: str, **kwargs) -> Venv:
    """A venv of pymemcache's latest and ``ddtrace``: the same packages make the same venv,
    which riot installs once for every suite that names it."""
    return Venv(pys=[python], pkgs={"pymemcache": latest, "ddtrace": ddtrace}, **kwargs)


def pytest_command(tests: list) -> str:
    """Runs ``tests`` (no arguments: all), but those of the suites of their own."""
    return "python -m pytest -m '%s' %s {cmdargs}" % (NOT_OWN_SUITES, " ".join(tests))


def _distribution(client: registry.Client, version) -> dict:
    """``{distribution: version}`` for a version of ``CLIENT_SUITES``: the client's first
    distribution, or the one a ``(distribution, version)`` pair names."""
    distribution, version = version if isinstance(version, tuple) else (client.distributions[0], version)
    assert distribution in client.distributions, (client.module, distribution)
    return {distribution: version}


def client_suite(client: registry.Client, versions: list) -> Venv:
    """The contract for ``client``, ``tests/clients/<module>/`` and its ``EXTRA_TESTS``, with
    only that client installed; dd-trace-py's patch-test harness too, in the newest venv.

    ``versions``: ``(python, client's version, {other package: version})``, chosen by the
    support policy; the client's package is the first of its distributions, unless the
    version is a ``(distribution, version)`` pair naming another of them (a fork).
    """
    tests = ["tests/test_contract.py", "tests/clients/%s/" % client.module] + EXTRA_TESTS.get(client.module, [])
    return Venv(
        name=client.module,
        env={"MEMCACHED_CONTRACT_CLIENTS": client.module},
        venvs=[
            Venv(
                pys=[python],
                pkgs={"ddtrace": latest, **_distribution(client, version), **others},
                # dd-trace-py's harness checks patch()/unpatch() against the client's import,
                # not its release: once, in the newest venv.
                command=pytest_command(tests + (HARNESS if i == len(versions) - 1 else [])),
            )
            for i, (python, version, others) in enumerate(versions)
        ],
    )


# Each client's suite by the support policy: (python, client's version or (distribution,
# version), other packages).
CLIENT_SUITES = {
    # pylibmc: no release in two years (1.6.3): the latest. PyPI has wheels up to Python
    # 3.11. On 3.13 the venv tests pylibmc2, the maintained fork that installs the same module
    # with wheels for 3.12+, where users move to it, rather than building pylibmc from source
    # (the snapshot and stress suites, on 3.12 and 3.13, still do that, against libmemcached 1.1).
    "pylibmc": [
        ("3.9", latest, {"django": "~=4.2.0", "pymemcache": latest}),
        ("3.13", ("pylibmc2", latest), {"django": latest, "pymemcache": latest}),
    ],
    # python-memcached: no release in two years (1.62, 2024-01): the latest, with its real
    # users dogpile.cache and cachelib.
    "memcache": [("3.13", latest, {"dogpile.cache": latest, "cachelib": latest})],
    # python-binary-memcached: the oldest and the latest minor within two years (0.31.4,
    # 2025-01; the latest, 0.33, needs Python >= 3.10), with dogpile.cache.
    "bmemcached": [("3.9", "~=0.31.4", {"dogpile.cache": latest}), ("3.13", latest, {"dogpile.cache": latest})],
    # meta-memcache: the oldest and the latest minor of its current major (4.0.0 and 4.3.0,
    # both 2026-10); it needs Python >= 3.10 (on 3.9 pip resolves 2.0.0).
    "meta_memcache": [("3.10", "~=4.0.0", {}), ("3.13", latest, {})],
    # aiomcache: no release in two years (0.8.2, 2024-05): the latest, with its real users
    # aiocache + aiohttp.
    "aiomcache": [("3.13", latest, {"aiocache": latest, "aiohttp": latest, "uvloop": latest})],
    # emcache: 1.3.1 (2025-05) and 1.3.3 (2026-01, the latest): the releases within two
    # years; wheels for cp38-cp313 (1.3.1) and up to cp314 (1.3.3).
    "emcache": [("3.9", "==1.3.1", {}), ("3.13", latest, {"uvloop": latest})],
    # libmc: 1.4.11 (2025-07) to 1.4.17 (2026-10, the latest) are the releases of its current
    # major within two years, all of minor 1.4: the oldest and the latest; wheels for cp39-cp313
    # (1.4.11) and up to cp315 (1.4.17).
    "libmc": [("3.9", "==1.4.11", {}), ("3.13", latest, {})],
}
# Tests a client's suite runs beyond its directory: the demo, whose app uses pylibmc beside pymemcache.
EXTRA_TESTS = {"pylibmc": ["tests/test_example.py"]}

OTHER_CLIENTS = [client for client in registry.CLIENTS if client.module != CORE_CLIENT]
if sorted(CLIENT_SUITES) != sorted(client.module for client in OTHER_CLIENTS):
    raise ValueError("CLIENT_SUITES must name every registry client but %s: %s" % (CORE_CLIENT, sorted(CLIENT_SUITES)))

# Every client, at its latest release, for the snapshot, benchmarks and stress suites.
ALL_CLIENTS = {client.distributions[0]: latest for client in registry.CLIENTS}

venv = Venv(
    pkgs={"pytest": latest, "hypothesis": latest, "gevent": latest, "pytest-asyncio": "~=1.2"},
    env=QUIET,
    venvs=[
        Venv(
            name="tests",
            # The newest Python runs everything, the oldest all that a Python can change (the
            # ones between run the client suites, the snapshot, benchmarks and canary suites).
            # The older releases, pymemcache 3.4 on the oldest Python, ddtrace 3.19 on the oldest
            # and 4.0 on the newest, run what a release can change (*_VERSIONED_TESTS).
            venvs=[
                pymemcache_venv(PYTHONS[-1], latest, command=pytest_command([])),
                pymemcache_venv(PYTHONS[0], latest, command=pytest_command(NOT_ON_THE_OLDEST_PYTHON)),
                Venv(
                    pys=[PYTHONS[0]],
                    pkgs={"pymemcache": PYMEMCACHE_OLDEST, "ddtrace": latest},
                    command=pytest_command(PYMEMCACHE_VERSIONED_TESTS),
                ),
                *(
                    pymemcache_venv(python, ddtrace, command=pytest_command(DDTRACE_VERSIONED_TESTS))
                    for python, ddtrace in DDTRACE_OLDER_ON
                ),
            ],
        ),
        *(client_suite(client, CLIENT_SUITES[client.module]) for client in OTHER_CLIENTS),
        Venv(
            name="ddtrace-run",
            command="ddtrace-run python -m pytest -m ddtrace_run {cmdargs}",
            # The `tests` suite's venvs: riot installs them once.
            venvs=[pymemcache_venv(python, ddtrace) for python, ddtrace in DDTRACE_OLDER_ON + [(PYTHONS[-1], latest)]],
        ),
        Venv(
            name="snapshot",
            command="python -m pytest -m snapshot {cmdargs}",
            # Python 3.9 names a timeout socket.timeout, not TimeoutError, in error.type.
            pys=["3.12"],
            venvs=[
                Venv(pkgs={**ALL_CLIENTS, "ddtrace": DDTRACE_SNAPSHOTS}),
                Venv(pkgs={"pymemcache": PYMEMCACHE_OLDEST, "ddtrace": DDTRACE_SNAPSHOTS}),
            ],
        ),
        Venv(
            name="wheel",
            command="python -m pytest -m wheel {cmdargs}",
            pys=[PYTHONS[0], PYTHONS[-1]],
            pkgs={"pymemcache": latest, "ddtrace": latest},
        ),
        Venv(
            name="benchmarks",
            command="python -m pytest -m benchmark {cmdargs}",
            # Every client (a missing one has no row). The instruction budget
            # (benchmarks/budget.json) is compared on the Python and ddtrace it was recorded
            # with: counts differ between interpreters and releases.
            pys=[BUDGET_PYTHON],
            pkgs={
                **ALL_CLIENTS,
                "ddtrace": DDTRACE_SNAPSHOTS,
                "msgpack": latest,
                "opentelemetry-instrumentation-pymemcache": latest,
                "opentelemetry-sdk": latest,
                "matplotlib": latest,
            },
        ),
        Venv(
            # The next ddtrace before it ships: a specifier naming a pre-release lets pip (and
            # riot's pip-compile) choose pre-releases, so this is the newest ddtrace on PyPI,
            # pre-release or not (riot has no --pre). scripts/test recompiles it every run (-c)
            # and never lets it fail the build.
            name="canary",
            command="python -m pytest -m '%s' -k 'pymemcache or not test_contract' "
            "tests/test_contract.py tests/test_entrypoints.py tests/test_release.py {cmdargs}" % NOT_OWN_SUITES,
            pys=["3.12"],
            pkgs={"pymemcache": latest, "ddtrace": ">=3.19.0.dev0"},
        ),
        Venv(
            name="stress",
            command="python -m pytest -m stress {cmdargs}",
            pys=["3.13"],
            pkgs={**ALL_CLIENTS, "ddtrace": latest},
        ),
    ],
)
