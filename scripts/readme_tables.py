"""Generates the README's tables that the code defines: ``python scripts/readme_tables.py``.

The commands table lists, per client, every command an app calls and the resource of its
span, from each client module's ``APP_COMMANDS`` (its command tables). A client module is
imported only when its library is installed; the rows of the others are kept as they are, so
that the script can run in any venv. ``tests/test_registry.py`` checks each installed client's
row against the README, so a command table and its documentation cannot drift apart.
"""

import importlib
import importlib.util
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- commands table: scripts/readme_tables.py -->", "<!-- end of the commands table -->"


def _registry():
    sys.path.insert(0, ROOT)
    from ddtrace_memcached import registry

    return registry


def command_cell(cmd) -> str:
    """``get``, ``get_multi`` → ``get_many``, ``raw_command`` (4.0+)."""
    text = "`%s`" % cmd.method
    if cmd.resource != cmd.method:
        text += " → `%s`" % cmd.resource
    if cmd.since:
        text += " (%s+)" % ".".join(str(part) for part in cmd.since)
    return text


def row(client) -> str:
    """The README row of ``client`` (a registry row): its module must be importable."""
    module = importlib.import_module("ddtrace_memcached.clients.%s" % client.module)
    commands = sorted(module.APP_COMMANDS, key=lambda cmd: cmd.method)
    return "| `%s` | %s |" % (client.module, ", ".join(command_cell(cmd) for cmd in commands))


def table(existing: str) -> str:
    registry = _registry()
    kept = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_]+)` \|.*$", existing, re.M)}
    lines = ["| client | commands (→ the resource, where it differs) |", "| --- | --- |"]
    for client in registry.CLIENTS:
        if importlib.util.find_spec(client.module) is not None:
            lines.append(row(client))
        elif client.module in kept:
            lines.append(kept[client.module])
        else:
            raise SystemExit("%s is not installed and has no row yet: install it to generate one" % client.module)
    return "\n".join(lines)


def main() -> None:
    with open(README) as f:
        text = f.read()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + table(text[start:end]) + "\n" + text[end:]
    if new != text:
        with open(README, "w") as f:
            f.write(new)
        print("README.md: the commands table was regenerated")


if __name__ == "__main__":
    main()
