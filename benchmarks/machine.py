"""What the figures were measured on: the CPU, Python, and the versions that matter."""

import importlib.metadata
import os
import platform


def describe() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        python=platform.python_version(),
        system=platform.system() + " " + platform.release(),
        ddtrace=version("ddtrace"),
        pymemcache=version("pymemcache"),
        wrapt=version("wrapt"),
        opentelemetry_sdk=version("opentelemetry-sdk"),
        load_average=os.getloadavg(),
    )


def line(m: dict) -> str:
    return "%s, %s cores, %s, Python %s, ddtrace %s, pymemcache %s, wrapt %s, opentelemetry-sdk %s" % (
        m["cpu"],
        m["cores"],
        m["system"],
        m["python"],
        m["ddtrace"],
        m["pymemcache"],
        m["wrapt"],
        m["opentelemetry_sdk"],
    )
