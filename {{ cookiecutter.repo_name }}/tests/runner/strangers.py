"""Clients a run did not make, as another local user would try them.

Run as ``python -m tests.runner.strangers <tls://address>`` from the project
root, in a process of its own: it prints, as JSON, whether each one connected to
the scheduler at that address. The runner's embedded LocalCluster must turn all
of them away.
"""

from __future__ import annotations

import json
import sys

from distributed import Client, Security


def connected(address: str) -> dict[str, bool]:
    """Whether each kind of stranger's client connects to ``address``."""
    strangers = {
        "plaintext": {"address": address.replace("tls://", "tcp://")},
        "tls without credentials": {"address": address},
        "other credentials": {"address": address, "security": Security.temporary()},
    }
    result = {}
    for name, kwargs in strangers.items():
        try:
            Client(**kwargs, timeout=3, set_as_default=False).close()
            result[name] = True
        except (OSError, TimeoutError, TypeError):
            result[name] = False
    return result


if __name__ == "__main__":
    print(json.dumps(connected(sys.argv[1])))
