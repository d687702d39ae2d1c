"""The lists that cannot import ``ddtrace_memcached.registry`` agree with it, and no other
file keeps a list of the clients of its own.

- ``pyproject.toml``: an extra per client, named ``client.extra``, pinning the first of its
  distributions to its supported versions (the tooling extras are not checked);
- ``riotfile.py``: a suite per client, running the contract and ``tests/clients/<module>/``
  with the client installed (pymemcache: the ``tests`` suite, the whole suite), and every
  client in the suites that install them all;
- ``README.md``: a row per client in "Supported clients", its module and its versions;
- ``tests/clients/``: a directory per client, and none named like a client's module where
  Python imports from (it would shadow the client where it is not installed);
- no other file spells a list of the clients (quoted names of three or more on one line,
  or in one list, tuple, set or dict literal).
"""

import ast
import importlib.util
import os
import re
import runpy
import subprocess
import sys
import types

from packaging.specifiers import SpecifierSet
from packaging.version import Version
import pytest

from ddtrace_memcached import commands
from ddtrace_memcached import registry
from servers import ROOT

TESTS = os.path.join(ROOT, "tests")


# --- pyproject.toml ----------------------------------------------------------------------


def test_pyproject_has_an_extra_per_client():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for client in registry.CLIENTS:
        assert extras.get(client.extra) == [client.distributions[0] + client.supported], client.extra


# --- riotfile.py -------------------------------------------------------------------------


class _Venv:
    """Stands in for riot's ``Venv``: riot is not installed where the tests run."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs


def suites() -> dict:
    """``{suite name: [its leaf venvs, each a dict: command, pkgs, env]}`` of riotfile.py."""
    riot = types.ModuleType("riot")
    riot.Venv, riot.latest = _Venv, "latest"
    saved = sys.modules.get("riot"), list(sys.path)
    sys.modules["riot"] = riot
    try:
        top = runpy.run_path(os.path.join(ROOT, "riotfile.py"))["venv"]
    finally:
        sys.path[:] = saved[1]
        if saved[0] is None:
            del sys.modules["riot"]
        else:
            sys.modules["riot"] = saved[0]
    found: dict = {}

    def walk(venv, inherited):
        settings = dict(inherited)
        settings.update({k: v for k, v in venv.kwargs.items() if k in ("name", "command")})
        settings["pkgs"] = dict(inherited["pkgs"], **venv.kwargs.get("pkgs", {}))
        settings["env"] = dict(inherited["env"], **venv.kwargs.get("env", {}))
        if not venv.kwargs.get("venvs"):
            found.setdefault(settings.get("name"), []).append(settings)
        for child in venv.kwargs.get("venvs", []):
            walk(child, settings)

    walk(top, {"pkgs": {}, "env": {}})
    return found


def test_riotfile_has_a_suite_per_client():
    found = suites()
    whole = found["tests"]  # the whole suite, with the client(s) it installs
    for client in registry.CLIENTS:
        package = client.distributions[0]
        if all(package in leaf["pkgs"] for leaf in whole):
            continue
        leaves = found.get(client.module)
        assert leaves, "no suite for %s" % client.module
        assert any(package in leaf["pkgs"] for leaf in leaves), "%s: no venv tests its extra's %s" % (
            client.module,
            package,
        )
        for leaf in leaves:
            tests = leaf["command"].split()
            assert "tests/test_contract.py" in tests and "tests/clients/%s/" % client.module in tests, leaf["command"]
            assert leaf["env"]["MEMCACHED_CONTRACT_CLIENTS"] == client.module
            # the client's own distribution, or a fork that installs the same module
            assert any(d in leaf["pkgs"] for d in client.distributions), (client.module, leaf["pkgs"])
            others = [
                c.module
                for c in registry.CLIENTS
                if c is not client and any(d in leaf["pkgs"] for d in c.distributions)
            ]
            assert others in ([], ["pymemcache"]), (client.module, others)  # pylibmc's demo needs pymemcache


@pytest.mark.parametrize("suite", ["snapshot", "benchmarks", "stress"])
def test_riotfile_suites_of_every_client_install_every_client(suite):
    leaves = suites()[suite]
    assert any(all(c.distributions[0] in leaf["pkgs"] for c in registry.CLIENTS) for leaf in leaves), suite


# --- README.md ----------------------------------------------------------------------------

SYMBOLS = {"≥": ">=", "≤": "<=", ">": ">", "<": "<", "=": "==", "≠": "!="}


def readme_clients() -> dict:
    """``{module: versions column}`` of the "Supported clients" table."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Supported clients\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| [")]
    found = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        (module,) = re.findall(r"\(`([^`]+)`\)", cells[0])
        assert module not in found, "two rows for %s" % module
        found[module] = cells[1]
    return found


def specifiers(text: str) -> set:
    """``{(operator, Version)}`` of a specifier (``">=0.8.0"``) or a versions column
    (``"≥ 0.8"``, ``"≥ 4.0 (Python ≥ 3.10)"``: a trailing note in parentheses is left out)."""
    text = re.sub(r"\s*\(.*\)$", "", text)
    for symbol, operator in SYMBOLS.items():
        text = text.replace(symbol + " ", operator)
    return {(s.operator, Version(s.version)) for s in SpecifierSet(text)}


def test_readme_has_a_row_per_client():
    rows = readme_clients()
    assert sorted(rows) == sorted(client.module for client in registry.CLIENTS)
    for client in registry.CLIENTS:
        assert specifiers(rows[client.module]) == specifiers(client.supported), (client.module, rows[client.module])


