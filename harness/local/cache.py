"""The step cache: reuse a job's outputs when nothing that made them has changed.

A job's cache key hashes the content of its code (the step's folder and every local module
it imports), its resolved configuration, the digests of its inputs and the harness version.
Job names, run ids and timestamps never enter it. An entry lists the digest of every file
the job wrote. A hit is served only after each file in the workspace's S3 copy is found
and matches its digest, so a deleted or corrupted artifact is recomputed, never served.

Entries are written after the job's outputs are stored, by an atomic rename, so an
interrupted job leaves no entry that looks valid.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__

logger = logging.getLogger(__name__)

# Read in 1 MiB blocks when hashing artifacts.
_BLOCK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_digest(value: Any) -> str:
    """Hash a JSON-serialisable value independently of dict order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(
    step: str, code_digest: str, configuration: dict[str, Any], input_digests: dict[str, str]
) -> str:
    return canonical_digest(
        {
            "harness": __version__,
            "step": step,
            "code": code_digest,
            "configuration": configuration,
            "inputs": input_digests,
        }
    )


@dataclass
class CacheEntry:
    """A finished job's outputs and the digests of every file they contain."""

    key: str
    step: str
    job_name: str
    run_id: str
    outputs: dict[str, str]
    # Output name -> {path relative to the output's URI: SHA-256}.
    manifest: dict[str, dict[str, str]]
    metrics: dict[str, list[float]] = field(default_factory=dict)
    detail: str = ""
    duration: float = 0.0
    created: str = ""
    # Step-specific facts, such as the model package a register entry created.
    extra: dict[str, Any] = field(default_factory=dict)

    def output_digest(self, name: str) -> str:
        return canonical_digest(self.manifest[name])


class StepCache:
    """Cache entries under `<workspace>/cache/<step>/<key>.json`."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.root = workspace / "cache"

    def mirror_path(self, uri: str) -> Path:
        """Return the workspace copy of an S3 object or prefix."""
        return self.workspace / "s3" / uri.removeprefix("s3://")

    def manifest(self, uri: str) -> dict[str, str]:
        """Return {relative path: SHA-256} of the object or every object under the prefix."""
        local = self.mirror_path(uri)
        if local.is_file():
            return {local.name: file_digest(local)}
        if not local.is_dir():
            return {}
        return {
            path.relative_to(local).as_posix(): file_digest(path)
            for path in sorted(local.rglob("*"))
            if path.is_file() and not path.name.startswith(".partial-")
        }

    def _path(self, step: str, key: str) -> Path:
        return self.root / step / f"{key}.json"

    def lookup(self, step: str, key: str) -> CacheEntry | None:
        """Return the entry for `key` when every file it lists is present and intact."""
        path = self._path(step, key)
        if not path.exists():
            return None
        try:
            entry = CacheEntry(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as error:
            logger.warning("%s: unreadable cache entry %s (%s); recomputing", step, path, error)
            path.unlink(missing_ok=True)
            return None
        for name, uri in entry.outputs.items():
            expected = entry.manifest.get(name)
            if not expected or self.manifest(uri) != expected:
                logger.warning(
                    "%s: cached output %s (%s) is missing or changed; recomputing", step, name, uri
                )
                path.unlink(missing_ok=True)
                return None
        return entry

    def store(self, entry: CacheEntry) -> CacheEntry:
        entry.created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        path = self._path(entry.step, entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(asdict(entry), indent=2, sort_keys=True))
        os.replace(partial, path)
        return entry

    def entry_for(
        self,
        step: str,
        key: str,
        job_name: str,
        run_id: str,
        outputs: dict[str, str],
        **extra: Any,
    ) -> CacheEntry:
        """Build an entry for outputs that are already in the workspace copy of S3."""
        manifest = {name: self.manifest(uri) for name, uri in outputs.items()}
        return CacheEntry(key, step, job_name, run_id, dict(outputs), manifest, **extra)
