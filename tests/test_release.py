"""Release readiness: the self-check against a ddtrace that moved what the hook uses, the
status command, the package's metadata, and what installing and uninstalling leave behind.

A ddtrace that lacks one private name is simulated in a fresh interpreter started with
``-S``: a finder placed before ``site.main()`` runs (so before ``ddtrace_memcached.pth``
and ``ddtrace-run``'s sitecustomize) hides that name from attribute access on the module
right after it executed, and before the hook registers. ddtrace's own functions still
find it in their globals, as they would in a release that renamed it consistently.
"""

import ast
import importlib.util
import json
from pathlib import Path
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import types
from typing import Optional

import pytest

import _ddtrace_memcached_hook as hook
from apps import MARK
from apps import app
from apps import ddtrace_run
from apps import spans_of
from apps import subprocess_env
import ddtrace_memcached
from ddtrace_memcached import registry
from ddtrace_memcached import status as status_module

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VERSION = ddtrace_memcached.__version__
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
    nothing enabled yet (with the hint to run it under ddtrace-run), ddtrace's diagnostics
    taught, and the settings as set and as resolved."""
    env = {
        "DD_MEMCACHED_SERVICE": "sessions-cache",
        "DD_TRACE_MEMCACHED_COMMAND_ENABLED": "true",
        "DD_TRACE_MEMCACHED_CLIENTS": "pylibmc,emcache",
    }
    report = json.loads(status("--json", env=env).stdout)
    import ddtrace_memcached

    assert report["ddtrace_memcached"] == ddtrace_memcached.__version__
    assert report["ddtrace"] == installed("ddtrace") and report["wrapt"] == installed("wrapt")
    assert report["gevent"] == installed("gevent")
    assert report["os"].startswith(platform.system() + " " + platform.release())
    assert report["registration"] == dict(
        registered=True,
        in_patch_modules=True,
        patch_is_ours=True,
        under_ddtrace_run=False,
        enabled_via_ddtrace=False,
        set_up=False,
        problem=None,
        hint=report["registration"]["hint"],
    )
    assert "ddtrace-run python -m ddtrace_memcached" in report["registration"]["hint"]
    assert report["diagnostics"] == {"supported_configurations": "ok", "startup_log": "ok"}
    rows = by_client(report)
    assert list(rows) == [client.module for client in registry.CLIENTS]
    for client, row in rows.items():
        assert (row["distribution"], row["version"]) == (
            registry.installed(registry.BY_MODULE[client])
            if row["version"]
            else (registry.BY_MODULE[client].distributions[0], None)
        ), row
        assert row["imported"] is False and row["patched_by"] == [], row
        assert row["covered"] is row["selected"] is (client in ("pylibmc", "emcache")), row
    assert report["switches"] == {
        "memcached": {"enabled": True, "source": "default"},
        "pymemcache": {"enabled": True, "source": "default"},
        "pylibmc": {"enabled": True, "source": "default"},
    }
    assert report["settings"] == {
        **{name: None for name in status_module.SHOWN_ENV},
        **env,
        "clients_selected": ["pylibmc", "emcache"],
        "clients_unknown": [],
        "service": "sessions-cache",
        "command_enabled": True,
        "schema": "v0",
    }
    assert report["problems"] == []


def test_status_names_the_setting_behind_each_switch():
    """``DD_PATCH_MODULES`` decides over ``DD_TRACE_<NAME>_ENABLED`` (as in ddtrace-run): the
    report says which one did, does not show an unset variable as set, and calls no client
    covered while memcached is off."""
    env = {"DD_PATCH_MODULES": "memcached:false", "DD_TRACE_MEMCACHED_ENABLED": "true", "DD_TRACE_PYLIBMC_ENABLED": "0"}
    report = json.loads(status("--json", env=env).stdout)
    assert report["switches"] == {
        "memcached": {"enabled": False, "source": "DD_PATCH_MODULES=memcached:false"},
        "pymemcache": {"enabled": True, "source": "default"},
        "pylibmc": {"enabled": False, "source": "DD_TRACE_PYLIBMC_ENABLED=0"},
    }
    assert {name: report["settings"][name] for name in env} == env
    assert report["settings"]["DD_TRACE_PYMEMCACHE_ENABLED"] is None
    assert [row["covered"] for row in report["clients"]] == [False] * len(registry.CLIENTS)
    assert all(row["selected"] for row in report["clients"])
    text = status(env=env).stdout
    assert re.search(r"^  memcached +off \(DD_PATCH_MODULES=memcached:false\)$", text, re.M), text
    assert re.search(r"^  pymemcache +pymemcache +\S+ +not covered: memcached is off ", text, re.M), text
    assert re.search(r"^  DD_TRACE_PYMEMCACHE_ENABLED +\(unset\)$", text, re.M), text


@pytest.mark.parametrize(
    "value, selected, unknown",
    [
        ("bogus", [], ["bogus"]),
        ("memcached", [], ["memcached"]),
        ("python-memcached", ["memcache"], []),
        ("PyLibMC2, python-binary-memcached", ["pylibmc", "bmemcached"], []),
        ("all,bogus", [client.module for client in registry.CLIENTS], ["bogus"]),
    ],
)
def test_status_shows_what_the_clients_setting_resolved_to(value, selected, unknown):
    report = json.loads(status("--json", env={"DD_TRACE_MEMCACHED_CLIENTS": value}).stdout)
    assert report["settings"]["DD_TRACE_MEMCACHED_CLIENTS"] == value
    assert (report["settings"]["clients_selected"], report["settings"]["clients_unknown"]) == (selected, unknown)
    problems = [p for p in report["problems"] if p.startswith("DD_TRACE_MEMCACHED_CLIENTS names no client")]
    assert len(problems) == (1 if unknown else 0), report["problems"]
    for name in unknown:
        assert name in problems[0] and registry.described() in problems[0]


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
    assert report["registration"]["under_ddtrace_run"] is True and report["registration"]["hint"] is None


def test_status_text_report():
    """The text form: one line per fact, under ddtrace-run with pymemcache imported."""
    text = status("--import-clients", under_ddtrace_run=True).stdout
    import ddtrace

    assert text.startswith("ddtrace-memcached ")
    assert re.search(r"^  ddtrace +%s$" % re.escape(ddtrace.__version__), text, re.M), text
    assert re.search(r"^  registered +yes$", text, re.M), text
    assert re.search(r"^  enabled via ddtrace +yes$", text, re.M), text
    assert re.search(r"^  pymemcache +pymemcache +\S+ +covered; traced by memcached \(this package\)$", text, re.M)
    assert re.search(r"^  memcached +on \(default\)$", text, re.M), text
    assert re.search(r"^  DD_TRACE_MEMCACHED_ENABLED +\(unset\)$", text, re.M), text
    assert text.rstrip().endswith("Problems\n  none"), text


def test_status_reports_the_self_check_problem():
    """In a process whose ddtrace lacks a name the hook needs, the report says so."""
    code = prelude("when_imported") + "\nfrom ddtrace_memcached.status import main\n\nmain(['--json'])\n"
    proc = status(code=code)
    report = json.loads(proc.stdout)
    assert report["registration"]["registered"] is False
    assert "when_imported" in report["registration"]["problem"]
    assert len(warnings_in(proc)) == 1, proc.stderr


@pytest.mark.parametrize(
    "name, target, diagnostic",
    [
        ("collect", "ddtrace.internal.debug", "startup_log"),
        ("SUPPORTED_CONFIGURATIONS", "ddtrace.internal.settings.env", "supported_configurations"),
    ],
)
def test_a_diagnostic_ddtrace_moved_is_reported_and_tracing_goes_on(memcached, name, target, diagnostic):
    """ddtrace without what teaching one of its diagnostics needs: ours still traces, nothing
    warns, and the status report says which diagnostic does not know memcached, and why."""
    report_json = "\nfrom ddtrace_memcached.status import main\n\nmain(['--json'])\n"
    proc = run_stripped(app([PATCH, CLIENT_COMMANDS], memcached, prelude=prelude(name, target=target)) + report_json)
    assert components(spans_of(proc)) == [(r, "memcached") for r in RESOURCES]
    assert warnings_in(proc) == [], proc.stderr
    report = json.loads(proc.stdout.split(MARK, 1)[1].split("\n", 1)[1])
    assert name in report["diagnostics"][diagnostic] and target in report["diagnostics"][diagnostic]
    assert [p for p in report["problems"] if name in p] == [
        "ddtrace's %s does not know memcached: %s" % (diagnostic.replace("_", " "), report["diagnostics"][diagnostic])
    ]


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


def requirement_names(text: str) -> list:
    """The distributions a requirements file or list names (``-r`` lines left out)."""
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [re.split(r"[<>=~!;\[ ]", line)[0].lower() for line in lines if line and not line.startswith("-")]


def test_no_client_is_a_dependency_and_the_extras_are_the_clients():
    """Users get one extra per client (its supported range) and nothing else: the tools of
    the tests, the demo and the benchmarks are requirements files, not published extras."""
    project = pyproject()["project"]
    names = requirement_names("\n".join(project["dependencies"]))
    assert not {d for client in registry.CLIENTS for d in client.distributions} & set(names), names
    extras = project["optional-dependencies"]
    assert set(extras) == {client.extra for client in registry.CLIENTS}
    for client in registry.CLIENTS:
        assert extras[client.extra] == ["%s%s" % (client.distributions[0], client.supported)]


TOOLS = {"pytest", "hypothesis", "ruff", "riot", "build", "twine", "gevent", "pytest-asyncio", "matplotlib"}


def test_tooling_requirements_files():
    """requirements/: test.txt and dev.txt (what scripts/bootstrap installs in .venv), bench.txt
    (benchmarks/run), and the demo's: demo.txt, exactly the clients examples/app.py imports,
    and agent.txt, the test agent; neither holds a test tool."""
    files = {
        p.name: (PROJECT_ROOT / "requirements" / p.name).read_text() for p in (PROJECT_ROOT / "requirements").iterdir()
    }
    assert set(files) == {"test.txt", "dev.txt", "bench.txt", "demo.txt", "agent.txt"}
    assert "pymemcache" in requirement_names(files["test.txt"])  # the suite's fixtures use it
    assert {"-r agent.txt", "-r demo.txt"} <= set(files["dev.txt"].splitlines())
    # uv: riot's requirements compiler, which scripts/bootstrap selects.
    assert {"build", "twine", "riot", "uv"} <= set(requirement_names(files["dev.txt"]))
    assert "opentelemetry-sdk" in requirement_names(files["bench.txt"])
    bootstrap = (PROJECT_ROOT / "scripts" / "bootstrap").read_text()
    assert "pip_install . -r requirements/test.txt -r requirements/dev.txt" in bootstrap
    assert "export RIOT_PIP_COMPILE_BACKEND=uv" in bootstrap
    demo = (PROJECT_ROOT / "scripts" / "demo").read_text()
    assert "-r requirements/demo.txt" in demo and "-r requirements/agent.txt" in demo and "test.txt" not in demo

    app = ast.parse((PROJECT_ROOT / "examples" / "app.py").read_text())
    imported = {alias.name for node in ast.walk(app) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(app) if isinstance(node, ast.ImportFrom) and node.module}
    clients = {
        registry.BY_MODULE[name.split(".")[0]].extra for name in imported if name.split(".")[0] in registry.BY_MODULE
    }
    assert clients and sorted(requirement_names(files["demo.txt"])) == sorted(clients)
    assert requirement_names(files["agent.txt"]) == ["ddapm-test-agent"]
    assert not TOOLS & set(requirement_names(files["demo.txt"] + files["agent.txt"]))


def test_authors_and_license_metadata():
    """Authors and maintainers, no person invented; the license as an SPDX expression, which
    hatchling writes as the ``License`` field that every pip shows (core metadata 2.3)."""
    data = pyproject()
    project = data["project"]
    assert project["authors"] == project["maintainers"] == [{"name": "ddtrace-memcached maintainers"}]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    targets = data["tool"]["hatch"]["build"]["targets"]
    assert targets["wheel"]["core-metadata-version"] == targets["sdist"]["core-metadata-version"] == "2.3"


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


def test_changelog_heads_with_the_version():
    """An Unreleased section for the ongoing work, then the version __init__.py holds, each
    with its link (scripts/release checks the same, and the release date)."""
    import ddtrace_memcached

    changelog = (PROJECT_ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^]]+)\]", changelog, re.M)
    assert headings[:2] == ["Unreleased", ddtrace_memcached.__version__], headings
    for name in headings[:2]:
        assert re.search(r"^\[%s\]: https://" % re.escape(name), changelog, re.M), name


# --- 3b. scripts/release, in a git repository of its own made from this tree


@pytest.fixture
def release_repo(tmp_path):
    """A copy of this tree (``.path``), committed in a new git repository; ``.git(...)`` runs git there."""
    repo = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv*", ".riot", "__pycache__", "dist"))

    def git(*args):
        identity = ["-c", "user.name=release-test", "-c", "user.email=release-test@localhost"]
        return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True, text=True)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "release test")
    return types.SimpleNamespace(path=repo, git=git)


def run_release(repo) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(repo.path / "scripts" / "release"), sys.executable],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def dated(repo, date: Optional[str] = "2030-01-31") -> None:
    """Sets the newest version heading's release date (none: ``None``) and empties the
    Unreleased section, as whoever releases does by moving its entries under that heading;
    then commits."""
    changelog = repo.path / "CHANGELOG.md"
    heading = "## [%s]%s" % (VERSION, " - " + date if date else "")
    text, count = re.subn(r"^## \[%s\].*$" % re.escape(VERSION), heading, changelog.read_text(), count=1, flags=re.M)
    assert count == 1
    text, count = re.subn(r"^(## \[Unreleased\]\n).*?(?=^## \[)", r"\1\n", text, count=1, flags=re.M | re.S)
    assert count == 1
    changelog.write_text(text)
    repo.git("commit", "-q", "--allow-empty", "-am", "date")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda repo: None, "give '## ["),
        (lambda repo: (repo.path / "README.md").write_text("edited"), "uncommitted changes"),
        (lambda repo: (repo.path / "new-file").write_text("new"), "uncommitted changes"),
        (lambda repo: repo.git("tag", "v" + VERSION), "exists already"),
        (lambda repo: _edit_committed(repo, "CHANGELOG.md", "## [%s]" % VERSION, "## [9.9.9]"), "must agree"),
        (lambda repo: _edit_committed(repo, "CHANGELOG.md", "## [Unreleased]\n", "## [Unreleased]\n\n- x\n"), "lists"),
    ],
    ids=["undated", "modified", "untracked", "tagged", "version-mismatch", "unreleased-entries"],
)
def test_release_refuses(release_repo, change, message):
    """What scripts/release checks before it builds: it stops with a message naming the cause."""
    dated(release_repo, None if message == "give '## [" else "2030-01-31")
    change(release_repo)
    proc = run_release(release_repo)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "--- build" not in proc.stdout and not (release_repo.path / "dist").exists()


def _edit_committed(repo, name: str, old: str, new: str) -> None:
    path = repo.path / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    repo.git("commit", "-q", "-am", "edit")


@pytest.mark.wheel
def test_release_builds_checks_and_prints_the_tag(release_repo):
    """Everything agrees: it builds into dist/, runs scripts/check-package, prints the tag."""
    if importlib.util.find_spec("build") is None or importlib.util.find_spec("twine") is None:
        pytest.skip("needs build and twine (requirements/dev.txt)")
    dated(release_repo)
    proc = run_release(release_repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check-package: passed" in proc.stdout
    assert "git tag -a v%s -m 'ddtrace-memcached %s' && git push origin v%s" % ((VERSION,) * 3) in proc.stdout
    built = sorted(p.name for p in (release_repo.path / "dist").iterdir())
    assert built == ["ddtrace_memcached-%s-py3-none-any.whl" % VERSION, "ddtrace_memcached-%s.tar.gz" % VERSION]


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
def test_pip_23_shows_the_license_and_authors(tmp_path):
    """``pip show`` of a pip older than 24.1 (this Python's bundled one, or 23.2.1) reads the
    ``License`` field, not ``License-Expression``: the installed wheel must fill it."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), "."], cwd=PROJECT_ROOT)
    (wheel,) = wheels.glob("ddtrace_memcached-*.whl")
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    pip_version = _run([python, "-m", "pip", "--version"]).stdout.split()[1]
    if tuple(int(part) for part in pip_version.split(".")[:2]) >= (24, 1):
        _run([python, "-m", "pip", "install", "pip==23.2.1"])
    _run([python, "-m", "pip", "install", "--no-deps", str(wheel)])
    shown = _run([python, "-m", "pip", "show", "ddtrace-memcached"]).stdout
    assert re.search(r"^License: BSD-3-Clause$", shown, re.M), shown
    assert re.search(r"^Author: ddtrace-memcached maintainers$", shown, re.M), shown


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
