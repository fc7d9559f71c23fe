"""The socket guard itself: it must block and record, or the no-network test proves nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.guard import sitecustomize as guard

GUARD_DIR = Path(guard.__file__).parent


def test_loopback_names_pass() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.53", None):
        assert guard.is_loopback(host)


def test_other_hosts_are_not_loopback() -> None:
    for host in ("s3.amazonaws.com", "169.254.169.254", "10.0.0.1", "example.invalid"):
        assert not guard.is_loopback(host)


def test_blocked_lookup_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real resolver is replaced first, so a broken guard still sends nothing.
    reached: list[str] = []
    monkeypatch.setattr(
        guard, "_ORIGINAL", (lambda host, *a, **k: reached.append(host), *guard._ORIGINAL[1:])
    )
    log = tmp_path / "guard.log"
    uninstall = guard.install(log)
    try:
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("sts.amazonaws.com", 443)
        socket.getaddrinfo("localhost", 80)
    finally:
        uninstall()
    assert socket.getaddrinfo.__name__ == "getaddrinfo"
    assert reached == ["localhost"]
    assert log.read_text().split()[1:] == ["getaddrinfo", "sts.amazonaws.com"]


def test_guard_loads_in_child_processes(tmp_path: Path) -> None:
    log = tmp_path / "guard.log"
    code = "import socket; print(socket.getaddrinfo.__name__)"
    output = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(GUARD_DIR), "HARNESS_GUARD_LOG": str(log), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert output == "guarded_getaddrinfo"
    assert Path(str(log) + ".active").read_text().strip()
