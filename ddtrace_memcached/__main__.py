"""``python -m ddtrace_memcached [--json] [--import-clients]``: the integration's status report."""

import sys

from .status import main

sys.exit(main())
