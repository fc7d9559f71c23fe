"""A socket guard loaded into every Python process of a guarded test run.

Python imports `sitecustomize` at start-up from any folder on PYTHONPATH, so a test that
puts this folder there guards the harness process's children (jobs, the toolkit, Spark's
Python workers) as well. `install()` guards the test's own process. Each connection or name
lookup for a host other than loopback is recorded in the log file and then fails, before
anything is sent.
"""

import os
import socket

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost", socket.gethostname()}
_ORIGINAL = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)


def is_loopback(host):
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host == "0.0.0.0"


def install(log_path):
    """Patch this process's socket module; return a function that removes the patch."""
    original_getaddrinfo, original_connect, original_connect_ex = _ORIGINAL
    before = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)

    def record(kind, host):
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()} {kind} {host}\n")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not is_loopback(host):
            record("getaddrinfo", host)
            raise socket.gaierror(f"socket guard: lookup of {host!r} blocked in a local run")
        return original_getaddrinfo(host, *args, **kwargs)

    def address_host(address):
        # AF_UNIX addresses are paths on this machine.
        return address[0] if isinstance(address, tuple) and address else None

    def guarded_connect(self, address):
        host = address_host(address)
        if not is_loopback(host):
            record("connect", host)
            raise ConnectionRefusedError(f"socket guard: connection to {host!r} blocked")
        return original_connect(self, address)

    def guarded_connect_ex(self, address):
        host = address_host(address)
        if not is_loopback(host):
            record("connect", host)
            return 111
        return original_connect_ex(self, address)

    socket.getaddrinfo = guarded_getaddrinfo
    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    with open(str(log_path) + ".active", "a") as active:
        active.write(f"{os.getpid()}\n")

    def uninstall():
        socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = before

    return uninstall


if os.environ.get("HARNESS_GUARD_LOG"):
    install(os.environ["HARNESS_GUARD_LOG"])
