"""Helpers for tests that start processes."""
import socket


def free_port() -> str:
    """A TCP port free on this machine now (for a launcher's rendezvous: two suites side by side must not share one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])
