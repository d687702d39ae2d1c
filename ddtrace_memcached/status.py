"""What ``python -m ddtrace_memcached`` reports: versions, registration, clients, settings.

Modelled on ddtrace's startup logs: one place to see why a memcached command is or is not
traced, and by which integration; ``--json`` is what a bug report should hold. Versions come
from the installed distributions (whichever one ships the module: a fork's too), so no client
is imported unless asked (``--import-clients``: as the app would, which under ``ddtrace-run``
patches it). Every switch is shown with the setting that decided it. :func:`collect` also
works inside a running app.
"""

import argparse
import importlib
import json
import os
import platform
import sys
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

import _ddtrace_memcached_hook as hook

from . import diagnostics
from . import registry

OURS = registry.INTEGRATION
SHOWN_ENV = (
    hook.ENABLED_ENV,
    "DD_PATCH_MODULES",
    *("DD_TRACE_%s_ENABLED" % builtin.upper() for builtin in registry.builtins()),
    registry.CLIENTS_ENV,
    diagnostics.SERVICE_ENV,
    diagnostics.COMMAND_ENABLED_ENV,
    "DD_TRACE_SPAN_ATTRIBUTE_SCHEMA",
    "DD_TRACE_SAFE_INSTRUMENTATION_ENABLED",
)
"""The environment variables the report shows as set (or unset): what decides what is traced."""
HINT = (
    "this process was not started by ddtrace-run (nor imported ddtrace.auto): run "
    "`ddtrace-run python -m ddtrace_memcached --import-clients` to see what your app gets"
)


def version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``, or None; imports nothing of it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(distribution)
    except PackageNotFoundError:
        return None


def registration() -> Dict[str, Any]:
    """Whether the hook taught ddtrace the ``memcached`` integration, and the self-check's findings."""
    monkey = sys.modules.get("ddtrace._monkey")
    patch_modules = getattr(monkey, "PATCH_MODULES", {})
    patch_is_ours = bool(getattr(getattr(monkey, "patch", None), "__ddtrace_memcached__", False))
    in_patch_modules = hook.INTEGRATION in patch_modules
    found = hook.state()
    under_ddtrace_run = hook._bootstrapping()
    return {
        "registered": in_patch_modules and patch_is_ours,
        "in_patch_modules": in_patch_modules,
        "patch_is_ours": patch_is_ours,
        "under_ddtrace_run": under_ddtrace_run,
        "enabled_via_ddtrace": found["asked"],
        "set_up": found["set_up"],
        "problem": found["problem"],
        "hint": None if under_ddtrace_run or found["asked"] else HINT,
    }


def switches() -> Dict[str, Dict[str, Any]]:
    """Whether ``ddtrace-run`` enables ``memcached`` and each built-in it replaces, and the
    setting that decided (``DD_PATCH_MODULES``, ``DD_TRACE_<NAME>_ENABLED`` or the default)."""
    from ddtrace import _monkey

    defaults = getattr(_monkey, "PATCH_MODULES", {})
    found = {}
    for name in (OURS, *registry.builtins()):
        enabled, source = hook.switch(name, bool(defaults.get(name, name == OURS)))
        found[name] = {"enabled": enabled, "source": source}
    return found


def patched_by(client: str) -> List[str]:
    """Who traces ``client`` now: ``memcached`` (ours) and/or ddtrace's built-in of that name."""
    module = sys.modules.get(client)
    if module is None:
        return []
    found = []
    if _ours(client):
        found.append(OURS)
    builtin = registry.BY_MODULE[client].builtin
    if builtin is not None and getattr(module, "_datadog_patch", False):
        found.append(builtin)
    return found


def _ours(client: str) -> bool:
    """Our wrapper is on one of the client's command methods (``wrapping.is_ours``)."""
    from . import wrapping
    from .patch import patched_clients

    module = patched_clients().get(client)
    if module is None:
        return False
    try:
        return any(wrapping.in_chain(vars(cls).get(method)) for cls, method, _ in module.targets())
    except Exception as exc:  # a report, not a crash: say what could not be checked
        print("could not inspect %s: %s" % (client, exc), file=sys.stderr)
    return False


def settings() -> Dict[str, Any]:
    """The environment as set (None: unset), and what it resolved to: the clients selected and
    the names not understood, the service, key capture, the schema."""
    from ddtrace.internal.schema import SCHEMA_VERSION

    from . import settings as ours

    ours.register()
    config = ours.integration_config()
    selection = registry.select()
    found: Dict[str, Any] = {name: os.environ.get(name) for name in SHOWN_ENV}
    found.update(
        clients_selected=list(selection.modules),
        clients_unknown=list(selection.unknown),
        service=config.get("service") or config.get("_default_service"),
        command_enabled=bool(config.get("command_enabled")),
        schema=SCHEMA_VERSION,
    )
    return found


