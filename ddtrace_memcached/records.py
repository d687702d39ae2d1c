"""``record``: the decorator of the frozen records that every command reads.

A command's table row (:class:`commands.Command`, :class:`commands.Arg`), the overrides in
force (:class:`overrides.Scope`) and a libmc client's settings are read field by field on
every command. They are frozen dataclasses with slots, not ``NamedTuple``\\ s: CPython's
adaptive interpreter (3.11 and later) specializes reading a slot, not a ``NamedTuple``'s
field (a descriptor of a kind it does not know), which then costs a generic attribute
lookup each time, about 0.1k instructions. On pymemcache that was 1.3k instructions per
``get`` and 1.9k per ``set`` (``benchmarks/run --mode instructions``). Python 3.9 has no
``slots=True``: there they are plain frozen dataclasses.
"""

import dataclasses
import sys

record = dataclasses.dataclass(frozen=True, **({"slots": True} if sys.version_info >= (3, 10) else {}))
