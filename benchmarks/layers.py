"""What each client's ``get`` and ``set`` pass through: the profile of the clients' paths.

``anatomy.py`` counts what one layer of each kind costs; this counts how many layers of each
kind a client's command passes, and the integration's own Python calls in it:

- ``wrapt``: the app's command, a ``FunctionWrapper`` (seen as our wrapper called by wrapt);
- ``hook``: a plain function of ``core.hook`` inside the client (python-memcached's
  ``_get_server``), ``function``: one of ``core.as_function`` below the app's command
  (meta-memcache's executor): ``wrapping.passing``'s functions, with the method's parameters;
- ``calls``: calls of the integration's Python functions while the tracer is enabled (the
  per-call record, naming, the client module's answers), the part of what a traced command
  adds that is neither the span, its tags, nor a layer; with the tracer disabled, those of a
  client whose commands are plain functions of its own module (libmc's), which ``other``
  counts and the sum below leaves out (their cost is in the measured figure).

With the tracer disabled a command costs its layers alone, so ``wrapt + hooks + functions``,
each at ``anatomy.py``'s figure, is what ``benchmarks/run`` finds added. Each client is asked
once, through its test adapter, against a memcached on a free port, under Python's profiler
(which counts calls, not instructions). Run: ``.venv/bin/python benchmarks/anatomy.py --clients``.
"""

import collections
import os
import sys
from typing import Callable
from typing import Dict

from workloads import OTHER_CLIENTS
from workloads import PYMEMCACHE
from workloads import TESTS

PACKAGE = os.sep + "ddtrace_memcached" + os.sep
PASSING = "<ddtrace_memcached"  # the file name of wrapping.passing's functions
WRAPPERS = ("trace", "trace_async", "outer", "within_retry")  # what wrapt calls: a command


def _kinds() -> Dict[str, str]:
    """``Class.method`` -> ``hook`` or ``function``, for every plain function the clients install."""
    import importlib

    from ddtrace_memcached import registry

    kinds = {}
    for client in registry.CLIENTS:
        try:
            module = importlib.import_module("ddtrace_memcached.clients." + client.module)
        except ImportError:
            continue
        for cls, method, wrapper in module.targets():
            make = getattr(wrapper, "make", None)
            if make is not None:
                kinds["%s.%s" % (cls.__qualname__, method)] = "hook" if "hook." in make.__qualname__ else "function"
    return kinds


def _profile(run: Callable[[], object], kinds: Dict[str, str]) -> collections.Counter:
    """The layers and the integration's calls that one ``run()`` passes."""
    seen: collections.Counter = collections.Counter()
    started: list = []  # frames seen: a coroutine's "call" event comes again at every resume

    def profiler(frame, event, arg):
        if event != "call" or any(frame is f for f in started):
            return
        started.append(frame)
        code = frame.f_code
        if code.co_filename.startswith(PASSING):
            qualname = code.co_filename[len(PASSING) + 2 : -1]  # "<ddtrace_memcached: C.m>"
            seen[kinds.get(qualname, "function")] += 1
        elif PACKAGE in code.co_filename:
            seen["calls"] += 1
            caller = frame.f_back.f_code.co_filename if frame.f_back is not None else ""
            if code.co_name in WRAPPERS and PACKAGE not in caller and not caller.startswith(PASSING):
                seen["wrapt"] += 1  # called from C: wrapt's FunctionWrapper

    sys.setprofile(profiler)
    try:
        run()
    finally:
        sys.setprofile(None)
    return seen


def profiles() -> Dict[str, Dict[str, collections.Counter]]:
    """``{client_op: {"enabled": Counter, "disabled": Counter}}`` for every installed client."""
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    from ddtrace.trace import tracer

    import adapters
    import ddtrace_memcached
    from servers import MemcachedProcess

    ddtrace_memcached.patch()
    kinds = _kinds()
    server = MemcachedProcess()
    found: Dict[str, Dict[str, collections.Counter]] = {}
    try:
        for name in (PYMEMCACHE,) + OTHER_CLIENTS:
            adapter = adapters.load(name)
            client = adapter.make([server.address])
            ops = {
                "get": lambda: adapter.get(client, "layers"),
                "set": lambda: adapter.set(client, "layers", b"value"),
            }
            for op in ("set", "get"):
                for phase in ("enabled", "disabled"):
                    tracer.enabled = phase == "enabled"
                    ops[op]()  # warm: connections, caches
                    with tracer.trace("layers"):
                        seen = _profile(ops[op], kinds)
                    found.setdefault("%s %s" % (name, op), {})[phase] = seen
    finally:
        tracer.enabled = True
        server.stop()
    return found


def table(found, costs: Dict[str, float], budget: Dict[str, dict]) -> str:
    """The markdown table: layers, the disabled figure they make at ``costs`` (k per layer)
    next to the budget's measured one, and the integration's calls per traced command."""
    lines = [
        "| client, command | wrapt | hooks | functions | other | tracer disabled: layers' sum | measured (budget)"
        " | our calls, traced |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, phases in found.items():
        on, off = phases["enabled"], phases["disabled"]
        layers = {"wrapt": on["wrapt"], "hook": off["hook"], "function": off["function"]}
        total = sum(costs[kind] * count for kind, count in layers.items())
        client, op = name.split()
        measured = budget.get(client, {}).get(op, {}).get("tracer disabled")
        lines.append(
            "| %s | %d | %d | %d | %d | %.1f | %s | %d |"
            % (name, layers["wrapt"], layers["hook"], layers["function"], off["calls"], total,
               "—" if measured is None else "%.1f" % measured, on["calls"])
        )  # fmt: skip
    return "\n".join(lines)