def collect(import_clients: bool = False) -> Dict[str, Any]:
    """The whole report, as data (``--json`` prints it)."""
    import ddtrace  # noqa: F401 (its import registers the integration: the report is about that)

    from . import __version__
    from .patch import in_range
    from .patch import is_patched

    installed = {client.module: registry.installed(client) for client in registry.CLIENTS}
    if import_clients:
        for client, (distribution, _) in installed.items():
            if distribution is not None:
                try:
                    importlib.import_module(client)
                except Exception as exc:  # a broken install is worth reporting, not a traceback
                    print("could not import %s: %s" % (client, exc), file=sys.stderr)
    diagnostics.list_in_startup_log()  # whether this ddtrace lets it, also where nothing asked yet
    switched = switches()
    enabled = switched[OURS]["enabled"] or is_patched()
    selected = registry.covered()
    clients = []
    for client, (distribution, installed_version) in installed.items():
        supported = registry.BY_MODULE[client].supported
        clients.append(
            {
                "client": client,
                "distribution": distribution or registry.BY_MODULE[client].distributions[0],
                "version": installed_version,
                "supported": supported,
                "in_range": in_range(installed_version, supported) if installed_version else None,
                "selected": client in selected,
                "covered": enabled and client in selected,
                "imported": client in sys.modules,
                "patched_by": patched_by(client),
            }
        )
    report = {
        "ddtrace_memcached": __version__,
        "python": sys.version.split()[0],
        "os": "%s %s (%s)" % (platform.system(), platform.release(), platform.machine()),
        "ddtrace": version("ddtrace"),
        "wrapt": version("wrapt"),
        "gevent": version("gevent"),
        "registration": registration(),
        "diagnostics": diagnostics.state(),
        "switches": switched,
        "clients": clients,
        "settings": settings(),
    }
    report["problems"] = problems(report)
    return report


def problems(report: Dict[str, Any]) -> List[str]:
    """What a user should act on, one sentence each."""
    from ddtrace import config

    safe = getattr(config, "_trace_safe_instrumentation_enabled", False)
    found = []
    if report["registration"]["problem"]:
        found.append("registration with ddtrace failed: %s" % report["registration"]["problem"])
    unknown = report["settings"]["clients_unknown"]
    if unknown:
        found.append(
            "%s names no client: %s (valid: %s)" % (registry.CLIENTS_ENV, ", ".join(unknown), registry.described())
        )
    for row in report["clients"]:
        if row["in_range"] is False:
            found.append(
                "%s %s is outside the supported range %s: %s"
                % (
                    row["client"],
                    row["version"],
                    row["supported"],
                    "not traced (DD_TRACE_SAFE_INSTRUMENTATION_ENABLED)" if safe else "traced anyway",
                )
            )
    for part, state in report["diagnostics"].items():
        if not state.startswith("ok"):
            found.append("ddtrace's %s does not know memcached: %s" % (part.replace("_", " "), state))
    return found


_DIAGNOSTICS = {"supported_configurations": "settings known to ddtrace", "startup_log": "in ddtrace's startup log"}
_WHO = {OURS: "memcached (this package)", **{b: "%s (ddtrace built-in)" % b for b in registry.builtins()}}


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _hint(reg: Dict[str, Any]) -> str:
    return " (%s)" % reg["hint"] if reg["hint"] else ""


def _switch_line(name: str, switch: Dict[str, Any]) -> str:
    label = name if name == OURS else "%s (built-in)" % name
    return "  %-28s %s (%s)" % (label, "on" if switch["enabled"] else "off", switch["source"])


def _client_line(row: Dict[str, Any], switched: Dict[str, Dict[str, Any]]) -> str:
    if row["covered"]:
        coverage = "covered"
    elif row["selected"]:
        coverage = "not covered: memcached is off (%s)" % switched[OURS]["source"]
    else:
        coverage = "not selected (%s)" % registry.CLIENTS_ENV
    if not row["imported"]:
        state = "not imported"
    elif row["patched_by"]:
        state = "traced by " + " and ".join(_WHO.get(name, name) for name in row["patched_by"])
    else:
        state = "not traced"
    installed = row["version"] or "not installed"
    if row["in_range"] is False:
        installed += " (unsupported: %s)" % row["supported"]
    return "  %-14s %-24s %-16s %s; %s" % (row["client"], row["distribution"], installed, coverage, state)


def render(report: Dict[str, Any]) -> str:
    """The report as text, one fact a line."""
    reg = report["registration"]
    lines = [
        "ddtrace-memcached %s (Python %s, %s)" % (report["ddtrace_memcached"], report["python"], report["os"]),
        "",
        "Versions",
        *("  %-28s %s" % (name, report[name] or "not installed") for name in ("ddtrace", "wrapt", "gevent")),
        "",
        "Registration with ddtrace",
        "  %-28s %s" % ("registered", _yes(reg["registered"])),
        "  %-28s %s" % ("memcached in PATCH_MODULES", _yes(reg["in_patch_modules"])),
        "  %-28s %s" % ("ddtrace.patch is ours", _yes(reg["patch_is_ours"])),
        "  %-28s %s" % ("under ddtrace-run", _yes(reg["under_ddtrace_run"])),
        "  %-28s %s" % ("enabled via ddtrace", _yes(reg["enabled_via_ddtrace"]) + _hint(reg)),
        *("  %-28s %s" % (_DIAGNOSTICS.get(part, part), ok) for part, ok in report["diagnostics"].items()),
        "",
        "Switches (as ddtrace-run reads them)",
        *(_switch_line(name, switch) for name, switch in report["switches"].items()),
        "",
        "Clients",
        *(_client_line(row, report["switches"]) for row in report["clients"]),
        "",
        "Settings",
    ]
    for name, value in report["settings"].items():
        if isinstance(value, list):
            value = ",".join(value) or "none"
        lines.append("  %-38s %s" % (name, value if value not in (None, "") else "(unset)"))
    lines += ["", "Problems"] + ["  " + problem for problem in report["problems"] or ["none"]]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddtrace_memcached",
        description="The memcached integration's status: versions, registration with ddtrace, "
        "which integration traces each client, and the settings in effect. Attach --json to a bug report.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for a bug report)")
    parser.add_argument(
        "--import-clients",
        action="store_true",
        help="import the installed clients first, as the app would (under ddtrace-run this patches them)",
    )
    args = parser.parse_args(argv)
    report = collect(import_clients=args.import_clients)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else render(report))
    return 0
