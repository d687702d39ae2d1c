"""The per-call record (``core.Call``): an outer call's record (``core.OuterCall``), which has
an ``__init__`` of its own (see its comment), starts as a call's does, field for field."""

from ddtrace_memcached import core


def test_an_outer_call_starts_with_every_field_a_call_starts_with():
    library, command, instance, parent = core.Library(), object(), object(), object()
    call = core.Call(library, command, instance, parent, None)
    outer = core.OuterCall(library, command, instance, parent, None)
    fields = [name for cls in type(call).__mro__ for name in getattr(cls, "__slots__", ())]
    assert fields, "Call has no slots"
    for name in fields:
        assert getattr(outer, name) == getattr(call, name), name
    assert (outer.spans, outer.servers) == (0, None) and outer.start_ns > 0
    assert core.OuterCall(library, command, instance, None, []).servers == []
