from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local.embedded import EmbeddedAWS

BUCKET = "contract-tests"


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[EmbeddedAWS]:
    """A real moto server on 127.0.0.1 with a workspace in tmp_path."""
    with EmbeddedAWS(tmp_path / "workspace", "us-east-1") as server:
        server.ensure_bucket(BUCKET)
        yield server


def upload_source(aws: EmbeddedAWS, files: dict[str, str], uri: str) -> None:
    """Upload a sourcedir.tar.gz holding `files` (name -> text)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    aws.put_bytes(buffer.getvalue(), uri)


def collect_lines() -> tuple[list[tuple[str, str]], object]:
    lines: list[tuple[str, str]] = []

    def sink(host: str, line: str) -> None:
        lines.append((host, line))

    return lines, sink
