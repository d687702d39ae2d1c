"""The markdown report of a run: tables of what each variant adds, and the targets.

Per workload, what ours, ddtrace's built-in integrations, OpenTelemetry's and the floor
add to the untraced command, in CPU µs and in instructions, and ours against each; the
scaling series, whose excess over the floor must stay flat; startup; and the checks that
make the figures meaningful (:func:`check`): the spans each variant made, and delivered.
"""

import budget
import machine
from workloads import CLIENT_OF
from workloads import OP_OF
from workloads import PYMEMCACHE
from workloads import SERIES
from workloads import WORKLOADS
from workloads import expected_spans
from workloads import expected_spans_in

LABELS = {
    "untraced": "untraced",
    "ours": "ours",
    "ours-ref": "ref",
    "builtin": "built-in",
    "otel": "OTel",
    "floor": "floor",
    "floor-wrapt": "floor+wrapt",
}

TARGETS = {"floor": 1.0, "floor_cpu": 1.05, "builtin": 0.6, "disabled_us": 1.0, "flat": 1.1}


def _num(value, unit, signed=False) -> str:
    if unit == "k":
        value = value / 1000
    text = ("%+.1f" if signed else "%.1f") % value
    return text.replace("-", "−")


def _ratio(num, den, floor) -> str:
    return "%.2f" % (num / den) if den > floor else "—"


