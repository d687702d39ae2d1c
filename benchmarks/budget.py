"""The instruction budget: what ours may add to ``get`` and ``set`` of every client.

``budget.json`` records, per client and op, two figures of an instruction run
(``overhead.py --mode instructions``): with the tracer enabled, ours' addition over the
floor's, as a ratio (``ours/floor``: more stable across Python and ddtrace versions than
a count), and with the tracer disabled, ours' addition over untraced, in thousands of
instructions. A run exceeds the budget when a ratio is above its record by more than
``tolerance["ours/floor"]`` of it, or an addition above its record by more than
``tolerance["tracer disabled"]`` of it (and more than ``tolerance[DISABLED_SLACK]``
thousand instructions). ``tests/test_benchmarks.py`` checks every installed
client with a run of :data:`ARGS`; :data:`COMMAND` (also the file's ``update`` entry)
records that run's figures anew.
"""

import json
import os

from workloads import CLIENT_OF
from workloads import GET_SET
from workloads import OP_OF

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "budget.json")
RATIO, DISABLED = "ours/floor", "tracer disabled"
# A tracer-disabled addition is a few thousand instructions, and a process's hash seed moves
# it by up to 2k: it is the median over instructions.DISABLED_SEEDS seeds, which moves by a
# few hundred from run to run (bmemcached's, the most, about 0.35k a standard deviation):
# its tolerance is a share of the record, but never less than this.
DISABLED_SLACK = "tracer disabled, k at least"
# The run the budget is recorded from and checked against: small batches, get and set of
# every client, and only the variants its figures need (ddtrace's built-in may be added:
# each variant counts in processes of its own, so the others' counts do not change).
ARGS = ["--mode", "instructions", "--quick", "--skip", "otel,builtin", "--startup-runs", "0", "--workloads", "get-set"]
COMMAND = "benchmarks/run %s --record-budget" % " ".join(ARGS)


def measured(results: dict) -> dict:
    """``{client: {op: {RATIO: ours/floor, DISABLED: k instructions}}}`` of a run's
    instruction counts, for the get and set workloads it measured in both phases."""
    enabled = results.get("instructions", {}).get("enabled", {})
    disabled = results.get("instructions", {}).get("disabled", {})
    found = {}
    for name in GET_SET:
        if name in enabled.get("floor", {}) and name in disabled.get("ours", {}):
            ratio = enabled["ours"][name]["added"] / enabled["floor"][name]["added"]
            figures = {RATIO: ratio, DISABLED: disabled["ours"][name]["added"] / 1000}
            found.setdefault(CLIENT_OF[name], {})[OP_OF[name]] = figures
    return found


def load(path: str = PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def exceeded(results: dict, budget: dict) -> list:
    """What of the run is over ``budget`` (or has none), one line each; empty: within it."""
    tolerance, budgets = budget["tolerance"], budget["budgets"]
    found = []
    for client, ops in measured(results).items():
        for op, figures in ops.items():
            recorded = budgets.get(client, {}).get(op)
            if recorded is None:
                found.append("%s %s: no budget recorded" % (client, op))
                continue
            for key, unit in ((RATIO, ""), (DISABLED, "k")):
                slack = tolerance[key] * abs(recorded[key])
                if key == DISABLED:
                    slack = max(slack, tolerance.get(DISABLED_SLACK, 0))
                limit = recorded[key] + slack
                if figures[key] > limit:
                    found.append(
                        "%s %s, %s: %.3f%s, over the budget of %.3f%s (%.3f%s recorded + %.3f%s)"
                        % (client, op, key, figures[key], unit, limit, unit, recorded[key], unit, slack, unit)
                    )
    return found


def record(results: dict, path: str = PATH) -> dict:
    """Writes the run's figures into the budget at ``path`` (other clients' stay as they were)."""
    budget = load(path)
    budget["update"] = COMMAND
    for client, ops in measured(results).items():
        for op, figures in ops.items():
            rounded = {RATIO: round(figures[RATIO], 3), DISABLED: round(figures[DISABLED], 2)}
            budget["budgets"].setdefault(client, {})[op] = rounded
    with open(path, "w") as f:
        f.write(_dumps(budget))
    return budget


def _dumps(budget: dict) -> str:
    """JSON with a line per client, so that a change to a budget is a one-line diff."""
    clients = ",\n".join("    %s: %s" % (json.dumps(c), json.dumps(ops)) for c, ops in budget["budgets"].items())
    return '{\n  "update": %s,\n  "tolerance": %s,\n  "budgets": {\n%s\n  }\n}\n' % (
        json.dumps(budget["update"]),
        json.dumps(budget["tolerance"]),
        clients,
    )
