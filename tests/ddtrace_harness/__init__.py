"""dd-trace-py's own patch-test harness, run against the ``memcached`` integration.

``patch.py`` (``PatchTestCase.Base``), ``subprocesstest.py`` and ``utils.py`` come from
dd-trace-py's test tree (which its wheel does not ship), under its Apache-2.0 OR
BSD-3-Clause license (``LICENSE*`` and ``NOTICE`` here). Each file's header names the
commit it was taken from and what was changed: ``utils.py`` is trimmed to the one helper
the harness uses, and ``patch.py`` gets the location of the integration's patch module and
of the test agent as settings instead of dd-trace-py's hard-coded values. They are kept
otherwise verbatim, so ruff leaves them alone (``pyproject.toml``), and a diff against
upstream shows only those changes.

``test_patch_harness.py`` is ours: one ``PatchTestCase.Base`` per installed client.
"""
