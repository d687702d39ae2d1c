"""Release readiness: the self-check against a ddtrace that moved what the hook uses, the
status command, the package's metadata, and what installing and uninstalling leave behind.

A ddtrace that lacks one private name is simulated in a fresh interpreter started with
``-S``: a finder placed before ``site.main()`` runs (so before ``ddtrace_memcached.pth``
and ``ddtrace-run``'s sitecustomize) hides that name from attribute access on the module
right after it executed, and before the hook registers. ddtrace's own functions still
find it in their globals, as they would in a release that renamed it consistently.
"""

import importlib.util
import json
from pathlib import Path
import re
import subprocess
import sys
import textwrap
import types

import pytest

import _ddtrace_memcached_hook as hook
from conftest import app
from conftest import ddtrace_run
from conftest import spans_of
from conftest import subprocess_env
from ddtrace_memcached import registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WARNING = "cannot enable the memcached integration"
CLIENT_COMMANDS = """
from pymemcache.client.base import Client

client = Client(ADDRESS)
client.set("k", b"v", noreply=False)
assert client.get("k") == b"v"
"""
RESOURCES = ["set", "get"]
PATCH = """
import ddtrace

ddtrace.patch(memcached=True, raise_errors=False)
"""
PATCH_RAISING = """
import ddtrace

ddtrace.patch(memcached=True)
"""
BY_HAND = """
import ddtrace

ddtrace.patch(memcached=True, raise_errors=False)

import ddtrace_memcached

ddtrace_memcached.patch()
"""

# Runs before site.main(): ``HIDE`` (module, name) disappears from the module's attributes
# once it has executed; ``AFTER_EXEC`` (code, with ``module``) runs then too.
_PRELUDE = """
import importlib.machinery
import sys
import types

HIDE = {hide!r}
TARGET = {target!r}


class _Hiding(types.ModuleType):
    def __getattribute__(self, name):
        if name == HIDE:
            raise AttributeError("module %r has no attribute %r" % (TARGET, name))
        return super().__getattribute__(name)


class _Loader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        if HIDE:
            module.__class__ = _Hiding
{after_exec}


class _Finder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        sys.meta_path.remove(cls)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder)
import site

site.main()
"""


def prelude(hide=None, target="ddtrace._monkey", after_exec="") -> str:
    after = textwrap.indent(textwrap.dedent(after_exec), " " * 8) if after_exec else ""
    return _PRELUDE.format(hide=hide, target=target, after_exec=after)


def run_stripped(code: str, env=None, under_ddtrace_run=False) -> subprocess.CompletedProcess:
    """``python -S -c code`` (``code`` calls ``site.main()`` itself), optionally under ddtrace-run."""
    argv = [*(ddtrace_run() if under_ddtrace_run else []), sys.executable, "-S", "-c", code]
    return subprocess.run(argv, env=subprocess_env(**(env or {})), capture_output=True, text=True, timeout=120)


def components(spans: list) -> list:
    return [(s["resource"], s["component"]) for s in spans]


def warnings_in(proc: subprocess.CompletedProcess) -> list:
    return [line for line in proc.stderr.splitlines() if WARNING in line]


