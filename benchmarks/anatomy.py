"""Where a traced command's cost goes: the span, its tags, the wrapper, and the rest.

``overhead.py`` says how much each variant adds; this says what that addition is made
of, by counting (with callgrind) the instructions of each part on its own, in the same
shape as ``overhead.py``'s batches (traces of 50 spans under a root span, the writer
flushed at the end so that encoding counts):

- ``span``: ``tracer.trace()`` and ``finish()`` with no tags: what any integration pays;
- ``tags``: our 8 tags and metrics on that span (what the span model asks for), through
  ``set_tag``/``set_metric``; ``tags-native``: the same in the native calls that ours
  makes on ddtrace 4.1+ (``ddtrace_memcached/tagging.py``);
- ``wrapt``: calling a method through a wrapt ``FunctionWrapper`` whose wrapper only
  calls it: the price of the interception itself, paid even with the tracer disabled;
- ``python-wrapper``: the same through a plain Python function of ``(self, *args, **kwargs)``,
  for comparison (``wrapping.passing`` says why ours are not);

and what a command pays with the tracer disabled, for each kind of layer it may pass on its
way through a client (``benchmarks/run`` counts each client's whole command):

- ``off-wrapt``: a command wrapped as the clients' are (``wrapping.wrap``, ``core.trace``):
  wrapt binds and calls the method, and skips our wrapper (its ``enabled``);
- ``off-function``: a method wrapped with ``core.as_function`` (meta-memcache's meta methods
  and executor, bmemcached's protocol): one plain function that sees the tracer is off;
- ``off-hook``: a method under ``core.hook`` (python-memcached's ``_get_server``, emcache's
  node connection), which sees that no call is traced.

Each part runs in its own interpreter under callgrind (``callgrind.py``): after a warm-up,
two batches of different lengths are counted, and the difference per command is the
part's cost. The counts do not move with load on the machine. Run:
``.venv/bin/python benchmarks/anatomy.py``.

With ``--clients``, it then says how many layers of each kind every installed client's get
and set pass (``layers.py``), what those layers add at the figures above with the tracer
disabled, next to what the budget measured of the whole command, and how many of the
integration's Python calls a traced command makes.
"""

import argparse
from functools import partial
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the working tree's package

import callgrind  # noqa: E402
from variants import SERVICE  # noqa: E402

PARTS = ("empty", "span", "tags", "tags-native", "wrapt", "python-wrapper")
OFF = ("off-empty", "off-wrapt", "off-function", "off-hook")  # the tracer disabled
SHORT = 100  # commands of the short batch; the long one runs --commands more


def _command(part: str):
    """One 'command' of ``part``: a function of no arguments that calls a method, as an
    app calls a client's (looked up on the object each time: that is where a wrapper binds)."""
    from ddtrace.trace import tracer

    from ddtrace_memcached import tagging

    class Plain:
        def get(self, key, default=None):  # a command's shape: a key, a keyword with a default
            return 1

    plain = Plain()
    fixed = tagging.fixed("127.0.0.1", 11211)  # the integration's 7 fixed tags and metrics

    def empty():
        plain.get("k")

    def span():
        s = tracer.trace(tagging.OPERATION, service=SERVICE, resource="get", span_type=tagging.SPAN_TYPE)
        plain.get("k")
        s.finish()

    def tags():
        s = tracer.trace(tagging.OPERATION, service=SERVICE, resource="get", span_type=tagging.SPAN_TYPE)
        tagging.set_public(s, fixed)  # the public API: what every ddtrace version has
        plain.get("k")
        s.set_metric(tagging.ROW_COUNT, 1)
        s.finish()

    def tags_native():
        s = tracer.trace(tagging.OPERATION, service=SERVICE, resource="get", span_type=tagging.SPAN_TYPE)
        s._set_attributes(fixed)
        plain.get("k")
        s._set_attribute(tagging.ROW_COUNT, 1)
        s.finish()

    import wrapt

    class Wrapped(Plain):
        pass

    wrapt.wrap_function_wrapper(Wrapped, "get", lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
    wrapped = Wrapped()

    def through_wrapt():
        wrapped.get("k")

    class Decorated(Plain):
        def get(self, *args, **kwargs):
            return Plain.get(self, *args, **kwargs)

    decorated = Decorated()

    def through_python():
        decorated.get("k")

    from ddtrace_memcached import core
    from ddtrace_memcached import wrapping

    library = core.Library()
    off = {}
    for name, wrapper in (
        ("off-wrapt", partial(core.trace, library, None)),
        ("off-function", core.as_function(core.trace, library, None)),
        ("off-hook", core.hook(library, after=lambda *args: None)),
    ):
        cls = type(name, (Plain,), {})
        wrapping.wrap(cls, "get", wrapper)
        off[name] = cls()
    if part.startswith("off-"):
        tracer.enabled = False

    return {
        "empty": empty,
        "span": span,
        "tags": tags,
        "tags-native": tags_native,
        "wrapt": through_wrapt,
        "python-wrapper": through_python,
        "off-empty": empty,
        **{name: _calls_get(instance) for name, instance in off.items()},
    }[part]


def _calls_get(instance):
    """``instance.get("k")``, in the shape of ``empty``."""

    def command():
        instance.get("k")

    return command


def _count(part: str, commands: int) -> float:
    return callgrind.script_per_command([__file__, "--run", part], (SHORT, SHORT + commands))["Ir"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=1000, help="commands counted per part (default 1000)")
    parser.add_argument("--clients", action="store_true", help="then the layers each client's get and set pass")
    parser.add_argument("--run", choices=PARTS + OFF, help=argparse.SUPPRESS)  # the measured process
    parser.add_argument("--lengths", help=argparse.SUPPRESS)  # its batches
    args = parser.parse_args()
    if args.run:
        callgrind.run_in_traces(_command(args.run), [int(n) for n in args.lengths.split(",")])
        return
    from ddtrace_memcached import tagging

    parts = [p for p in PARTS + OFF if p != "tags-native" or tagging.FAST_SPAN is not None]
    per = {"tags-native": float("nan")}
    for part in parts:
        per[part] = _count(part, args.commands) / 1000
    empty = per["empty"]
    print("| part | k instructions per command |")
    print("|---|---|")
    print("| a span, no tags (tracer.trace + finish, encoded) | %.1f |" % (per["span"] - empty))
    print("| our 8 tags and metrics on it (set_tag/set_metric) | %.1f |" % (per["tags"] - per["span"]))
    print("| the same in ours' native calls (ddtrace 4.1+) | %.1f |" % (per["tags-native"] - per["span"]))
    print("| a wrapt FunctionWrapper around a method | %.1f |" % (per["wrapt"] - empty))
    print("| a plain Python wrapper of (*args, **kwargs) around it | %.1f |" % (per["python-wrapper"] - empty))
    off = per["off-empty"]
    print("| tracer disabled: a command wrapped by wrapt (wrapping.wrap) | %.1f |" % (per["off-wrapt"] - off))
    print("| tracer disabled: a method under core.as_function | %.1f |" % (per["off-function"] - off))
    print("| tracer disabled: a method under core.hook | %.1f |" % (per["off-hook"] - off))
    if args.clients:
        import budget
        import layers

        costs = {"wrapt": per["off-wrapt"] - off, "function": per["off-function"] - off, "hook": per["off-hook"] - off}
        print()
        print(layers.table(layers.profiles(), costs, budget.load()["budgets"]))


if __name__ == "__main__":
    main()
