"""The integration's settings in ``ddtrace.config.memcached``, and its span names."""

import os

from ddtrace import config
from ddtrace.internal.schema import schematize_cache_operation
from ddtrace.internal.schema import schematize_service_name
from ddtrace.internal.utils.formats import asbool

import _ddtrace_memcached_hook

from . import registry
from . import tagging

INTEGRATION = registry.INTEGRATION
COMMAND_ENABLED_ENV = "DD_TRACE_MEMCACHED_COMMAND_ENABLED"
_NO_CONFIGS: dict = {}


def register() -> None:
    """Adds ``config.memcached``'s defaults; settings the user made already are kept.

    ``DD_MEMCACHED_SERVICE`` is read by ddtrace itself into ``config.memcached.service``.
    """
    _ddtrace_memcached_hook.add_integration_config(type(config).__module__)
    config._add(
        INTEGRATION,
        dict(
            _default_service=schematize_service_name("memcached"),
            command_enabled=asbool(os.environ.get(COMMAND_ENABLED_ENV, "false")),
        ),
    )


def integration_config():
    """``config.memcached``, looked up on every span: ``config._add`` replaces the object.

    ddtrace's registry is read directly where it exists: ``Config.__getattr__`` raises
    and catches an AttributeError on every call.
    """
    found = getattr(config, "_integration_configs", _NO_CONFIGS).get(INTEGRATION)
    return found if found is not None else getattr(config, INTEGRATION)


def operation_name() -> str:
    return schematize_cache_operation(tagging.OPERATION, cache_provider="memcached")
