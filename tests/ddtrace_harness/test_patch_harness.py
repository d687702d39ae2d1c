"""dd-trace-py's ``PatchTestCase.Base`` against the ``memcached`` integration, once per client.

It is what every ddtrace integration passes: importing, patching and unpatching in every
order (each in a new interpreter), idempotence, ``ddtrace-run`` patching on import (with and
without ``DD_TRACE_SAFE_INSTRUMENTATION_ENABLED``), ``_supported_versions()``, and the
version reported to the test agent. Here the integration is ``memcached`` and the module is
each client the registry lists that is installed; "patched" means our wrapper is on every
method that ``ddtrace_memcached.clients.<client>.targets()`` names (told apart by
``wrapping.is_ours``, whether a wrapt wrapper or a plain function), "not double patched" that
it is there once.
"""

import importlib
import importlib.util
import os
import sys

import pytest

import ddtrace_memcached
from ddtrace_memcached import registry
from ddtrace_memcached import wrapping
from servers import TestAgent

from .patch import PatchTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
# The sys.path entry this module was imported from, for `python -m unittest <this module>...`.
IMPORT_ROOT = os.path.abspath(os.path.join(HERE, *[os.pardir] * (len(__name__.split(".")) - 1)))
_agent_url = []  # the session's test agent, once started


@pytest.fixture(scope="module", autouse=True)
def _test_agent():
    """The harness reports each client's version to a test agent (``test_and_emit_get_version``)."""
    agent = TestAgent()
    _agent_url.append(agent.url)
    yield
    _agent_url.clear()
    agent.stop()


class _Adapter:
    """What ``PatchTestCase.Base`` leaves to the integration: what "patched" means, and where
    the harness's subprocesses find this venv's ``python`` and ``ddtrace-run`` (it runs them
    from PATH), this module, and the test agent."""

    @property
    def _subproc_test_env(self):
        return {
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(filter(None, [IMPORT_ROOT, os.environ.get("PYTHONPATH")])),
            "DDTRACE_HARNESS_AGENT_URL": _agent_url[0] if _agent_url else "",
        }

    def _targets(self):
        client = importlib.import_module("ddtrace_memcached.clients.%s" % self.__module_name__)
        return [(cls, method) for cls, method, _ in client.targets() if hasattr(cls, method)]

    def _ours_in_chain(self, cls, method) -> int:
        """How many of our wrappers are on ``cls.method``, from the outermost wrapper in, whatever
        their kind (wrapt's FunctionWrapper, or a plain function: ``wrapping.is_ours``)."""
        attribute, found = vars(cls).get(method) or getattr(cls, method), 0
        while attribute is not None:
            found += wrapping.is_ours(attribute)
            attribute = getattr(attribute, "__wrapped__", None)
        return found

    def assert_module_patched(self, module):
        for cls, method in self._targets():
            self.assertTrue(wrapping.is_ours(vars(cls).get(method)), "%s.%s: not ours" % (cls.__name__, method))

    def assert_not_module_patched(self, module):
        for cls, method in self._targets():
            self.assertEqual(self._ours_in_chain(cls, method), 0, "%s.%s: ours" % (cls.__name__, method))

    def assert_not_module_double_patched(self, module):
        for cls, method in self._targets():
            self.assertEqual(self._ours_in_chain(cls, method), 1, "%s.%s: ours twice" % (cls.__name__, method))


def _case(client: registry.Client) -> type:
    return type(
        "Test%sPatch" % client.module.title().replace("_", ""),
        (_Adapter, PatchTestCase.Base),
        {
            "__integration_name__": registry.INTEGRATION,
            "__module_name__": client.module,
            "__patch_module__": "ddtrace_%s.patch",
            "__patch_func__": ddtrace_memcached.patch,
            "__unpatch_func__": ddtrace_memcached.unpatch,
            # The version ddtrace reports for the client (get_versions() once it is imported).
            "__get_version__": lambda: registry.client_version(client.module),
            "__module__": __name__,
        },
    )


def _define_cases() -> None:
    """A module-level class per installed client: ``python -m unittest`` finds it by name."""
    for client in registry.CLIENTS:
        if importlib.util.find_spec(client.module) is not None:
            case = _case(client)
            globals()[case.__name__] = case


_define_cases()
