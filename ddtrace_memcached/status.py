"""What ``python -m ddtrace_memcached`` reports: versions, registration, clients, settings.

Modelled on ddtrace's startup logs: one place to see why a memcached command is or is not
traced, and by which integration. Versions come from the installed distributions, so no
client is imported unless asked (``--import-clients``: as the app would, which under
``ddtrace-run`` patches it). :func:`collect` also works inside a running app.
"""

import argparse
import importlib
import json
import os
import sys
from typing import Any
from typing import Dict
from typing import List
from typing import Optional

import _ddtrace_memcached_hook as hook

from . import registry

OURS = registry.INTEGRATION


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
    return {
        "registered": in_patch_modules and patch_is_ours,
        "in_patch_modules": in_patch_modules,
        "patch_is_ours": patch_is_ours,
        "enabled_via_ddtrace": found["asked"],
        "set_up": found["set_up"],
        "problem": found["problem"],
    }


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
    import wrapt

    try:
        for cls, method, _ in module.targets():
            attribute = vars(cls).get(method)
            while isinstance(attribute, wrapt.FunctionWrapper):
                if wrapping.is_ours(attribute):
                    return True
                attribute = attribute.__wrapped__
    except Exception as exc:  # a report, not a crash: say what could not be checked
        print("could not inspect %s: %s" % (client, exc), file=sys.stderr)
    return False


def settings() -> Dict[str, Any]:
    """The settings in effect, from ddtrace's config where it holds them."""
    from ddtrace.internal.schema import SCHEMA_VERSION

    from . import settings as ours

    ours.register()
    config = ours.integration_config()
    return {
        "DD_TRACE_MEMCACHED_ENABLED": hook._enabled_by_env(),
        "DD_TRACE_MEMCACHED_CLIENTS": os.environ.get(registry.CLIENTS_ENV, ""),
        "covered_clients": list(registry.covered()),
        "DD_MEMCACHED_SERVICE": os.environ.get("DD_MEMCACHED_SERVICE"),
        "service": config.get("service") or config.get("_default_service"),
        "DD_TRACE_MEMCACHED_COMMAND_ENABLED": bool(config.get("command_enabled")),
        "DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": SCHEMA_VERSION,
    }


def collect(import_clients: bool = False) -> Dict[str, Any]:
    """The whole report, as data (``--json`` prints it)."""
    import ddtrace  # noqa: F401 (its import registers the integration: the report is about that)

    from . import __version__

    covered = registry.covered()
    installed = {client.module: registry.installed(client) for client in registry.CLIENTS}
    if import_clients:
        for client, (distribution, _) in installed.items():
            if distribution is not None:
                try:
                    importlib.import_module(client)
                except Exception as exc:  # a broken install is worth reporting, not a traceback
                    print("could not import %s: %s" % (client, exc), file=sys.stderr)
    return {
        "ddtrace_memcached": __version__,
        "python": sys.version.split()[0],
        "ddtrace": version("ddtrace"),
        "wrapt": version("wrapt"),
        "registration": registration(),
        "clients": [
            {
                "client": client,
                "distribution": installed[client][0] or registry.BY_MODULE[client].distributions[0],
                "version": installed[client][1],
                "covered": client in covered,
                "imported": client in sys.modules,
                "patched_by": patched_by(client),
            }
            for client in installed
        ],
        "settings": settings(),
    }


_WHO = {OURS: "memcached (this package)", **{b: "%s (ddtrace built-in)" % b for b in registry.builtins()}}


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def render(report: Dict[str, Any]) -> str:
    """The report as text, one setting a line."""
    reg = report["registration"]
    lines = [
        "ddtrace-memcached %s (Python %s)" % (report["ddtrace_memcached"], report["python"]),
        "",
        "Versions",
        "  %-28s %s" % ("ddtrace", report["ddtrace"] or "not installed"),
        "  %-28s %s" % ("wrapt", report["wrapt"] or "not installed"),
        "",
        "Registration with ddtrace",
        "  %-28s %s" % ("registered", _yes(reg["registered"])),
        "  %-28s %s" % ("memcached in PATCH_MODULES", _yes(reg["in_patch_modules"])),
        "  %-28s %s" % ("ddtrace.patch is ours", _yes(reg["patch_is_ours"])),
        "  %-28s %s" % ("enabled via ddtrace", _yes(reg["enabled_via_ddtrace"])),
        "  %-28s %s" % ("problem", reg["problem"] or "none"),
        "",
        "Clients",
    ]
    for row in report["clients"]:
        if not row["imported"]:
            state = "not imported"
        elif row["patched_by"]:
            state = "traced by " + " and ".join(_WHO.get(name, name) for name in row["patched_by"])
        else:
            state = "not traced"
        lines.append(
            "  %-14s %-24s %-16s %-12s %s"
            % (
                row["client"],
                row["distribution"],
                row["version"] or "not installed",
                "covered" if row["covered"] else "not covered",
                state,
            )
        )
    lines += ["", "Settings"]
    for name, value in report["settings"].items():
        if isinstance(value, list):
            value = ",".join(value)
        lines.append("  %-36s %s" % (name, value if value not in (None, "") else "(unset)"))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddtrace_memcached",
        description="The memcached integration's status: versions, registration with ddtrace, "
        "which integration traces each client, and the settings in effect.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--import-clients",
        action="store_true",
        help="import the installed clients first, as the app would (under ddtrace-run this patches them)",
    )
    args = parser.parse_args(argv)
    report = collect(import_clients=args.import_clients)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else render(report))
    return 0