def ratio_table(enabled: dict, disabled: dict, unit: str, selected) -> str:
    """One row per workload (and per workload with the tracer disabled): the untraced cost,
    what each variant adds to it, and ours against the others."""
    extra = [v for v in enabled if v not in ("untraced", "ours", "builtin", "otel", "floor")]
    columns = ["builtin", "otel", "floor"] + extra
    name = "µs" if unit == "µs" else "k instr."
    head = ["workload", "untraced %s" % name, "ours +"] + ["%s +" % LABELS[v] for v in columns]
    head += ["ours/untraced", "ours/built-in", "ours/floor"] + ["ours/%s" % LABELS[v] for v in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    small = 0.05 if unit == "µs" else 50  # ratios of added costs this close to 0 mean nothing
    for summary, suffix in ((enabled, ""), (disabled, ", tracer disabled")):
        for workload in selected if summary else ():
            base, ours = summary["untraced"][workload], summary["ours"][workload]
            row = [WORKLOADS[workload][0] + suffix, _num(base["median"], unit), _num(ours["added"], unit, True)]
            for v in columns:
                # A variant that does not trace this client adds nothing to show.
                shown = v in summary and expected_spans(v, workload) > 0
                row.append(_num(summary[v][workload]["added"], unit, True) if shown else "—")
            row.append("%.2f" % (ours["median"] / base["median"]))
            for v in ["builtin", "floor"] + extra:
                traced = not suffix and v in summary and expected_spans(v, workload) > 0
                row.append(_ratio(ours["added"], summary[v][workload]["added"], small) if traced else "—")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def client_table(enabled: dict, disabled: dict) -> str:
    """One row per client, ``get / set`` in each cell, in k instructions per call: the
    README's table. What ours, the built-in and the floor add with the tracer enabled,
    ours against the floor, and what ours adds with it disabled."""
    head = ["client", "untraced", "ours +", "built-in +", "floor +", "ours/floor", "tracer disabled, ours +"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_client = {}
    for name in WORKLOADS:
        if name in OP_OF and name in enabled.get("ours", {}):
            by_client.setdefault(CLIENT_OF[name], []).append(name)

    def cells(figure):
        return " / ".join(figure(name) for name in names)

    def added(summary, variant):
        def figure(name):
            shown = variant in summary and name in summary[variant] and expected_spans(variant, name) > 0
            return _num(summary[variant][name]["added"], "k", True) if shown or variant == "ours" else "—"

        return figure

    for client, names in by_client.items():
        row = [client + " " + " / ".join(OP_OF[n] for n in names)]
        row.append(cells(lambda n: _num(enabled["untraced"][n]["median"], "k")))
        row += [cells(added(enabled, v)) for v in ("ours", "builtin", "floor")]
        row.append(cells(lambda n: _ratio(enabled["ours"][n]["added"], enabled["floor"][n]["added"], 50)))
        row.append(cells(added(disabled, "ours")) if disabled else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def details(results: dict) -> str:
    lines = ["| phase | variant | workload | µs/command | IQR | +µs | IQR | main thread | spans/command |"]
    lines.append("|" + "---|" * 9)
    for phase, data in results["phases"].items():
        for variant, by_workload in data["summary"].items():
            for name, s in by_workload.items():
                spans = "%.2f" % s["spans_per_command"]
                if abs(s["spans_per_command"] - s["expected_spans"]) > 1e-9:
                    spans += " (expected %s)" % s["expected_spans"]
                row = [
                    phase,
                    LABELS[variant],
                    name,
                    _num(s["median"], "µs"),
                    _num(s["iqr"], "µs"),
                    _num(s["added"], "µs", True),
                    _num(s["added_iqr"], "µs"),
                    "%.0f%%" % (100 * s["main_thread_share"]),
                    spans,
                ]
                lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("| phase | variant | spans written | delivered to sink | traces | payloads | bytes |")
    lines.append("|---|---|---|---|---|---|---|")
    for phase, data in results["phases"].items():
        for variant, written in data["written"].items():
            sink = data["delivered"][variant]
            row = [phase, LABELS[variant], str(written), str(sink["spans"]), str(sink["traces"])]
            row += [str(sink["payloads"]), str(sink["bytes"])]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _covered(variant: str, names) -> list:
    return [n for n in names if expected_spans(variant, n) > 0]


def per_memcached_command(summary: dict, variant: str, name: str) -> float:
    """What ``variant`` adds per memcached command (a HashClient get_many sends one per server)."""
    return summary[variant][name]["added"] / WORKLOADS[name][2]


def targets(enabled: dict, disabled: dict, unit: str, selected) -> str:
    lines = []
    names = [n for n in WORKLOADS if n in selected]
    pymemcache = [n for n in names if CLIENT_OF[n] == PYMEMCACHE]
    floor_target = TARGETS["floor"] if unit == "k" else TARGETS["floor_cpu"]
    checks = [("floor", "floor", floor_target, pymemcache, "pymemcache")]
    checks.append(("floor", "floor", floor_target, [n for n in names if n not in pymemcache], "other clients"))
    checks.append(("builtin", "built-in", TARGETS["builtin"], names, "where it traces"))
    for other, label, target, among, what in checks if enabled else ():
        among = _covered(other, among)
        if other not in enabled or not among:
            continue
        ratios = {n: enabled["ours"][n]["added"] / enabled[other][n]["added"] for n in among}
        worst = max(ratios, key=ratios.get)
        lines.append(
            "- ours/%s ≤ %.2f, %s: %s (worst %.2f, %s)"
            % (label, target, what, _ok(ratios[worst] <= target), ratios[worst], worst)
        )
    table = scaling(enabled, unit, selected) if enabled and "floor" in enabled else ""
    if table:  # none when no series was selected
        lines.append(table)
    if disabled:
        per_command = {n: per_memcached_command(disabled, "ours", n) for n in names}
        worst = max(per_command, key=per_command.get)
        if unit == "µs":
            lines.append(
                "- tracer disabled, ≤ %.0f µs added per memcached command: %s (worst %+.2f µs, %s)"
                % (TARGETS["disabled_us"], _ok(per_command[worst] <= TARGETS["disabled_us"]), per_command[worst], worst)
            )
        else:
            lines.append(
                "- tracer disabled: ours adds at most %s k instructions per memcached command (%s)"
                % (_num(per_command[worst], "k"), worst)
            )
    return "\n".join(lines)


def _slope(points) -> float:
    """Least-squares slope of ``[(x, y)]``."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def scaling(enabled: dict, unit: str, selected) -> str:
    """Per memcached command, what ours and the floor add at each point of each series,
    and the slope per key, server or thread. Ours may grow as much as the floor's span
    does (a bigger result to hold), not more: its excess over the floor stays flat."""
    lines = ["", "| scaling, added per memcached command | ours | floor | ours − floor | slope of ours − floor |"]
    lines.append("|---|---|---|---|---|")
    verdicts = []
    for series, (what, points) in SERIES.items():
        points = [(x, n) for x, n in points if n in selected]
        if len(points) < 2:
            continue
        ours = [(x, per_memcached_command(enabled, "ours", n)) for x, n in points]
        floor = [(x, per_memcached_command(enabled, "floor", n)) for x, n in points]
        excess = [(x, o - f) for (x, o), (_, f) in zip(ours, floor)]
        slope = _slope(excess)
        # Flat: from the first point to the last, what ours adds beyond the floor's span
        # grows by no more than a tenth of the floor's own cost per command.
        rise = excess[-1][1] - excess[0][1]
        allowed = (TARGETS["flat"] - 1) * abs(floor[0][1])
        verdicts.append(
            "- flat in %ss: %s (from %d to %d %ss, ours − floor moves %s %s per memcached command, "
            "allowed %s; slope %s %s per %s)"
            % (
                what,
                _ok(rise <= allowed),
                points[0][0],
                points[-1][0],
                what,
                _num(rise, unit, True),
                unit,
                _num(allowed, unit),
                _num(slope, unit, True),
                unit,
                what,
            )
        )
        for (x, o), (_, f), (_, e) in zip(ours, floor, excess):
            lines.append(
                "| %s, %d %s%s | %s | %s | %s | %s |"
                % (
                    series,
                    x,
                    what,
                    "" if x == 1 else "s",
                    _num(o, unit, True),
                    _num(f, unit, True),
                    _num(e, unit, True),
                    "%s %s per %s" % (_num(slope, unit, True), unit, what) if x == points[0][0] else "",
                )
            )
    return "\n".join(verdicts + lines + [""]) if verdicts else ""


def _ok(ok: bool) -> str:
    return "met" if ok else "NOT met"


def startup_table(startup: dict) -> str:
    lines = ["| interpreter startup, CPU | without the package | with it | added | modules without / with |"]
    lines.append("|---|---|---|---|---|")
    for label, by_venv in startup.items():
        a, b = by_venv["without"], by_venv["with"]
        lines.append(
            "| `%s` | %.1f ms | %.1f ms | %s ms | %d / %d |"
            % (label, a["cpu_ms"], b["cpu_ms"], _num(b["cpu_ms"] - a["cpu_ms"], "ms", True), a["modules"], b["modules"])
        )
    return "\n".join(lines)


def check(results: dict) -> list:
    """What makes the figures meaningless: wrong span counts, spans that did not reach the sink."""
    problems = []
    for phase, data in results["phases"].items():
        for variant, by_workload in data["summary"].items():
            for name, s in by_workload.items():
                if abs(s["spans_per_command"] - s["expected_spans"]) > 1e-9:
                    problems.append(
                        "%s/%s/%s: %.2f spans per command, expected %s"
                        % (phase, variant, name, s["spans_per_command"], s["expected_spans"])
                    )
        for variant, written in data["written"].items():
            sink = data["delivered"][variant]
            if sink["spans"] is not None and sink["spans"] != written:
                problems.append(
                    "%s/%s: %s spans written, %s delivered to the sink" % (phase, variant, written, sink["spans"])
                )
            if phase == "enabled" and sink["traces"] == 0:
                problems.append("%s/%s: no trace reached the sink" % (phase, variant))
            if data["ready"][variant].get("inconsistent"):
                problems.append("%s/%s: spans per command differ between generations" % (phase, variant))
    ready = results["phases"].get("enabled", {}).get("ready", {})
    for variant in ("floor", "floor-wrapt"):
        if "ours" in ready and variant in ready:
            for resource in ("get", "get_many", "set"):
                if ready["ours"]["span_signatures"].get(resource) != ready[variant]["span_signatures"].get(resource):
                    problems.append("the %s's %s span differs from ours" % (variant, resource))
    for phase, summary in results.get("instructions", {}).items():
        for variant, by_workload in summary.items():
            for name, s in by_workload.items():
                expected = expected_spans_in(phase)(variant, name)
                if abs(s["spans_per_command"] - expected) > 1e-9:
                    problems.append(
                        "instructions %s/%s/%s: %.2f spans per command, expected %s"
                        % (phase, variant, name, s["spans_per_command"], expected)
                    )
    return problems


def report(results: dict, problems: list) -> str:
    """The markdown of a run: its tables, the targets met or not, and the problems."""
    lines = ["## memcached tracing overhead", "", "Machine: " + machine.line(results["machine"]) + "."]
    loads = results["machine"]["load_average"][0], results["machine"]["load_average_end"][0]
    lines.append("Load average %.2f at the start, %.2f at the end." % loads)
    phases, selected = results["phases"], results["workloads"]
    if phases:
        enabled = phases.get("enabled", {}).get("summary", {})
        disabled = phases.get("disabled", {}).get("summary", {})
        lines += ["", "### CPU time per command", "", ratio_table(enabled, disabled, "µs", selected), ""]
        lines.append(
            "CPU µs per command, the whole process (writer included): median of %d rounds over %d sets of "
            "processes. +: added over untraced (median of the paired per-round differences). "
            "ours/built-in, ours/floor: ratios of the added costs."
            % (results["rounds"], max(p["generations"] for p in phases.values()))
        )
        lines += ["", targets(enabled, disabled, "µs", selected)]
    instructions = results.get("instructions")
    if instructions:
        enabled, disabled = instructions.get("enabled", {}), instructions.get("disabled", {})
        lines += ["", "### Instructions per command (callgrind)", "", ratio_table(enabled, disabled, "k", selected), ""]
        if "floor" in enabled:
            lines += ["Per client, k instructions per call (get / set):", "", client_table(enabled, disabled), ""]
        lines += [targets(enabled, disabled, "k", selected)]
        if budget.measured(results):
            over = budget.exceeded(results, budget.load())
            lines += ["", "Instruction budget (`benchmarks/budget.json`): " + ("within it" if not over else "OVER:")]
            lines += ["- " + line for line in over]
            lines += ["", "To record the budget anew: `%s`." % budget.COMMAND] if over else []
    if "startup" in results:
        lines += ["", "### Startup", "", startup_table(results["startup"]), ""]
        lines.append("CPU time of `python -I -c ...`, median of %d runs." % results["startup_runs"])
    if phases:
        lines += ["", "<details><summary>Details</summary>", "", details(results), "", "</details>"]
    if problems:
        lines += ["", "PROBLEMS:"] + ["- " + p for p in problems]
    return "\n".join(lines) + "\n"
