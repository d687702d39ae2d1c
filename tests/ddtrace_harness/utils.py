# From dd-trace-py (https://github.com/DataDog/dd-trace-py), tests/utils.py,
# commit 0045b3cacdb4285bb56ba30b83bf8c036f746578, trimmed to what tests/contrib/patch.py
# uses: call_program. Its call to tests._ddtest_env_helpers.strip_ddtest_leaked_env (which
# removes what dd-trace-py's own CI runner leaks into subprocesses) is left out.
# Copyright 2016-Present Datadog, Inc. Dual-licensed under Apache-2.0 OR BSD-3-Clause:
# see LICENSE, LICENSE.Apache, LICENSE.BSD3 and NOTICE in this directory.
import os
import subprocess
import sys


def call_program(*args, **kwargs):
    timeout = kwargs.pop("timeout", None)
    if "env" in kwargs:
        # Remove all keys with the value None from env, None is used to unset an environment variable
        env = kwargs.pop("env")
        cleaned_env = {env: val for env, val in env.items() if val is not None}
    else:
        # No explicit env: subprocess would inherit os.environ directly.
        cleaned_env = dict(os.environ)
    kwargs["env"] = cleaned_env
    close_fds = sys.platform != "win32"
    subp = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=close_fds, **kwargs)
    try:
        stdout, stderr = subp.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        subp.terminate()
        stdout, stderr = subp.communicate(timeout=timeout)
    return stdout, stderr, subp.returncode, subp.pid
