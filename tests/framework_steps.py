"""Real users' apps (dogpile.cache, cachelib) run under ``ddtrace-run``, their cache calls
one by one (steps): after each step the app notes how many spans had finished, so every
cache call is checked for its own memcached spans: the commands the framework sends for
it, each naming the server.
"""

import json

from apps import app
from apps import ddtrace_run
from apps import run_python
from apps import spans_of

STEPS_MARK = "@@STEPS@@"

# The body's steps: (name, code); each runs at top level, so its spans are whole traces
# (finished, and kept by the capture filter) by the time the next step starts.
_RUN_STEPS = """
_steps = []
for _name, _code in STEPS:
    exec(_code)
    _tracer.flush()
    _steps.append((_name, len(_Keep.spans)))
print({mark!r} + _json.dumps(_steps))
"""


def run_steps(setup: str, steps, address) -> dict:
    """``{step: [its memcached spans]}`` of an app run under ddtrace-run."""
    body = [setup, "STEPS = %r" % (steps,), _RUN_STEPS.format(mark=STEPS_MARK)]
    proc = run_python(app(body, address), argv_prefix=ddtrace_run())
    spans = spans_of(proc)
    line = next(line for line in proc.stdout.splitlines() if line.startswith(STEPS_MARK))
    by_step, start = {}, 0
    for name, end in json.loads(line[len(STEPS_MARK) :]):
        by_step[name] = [s for s in spans[start:end] if s["component"] == "memcached"]
        start = end
    return by_step


def assert_steps(by_step: dict, expected: dict, address) -> None:
    assert {step: [s["resource"] for s in found] for step, found in by_step.items()} == expected
    for found in by_step.values():
        for span in found:
            assert span["name"] == "memcached.command" and span["error"] == 0, span
            assert span["tags"]["out.host"] == address[0], span
            assert span["tags"]["db.system"] == "memcached"


# dogpile.cache's region API, the same steps whatever its memcached backend.
DOGPILE_STEPS = [
    ("set", "region.set('a', 1)"),
    ("get", "assert region.get('a') == 1"),
    ("get_or_create", "assert region.get_or_create('g', lambda: 42) == 42"),
    ("set_multi", "region.set_multi({'x': 1, 'y': 2})"),
    ("get_multi", "assert region.get_multi(['x', 'y', 'z'])[:2] == [1, 2]"),
    ("delete", "region.delete('a')"),
    ("delete_multi", "region.delete_multi(['x', 'y'])"),
]
