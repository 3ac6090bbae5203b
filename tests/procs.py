"""Helpers for tests that start processes."""
import fcntl
import json
import os
import socket
import tempfile
import time

_RECORD = os.path.join(tempfile.gettempdir(), "pe_dense_test_ports.json")
_HOLD_S = 1800  # a port handed out is not handed out again for this long, to any process of any suite here


def free_port() -> str:
    """A TCP port free on this machine now, for a launcher's rendezvous, and never one that another test process
    (the other xdist worker, a suite beside this one) was handed in the last half hour: the kernel's pick is taken
    under a lock on a shared record of the ports handed out, so two workers asking at once cannot get the same port
    between its release here and its bind by the launcher."""
    with open(_RECORD + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            given = json.load(open(_RECORD)) if os.path.exists(_RECORD) else {}
        except ValueError:
            given = {}
        now = time.time()
        given = {p: t for p, t in given.items() if now - t < _HOLD_S}
        for _ in range(100):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = str(s.getsockname()[1])
            if port not in given:
                break
        given[port] = now
        with open(_RECORD + ".tmp", "w") as f:
            json.dump(given, f)
        os.replace(_RECORD + ".tmp", _RECORD)
        return port
