"""The integration's settings in ``ddtrace.config.memcached``, and its span names."""

import os

from ddtrace import config
from ddtrace.internal.schema import schematize_cache_operation
from ddtrace.internal.schema import schematize_service_name
from ddtrace.internal.utils.formats import asbool

import _ddtrace_memcached_hook

from . import registry
from . import tagging
from .diagnostics import COMMAND_ENABLED_ENV

INTEGRATION = registry.INTEGRATION


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


class _ByAttribute:
    """``configs[name]`` as ``getattr(config, name)``: where ddtrace keeps no registry dict."""

    def __getitem__(self, name: str):
        return getattr(config, name)


def configs():
    """ddtrace's registry of integration configs (``config._integration_configs``): one
    dict for the process, whose ``memcached`` entry ``config._add`` replaces. The core looks
    ``config.memcached`` up there on every span, so that changes apply at once, without
    ``Config.__getattr__``, which raises and catches an AttributeError on every call."""
    found = getattr(config, "_integration_configs", None)
    return found if isinstance(found, dict) else _ByAttribute()


def integration_config():
    """``config.memcached`` as it is now."""
    return configs()[INTEGRATION]


def operation_name() -> str:
    return schematize_cache_operation(tagging.OPERATION, cache_provider="memcached")
