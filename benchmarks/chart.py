"""The chart: per workload, what each variant adds per memcached command.

One panel for CPU time (medians, with interquartile ranges over the rounds) and one for
instructions (exact: no range), each when measured. Needs matplotlib
(``requirements/bench.txt``).
"""

import machine
from report import LABELS
from workloads import WORKLOADS
from workloads import expected_spans

COLORS = {"ours": "C0", "builtin": "C1", "otel": "C2", "floor": "C3", "floor-wrapt": "C4", "ours-ref": "C5"}


def chart(results: dict, path: str) -> str:
    """Per workload, what each variant adds per memcached command: CPU time with its
    interquartile range over the rounds, and instructions (exact: no range), each in
    its own panel when measured."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (requirements/bench.txt)"
    panels = []
    if results["phases"].get("enabled"):
        title = "CPU time: median of %d interleaved rounds; bars: interquartile range" % results["rounds"]
        panels.append((results["phases"]["enabled"]["summary"], "CPU µs added", 1.0, title))
    if results.get("instructions", {}).get("enabled"):
        title = "Instructions (callgrind): exact counts"
        panels.append((results["instructions"]["enabled"], "k instructions added", 1e-3, title))
    if not panels:
        return "no chart: nothing measured with the tracer enabled"
    most = max(len(panel[0]["ours"]) for panel in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(10, 0.7 * most), 4.5 * len(panels)), squeeze=False)
    for ax, (summary, ylabel, scale, title) in zip(axes[:, 0], panels):
        names = [n for n in WORKLOADS if n in summary["ours"]]  # each panel its own workloads
        variants = [v for v in summary if v != "untraced"]
        width = 0.8 / len(variants)
        for i, v in enumerate(variants):
            xs, ys, errors = [], [], [[], []]
            for j, n in enumerate(names):
                if n not in summary[v] or expected_spans(v, n) == 0:
                    continue  # the variant does not trace this client
                per = scale / WORKLOADS[n][2]
                s = summary[v][n]
                low, high = s.get("added_quartiles") or (s["added"], s["added"])
                xs.append(j + i * width)
                ys.append(s["added"] * per)
                errors[0].append(max(0.0, (s["added"] - low) * per))
                errors[1].append(max(0.0, (high - s["added"]) * per))
            ax.bar(xs, ys, width, yerr=errors, capsize=2, label=LABELS[v], color=COLORS.get(v))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
        ax.set_xticklabels([WORKLOADS[n][0] for n in names], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(ylabel + " per memcached command", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=len(variants))
    fig.suptitle("What tracing adds to each memcached command", fontsize=11)
    fig.text(0.01, 0.005, machine.line(results["machine"]), fontsize=6, alpha=0.7)
    fig.tight_layout(rect=(0, 0.015, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return "chart: %s" % path