def assert_one_warning(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    found = warnings_in(proc)
    assert len(found) == 1, proc.stderr
    (line,) = found
    import ddtrace

    for fragment in (ddtrace.__version__, hook.ISSUES_URL, "ddtrace_memcached.patch()", *fragments):
        assert fragment in line, (fragment, line)
    return line


# --- 1. the self-check -----------------------------------------------------------------

REQUIRED = [name for name in hook.MONKEY_NAMES if name != "patch"]  # without patch, ddtrace cannot import


def test_harness_without_hiding_traces_with_ours(memcached):
    """The harness itself changes nothing: no name hidden, ours traces and nothing warns."""
    for code, under in ((PATCH, False), ("", True)):
        proc = run_stripped(app([code, CLIENT_COMMANDS], memcached, prelude=prelude()), under_ddtrace_run=under)
        assert components(spans_of(proc)) == [(r, "memcached") for r in RESOURCES]
        assert warnings_in(proc) == [], proc.stderr


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize(
    "entry", [pytest.param((PATCH, False), id="ddtrace.patch"), pytest.param(("", True), id="ddtrace-run")]
)
def test_missing_private_name_falls_back_to_the_builtin(memcached, name, entry):
    """A ddtrace without one name the hook needs: the app runs, one warning says what and
    where to report it, and ddtrace's built-in pymemcache integration traces."""
    code, under_ddtrace_run = entry
    proc = run_stripped(
        app([code, CLIENT_COMMANDS], memcached, prelude=prelude(name)), under_ddtrace_run=under_ddtrace_run
    )
    assert components(spans_of(proc)) == [(r, "pymemcache") for r in RESOURCES]
    assert_one_warning(proc, name, "pymemcache")


def test_missing_private_name_with_raise_errors(memcached):
    """``ddtrace.patch(memcached=True)`` (raise_errors defaults to True): no exception either."""
    proc = run_stripped(app([PATCH_RAISING, CLIENT_COMMANDS], memcached, prelude=prelude("_on_import_factory")))
    assert components(spans_of(proc)) == [(r, "pymemcache") for r in RESOURCES]
    assert_one_warning(proc, "_on_import_factory")


@pytest.mark.parametrize("name", REQUIRED)
def test_missing_private_name_then_patch_by_hand(memcached, name):
    """The warning's advice works: ``ddtrace_memcached.patch()`` gives our spans, one per command."""
    proc = run_stripped(app([BY_HAND, CLIENT_COMMANDS], memcached, prelude=prelude(name)))
    assert components(spans_of(proc)) == [(r, "memcached") for r in RESOURCES]
    assert_one_warning(proc, name)


@pytest.mark.parametrize(
    "env",
    [{"DD_TRACE_MEMCACHED_ENABLED": "false"}, {"DD_PATCH_MODULES": "flask:true,memcached:false"}],
    ids=["DD_TRACE_MEMCACHED_ENABLED", "DD_PATCH_MODULES"],
)
def test_missing_private_name_switched_off_stays_quiet(memcached, env):
    """Switched off: the user wants none of it, so no warning; the built-in traces."""
    proc = run_stripped(
        app(CLIENT_COMMANDS, memcached, prelude=prelude("_on_import_factory")), env=env, under_ddtrace_run=True
    )
    assert components(spans_of(proc)) == [(r, "pymemcache") for r in RESOURCES]
    assert warnings_in(proc) == [], proc.stderr


@pytest.mark.parametrize("name", hook.OPTIONAL_MONKEY_NAMES[:1])
def test_missing_optional_name_keeps_ours(memcached, name):
    """Bookkeeping the hook can do without: ours still traces, and nothing warns."""
    proc = run_stripped(app(CLIENT_COMMANDS, memcached, prelude=prelude(name)), under_ddtrace_run=True)
    assert components(spans_of(proc)) == [(r, "memcached") for r in RESOURCES]
    assert warnings_in(proc) == [], proc.stderr


def test_missing_integration_configs_falls_back(memcached):
    """A config module without ``INTEGRATION_CONFIGS``: ddtrace would refuse ``config.memcached``
    and ours could start no span, so the hook warns and the built-in traces."""
    import ddtrace

    target = type(ddtrace.config).__module__
    proc = run_stripped(
        app(CLIENT_COMMANDS, memcached, prelude=prelude("INTEGRATION_CONFIGS", target=target)),
        under_ddtrace_run=True,
    )
    assert components(spans_of(proc)) == [(r, "pymemcache") for r in RESOURCES]
    assert_one_warning(proc, "INTEGRATION_CONFIGS")


def test_ddtrace_run_that_never_asks_for_memcached_warns(memcached):
    """A ddtrace-run whose ``_patch_all`` drops names it does not ship (all registration
    succeeded): at its end nothing of ours is set up, so one warning; the built-in traces."""
    drop_ours = """
    _original_patch_all = module._patch_all


    def _patch_all(**patch_modules):
        module.PATCH_MODULES.pop("memcached", None)
        return _original_patch_all(**patch_modules)


    module._patch_all = _patch_all
    """
    proc = run_stripped(app(CLIENT_COMMANDS, memcached, prelude=prelude(after_exec=drop_ours)), under_ddtrace_run=True)
    assert components(spans_of(proc)) == [(r, "pymemcache") for r in RESOURCES]
    assert_one_warning(proc, "ddtrace-run (or import ddtrace.auto) ended without enabling it")


def test_register_without_patch_never_raises(monkeypatch, caplog):
    """A ``_monkey`` without even ``patch``: register() warns once and raises nothing."""
    for name, value in (("problem", None), ("asked", False), ("set_up", False), ("warned", False)):
        monkeypatch.setattr(hook._State, name, value)
    stripped = types.SimpleNamespace(PATCH_MODULES={})
    with caplog.at_level("WARNING", logger="ddtrace.contrib.memcached"):
        hook.register(stripped)
        hook.register(stripped)
    assert stripped.PATCH_MODULES == {}
    messages = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert len(messages) == 1, messages
    assert "AttributeError" in messages[0] and "patch" in messages[0]
    assert hook.state()["problem"].startswith("AttributeError")


# --- 2. python -m ddtrace_memcached ----------------------------------------------------


def status(*args, env=None, under_ddtrace_run=False, code=None) -> subprocess.CompletedProcess:
    argv = [*(ddtrace_run() if under_ddtrace_run else []), sys.executable]
    argv += ["-S", "-c", code] if code else ["-m", "ddtrace_memcached", *args]
    proc = subprocess.run(argv, env=subprocess_env(**(env or {})), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def by_client(report: dict) -> dict:
    return {row["client"]: row for row in report["clients"]}


def installed(distribution: str):
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def test_status_json_without_ddtrace_run():
    """Versions from the installed distributions, no client imported, the hook registered,
    nothing enabled yet, and the settings from the environment."""
    env = {
        "DD_MEMCACHED_SERVICE": "sessions-cache",
        "DD_TRACE_MEMCACHED_COMMAND_ENABLED": "true",
        "DD_TRACE_MEMCACHED_CLIENTS": "pylibmc,emcache",
    }
    report = json.loads(status("--json", env=env).stdout)
    import ddtrace_memcached

    assert report["ddtrace_memcached"] == ddtrace_memcached.__version__
    assert report["ddtrace"] == installed("ddtrace") and report["wrapt"] == installed("wrapt")
    assert report["registration"] == dict(
        registered=True,
        in_patch_modules=True,
        patch_is_ours=True,
        enabled_via_ddtrace=False,
        set_up=False,
        problem=None,
    )
    rows = by_client(report)
    assert list(rows) == [client.module for client in registry.CLIENTS]
    for client, row in rows.items():
        assert row["version"] == installed(row["distribution"]), row
        assert row["imported"] is False and row["patched_by"] == [], row
        assert row["covered"] is (client in ("pylibmc", "emcache")), row
    assert report["settings"] == {
        "DD_TRACE_MEMCACHED_ENABLED": True,
        "DD_TRACE_MEMCACHED_CLIENTS": "pylibmc,emcache",
        "covered_clients": ["pylibmc", "emcache"],
        "DD_MEMCACHED_SERVICE": "sessions-cache",
        "service": "sessions-cache",
        "DD_TRACE_MEMCACHED_COMMAND_ENABLED": True,
        "DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v0",
    }


@pytest.mark.parametrize(
    "env, expected",
    [
        pytest.param({}, {"pymemcache": ["memcached"], "pylibmc": ["memcached"]}, id="defaults"),
        pytest.param(
            {"DD_TRACE_MEMCACHED_CLIENTS": "pylibmc"},
            {"pymemcache": ["pymemcache"], "pylibmc": ["memcached"]},
            id="pymemcache-left-out",
        ),
        pytest.param(
            {"DD_TRACE_MEMCACHED_ENABLED": "false"},
            {"pymemcache": ["pymemcache"], "pylibmc": ["pylibmc"]},
            id="disabled",
        ),
    ],
)
def test_status_under_ddtrace_run_names_who_traces_each_client(env, expected):
    """With --import-clients under ddtrace-run: ours or ddtrace's built-in, per client."""
    expected = {client: who for client, who in expected.items() if importlib.util.find_spec(client) is not None}
    if not expected:
        pytest.skip("neither pymemcache nor pylibmc is installed")
    report = json.loads(status("--json", "--import-clients", env=env, under_ddtrace_run=True).stdout)
    rows = by_client(report)
    assert {client: rows[client]["patched_by"] for client in expected} == expected
    assert report["registration"]["enabled_via_ddtrace"] is ("DD_TRACE_MEMCACHED_ENABLED" not in env)
    assert report["registration"]["set_up"] is ("DD_TRACE_MEMCACHED_ENABLED" not in env)


def test_status_text_report():
    """The text form: one line per fact, under ddtrace-run with pymemcache imported."""
    text = status("--import-clients", under_ddtrace_run=True).stdout
    import ddtrace

    assert text.startswith("ddtrace-memcached ")
    assert re.search(r"^  ddtrace +%s$" % re.escape(ddtrace.__version__), text, re.M), text
    assert re.search(r"^  registered +yes$", text, re.M), text
    assert re.search(r"^  enabled via ddtrace +yes$", text, re.M), text
    assert re.search(r"^  pymemcache +pymemcache +\S+ +covered +traced by memcached \(this package\)$", text, re.M)
    assert re.search(r"^  DD_TRACE_MEMCACHED_ENABLED +True$", text, re.M), text


def test_status_reports_the_self_check_problem():
    """In a process whose ddtrace lacks a name the hook needs, the report says so."""
    code = prelude("when_imported") + "\nfrom ddtrace_memcached.status import main\n\nmain(['--json'])\n"
    proc = status(code=code)
    report = json.loads(proc.stdout)
    assert report["registration"]["registered"] is False
    assert "when_imported" in report["registration"]["problem"]
    assert len(warnings_in(proc)) == 1, proc.stderr


def test_status_in_process_sees_our_patch(patched):
    """In a running app: ``patched_by`` finds our wrapper on pymemcache's methods, and
    nothing once unpatched."""
    import pymemcache.client.base  # noqa: F401

    import ddtrace_memcached
    from ddtrace_memcached import status as report

    assert report.patched_by("pymemcache") == ["memcached"]
    ddtrace_memcached.unpatch()
    assert report.patched_by("pymemcache") == []
    ddtrace_memcached.patch()
    assert report.patched_by("pymemcache") == ["memcached"]


# --- 3. metadata -----------------------------------------------------------------------


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def test_no_client_is_a_dependency_and_each_has_an_extra():
    project = pyproject()["project"]
    names = [re.split(r"[<>=~!;\[ ]", d)[0].lower() for d in project["dependencies"]]
    assert not {d for client in registry.CLIENTS for d in client.distributions} & set(names), names
    extras = project["optional-dependencies"]
    for client in registry.CLIENTS:
        assert extras[client.extra] == ["%s%s" % (client.distributions[0], client.supported)]
    assert any(d.startswith("pymemcache") for d in extras["test"])  # the suite's fixtures use it


def test_project_urls_classifiers_and_version():
    data = pyproject()
    project = data["project"]
    assert project["urls"]["Issues"] == hook.ISSUES_URL
    assert project["requires-python"] == ">=3.9"
    for minor in range(9, 14):
        assert "Programming Language :: Python :: 3.%d" % minor in project["classifiers"]
    assert {"Framework :: AsyncIO", "Framework :: Django", "Framework :: Flask"} <= set(project["classifiers"])
    assert project["dynamic"] == ["version"]
    assert data["tool"]["hatch"]["version"]["path"] == "ddtrace_memcached/__init__.py"


def test_changelog_lists_every_client():
    changelog = (PROJECT_ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    for distribution in (client.distributions[0] for client in registry.CLIENTS):
        assert "`%s`" % distribution in changelog, distribution


# --- 4. the built package: install, uninstall ---------------------------------------------


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    env = subprocess_env(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, "%s\n%s\n%s" % (argv, proc.stdout, proc.stderr)
    return proc


def _ours_in(site_packages: Path) -> list:
    """Every file or directory of this package there, compiled hook included."""
    found = [p.name for p in site_packages.iterdir() if p.name.startswith(("ddtrace_memcached", "_ddtrace_memcached"))]
    cache = site_packages / "__pycache__"
    if cache.is_dir():
        found += ["__pycache__/" + p.name for p in cache.iterdir() if p.name.startswith("_ddtrace_memcached_hook")]
    return sorted(found)


@pytest.mark.wheel
def test_uninstall_leaves_nothing_behind(tmp_path):
    """Install the wheel in a fresh venv, let the hook run (and be compiled), then
    ``pip uninstall``: no .pth, no hook module, no package directory remain, and new
    interpreters start without the hook."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), "."], cwd=PROJECT_ROOT)
    (wheel,) = wheels.glob("ddtrace_memcached-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    site_packages = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    loaded = "import sys; print('_ddtrace_memcached_hook' in sys.modules)"

    _run([python, "-m", "pip", "install", "--no-deps", str(wheel)])
    assert _run([python, "-c", loaded], cwd=tmp_path).stdout.strip() == "True"
    present = _ours_in(site_packages)
    for name in ("ddtrace_memcached", "ddtrace_memcached.pth", "_ddtrace_memcached_hook.py"):
        assert name in present, present

    _run([python, "-m", "pip", "uninstall", "-y", "ddtrace-memcached"])
    assert _ours_in(site_packages) == []
    assert _run([python, "-c", loaded], cwd=tmp_path).stdout.strip() == "False"


@pytest.mark.wheel
def test_check_package_script():
    """scripts/check-package: sdist and wheel build, pass twine, hold what they must, and the
    sdist installs into a fresh venv where the hook is active.

    Runs where pytest's interpreter has ``build`` and ``twine`` (the dev extra, as in
    ``.venv``); scripts/test runs the script itself once, not in every riot wheel venv.
    """
    if importlib.util.find_spec("build") is None or importlib.util.find_spec("twine") is None:
        pytest.skip("needs build and twine (the dev extra); scripts/test runs scripts/check-package")
    proc = _run(["bash", str(PROJECT_ROOT / "scripts" / "check-package"), sys.executable], cwd=PROJECT_ROOT)
    assert proc.stdout.rstrip().endswith("check-package: passed"), proc.stdout
