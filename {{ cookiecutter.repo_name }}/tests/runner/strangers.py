"""Clients a run did not make, as another local user would try them.

Run as ``python -m tests.runner.strangers <tls://address>`` from the project
root: it prints, as JSON, whether each kind of stranger's client connected to the
scheduler at that address. Each tries in a process of its own (after a failed
``Client``, some distributed versions cannot start another in that process).
The runner's embedded LocalCluster must turn all of them away.
"""

from __future__ import annotations

import json
import subprocess
import sys

STRANGERS = ("plaintext", "tls without credentials", "other credentials")


def connects(address: str, stranger: str) -> bool:
    """Whether ``stranger``'s client connects to the scheduler at ``address``."""
    from distributed import Client, Security

    kwargs = {
        "plaintext": {"address": address.replace("tls://", "tcp://")},
        "tls without credentials": {"address": address},
        "other credentials": {"address": address, "security": Security.temporary()},
    }[stranger]
    try:
        Client(**kwargs, timeout=3, set_as_default=False).close()
    except (OSError, TimeoutError, TypeError):
        return False
    return True


def connected(address: str) -> dict[str, bool]:
    """``connects`` for every stranger, each in a new process."""
    result = {}
    for stranger in STRANGERS:
        answer = subprocess.run(  # noqa: S603 - this very module
            [sys.executable, "-m", __spec__.name, address, stranger],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result[stranger] = json.loads(answer.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    if len(sys.argv) > 2:
        print(json.dumps(connects(sys.argv[1], sys.argv[2])))
    else:
        print(json.dumps(connected(sys.argv[1])))