@pytest.mark.parametrize("client", registry.CLIENTS, ids=lambda client: client.module)
def test_readme_commands_table_is_the_command_tables(client):
    """The README's commands table is generated from the client modules' ``APP_COMMANDS``
    (``scripts/readme_tables.py``): each installed client's row is checked, so every client
    suite checks its own."""
    if importlib.util.find_spec(client.module) is None:
        pytest.skip("%s is not installed" % client.module)
    tables = runpy.run_path(os.path.join(ROOT, "scripts", "readme_tables.py"))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split(tables["BEGIN"], 1)[1].split(tables["END"], 1)[0]
    assert tables["row"](client) in section.splitlines(), "run: python scripts/readme_tables.py"


def test_readme_versions_are_read_as_written():
    assert specifiers("≥ 4.0 (Python ≥ 3.10)") == {(">=", Version("4.0"))}
    assert specifiers("≥ 0.8") == specifiers(">=0.8.0") != specifiers(">=0.8.1")


@pytest.mark.parametrize(
    "version, parsed",
    [("4.0.0", (4, 0, 0)), ("0.8", (0, 8)), ("1.6.3rc1", (1, 6, 3)), ("1.4.17.dev2", (1, 4, 17)), ("2.0b1", (2, 0))],
)
def test_installed_versions_are_compared_by_their_release(version, parsed):
    """What the version gates compare (``Command.since``): a pre-release's suffix is not a digit
    of its part (1.6.3rc1 is not 1.6.31)."""
    assert commands.parse_version(version) == parsed


# --- tests/clients/ -----------------------------------------------------------------------


def test_tests_clients_has_a_directory_per_client():
    directories = sorted(d for d in os.listdir(os.path.join(TESTS, "clients")) if not d.startswith(("_", ".")))
    assert directories == sorted(client.module for client in registry.CLIENTS)


def test_no_directory_where_python_imports_from_is_named_like_a_client():
    """``tests/`` is on ``sys.path`` (conftest.py's directory), as is each test module's own:
    a directory ``tests/pylibmc`` would be imported as the namespace package ``pylibmc``
    wherever pylibmc is not installed (the client suites install one client only)."""
    modules = {client.module for client in registry.CLIENTS}
    shadows = []
    for where, directories, files in os.walk(TESTS):
        if any(f.endswith(".py") for f in files):  # a directory pytest puts on sys.path
            shadows += [os.path.join(where, d) for d in directories if d in modules]
    assert not shadows, shadows


# --- no other list of the clients ------------------------------------------------------------

# Where a list of the clients belongs: the registry; the client modules; the tests; the
# docs; riotfile.py and pyproject.toml, whose lists are checked above; snapshots/ (recorded
# traces: data, not code).
ALLOWED = (
    "ddtrace_memcached/registry.py",
    "ddtrace_memcached/clients/",
    "tests/",
    "docs/",
    "README.md",
    "CHANGELOG.md",
    "riotfile.py",
    "pyproject.toml",
    "snapshots/",
)
LIST_OF = 3  # quoted names of this many clients make a list of them
NAMES = {name.lower(): c.module for c in registry.CLIENTS for name in (c.module,) + c.distributions}
QUOTED = re.compile(r"""(["'])([\w.-]+)\1""")


def clients_in(strings) -> set:
    return {NAMES[s.lower()] for s in strings if s.lower() in NAMES}


def lists_of_clients(path: str, text: str) -> list:
    """Where ``text`` spells a list of the clients: ``(path, line)`` of each line with quoted
    names of LIST_OF clients or more, and of each literal collection in Python code that
    holds them (in its items, or in calls among them)."""
    found = [
        (path, n)
        for n, line in enumerate(text.splitlines(), 1)
        if len(clients_in(m.group(2) for m in QUOTED.finditer(line))) >= LIST_OF
    ]
    if path.endswith(".py"):
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
                # Names anywhere in its items: the registry's rows are Client(...) calls.
                strings = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                if len(clients_in(strings)) >= LIST_OF and (path, node.lineno) not in found:
                    found.append((path, node.lineno))
    return found


def project_files() -> list:
    """The files of the checkout, tracked or new (ignored ones aside)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an sdist): nothing to list")
    return [path for path in listed if os.path.isfile(os.path.join(ROOT, path))]


def test_no_other_file_lists_the_clients():
    """A list of the clients outside the registry goes stale when a client is added: derive
    it from ``registry.CLIENTS`` instead."""
    found = []
    for path in project_files():
        if path.startswith(ALLOWED):
            continue
        try:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:  # not text
            continue
        found += lists_of_clients(path, text)
    assert not found, "lists of the clients, to derive from ddtrace_memcached.registry: %s" % found


def test_lists_of_clients_are_found():
    """The check above finds a list on one line, one over several lines, and the registry's
    own; prose naming clients, and two names, are no list."""
    one_line = 'CLIENTS = ("pymemcache", "pylibmc", "python-memcached")\n'
    several = "CLIENTS = [\n    'emcache',\n    'aiomcache',\n    'meta_memcache',\n]\n"
    with open(os.path.join(ROOT, "ddtrace_memcached", "registry.py")) as f:
        own = f.read()
    assert lists_of_clients("a.py", one_line) == [("a.py", 1)]
    assert lists_of_clients("a.py", several) == [("a.py", 1)]
    assert lists_of_clients("a.sh", one_line) == [("a.sh", 1)]
    assert lists_of_clients("registry.py", own)
    assert lists_of_clients("a.py", '"""pymemcache, pylibmc and emcache are traced."""\n') == []
    assert lists_of_clients("a.py", 'PAIR = ("pymemcache", "pylibmc")\n') == []
