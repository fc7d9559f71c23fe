"""The embedded AWS: a moto server on 127.0.0.1 serving S3 and the SageMaker API.

moto keeps its state in memory only, so the workspace keeps the durable copy: every S3
object harness writes is mirrored under `<workspace>/s3/<bucket>/<key>`, and every
control-plane call (jobs, model package groups, model packages) is appended to
`<workspace>/control-plane.jsonl`. Starting the server replays both, so a new run sees the
buckets and the registry that earlier runs left.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from harness.local.offline import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, local_environment

logger = logging.getLogger(__name__)

# moto's default account; every ARN the embedded control plane returns carries it.
ACCOUNT_ID = "123456789012"

# Names of files being written into the S3 mirror; an interrupted write leaves one behind.
PARTIAL_PREFIX = ".partial-"

# Transfers to and from the server that run at once. On loopback, a transfer of a small
# file is mostly request latency, so overlapping them is what makes many files fast.
PARALLEL_TRANSFERS = 8

# Files up to this size go in one PutObject request; larger ones use boto3's multipart upload.
SINGLE_REQUEST_BYTES = 16 * 1024 * 1024


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key` into bucket and key (the key may be empty)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


class EmbeddedAWS:
    """A moto server on a free loopback port, with state restored from the workspace."""

    def __init__(self, workspace: Path, region: str) -> None:
        self.workspace = workspace
        self.region = region
        self._server: ThreadedMotoServer | None = None
        self._journal_lock = threading.Lock()
        self.endpoint_url = ""

    # Start and stop.

    def start(self) -> EmbeddedAWS:
        self.workspace.mkdir(parents=True, exist_ok=True)
        # The server logs one line per request through werkzeug: keep them out of the console.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # moto's backends are process-wide: clear what an earlier server in this process left.
        self._post_moto_api("/moto-api/reset")
        self.s3 = self.client("s3")
        self.sagemaker = self.client("sagemaker")
        self._restore()
        logger.debug("embedded AWS listening on %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> EmbeddedAWS:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """Return the variables that point a process's AWS clients at this server."""
        return local_environment(self.endpoint_url, self.region, self.workspace)

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
            config=botocore.config.Config(
                retries={"max_attempts": 2}, max_pool_connections=PARALLEL_TRANSFERS * 2
            ),
        )

    def _post_moto_api(self, path: str) -> None:
        import urllib.request

        request = urllib.request.Request(self.endpoint_url + path, method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    # S3, mirrored in the workspace.

    def _mirror_path(self, bucket: str, key: str) -> Path:
        return self.workspace / "s3" / bucket / key

    def ensure_bucket(self, bucket: str) -> None:
        existing = {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}
        if bucket in existing:
            return
        if self.region == "us-east-1":
            self.s3.create_bucket(Bucket=bucket)
        else:
            self.s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        (self.workspace / "s3" / bucket).mkdir(parents=True, exist_ok=True)

    def put_file(self, local: Path, uri: str) -> None:
        """Upload one file, writing the workspace copy first (atomically) and then S3."""
        bucket, key = split_s3_uri(uri)
        mirror = self._mirror_path(bucket, key)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        if local.resolve() != mirror.resolve():
            with tempfile.NamedTemporaryFile(
                dir=mirror.parent, prefix=PARTIAL_PREFIX, delete=False
            ) as tmp:
                with open(local, "rb") as source:
                    shutil.copyfileobj(source, tmp)
            os.replace(tmp.name, mirror)
        self._upload(mirror, bucket, key)

    def _upload(self, path: Path, bucket: str, key: str) -> None:
        if path.stat().st_size <= SINGLE_REQUEST_BYTES:
            with open(path, "rb") as body:
                self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        else:
            self.s3.upload_file(str(path), bucket, key)

    def put_bytes(self, data: bytes, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        mirror = self._mirror_path(bucket, key)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=mirror.parent, prefix=PARTIAL_PREFIX, delete=False
        ) as tmp:
            tmp.write(data)
        os.replace(tmp.name, mirror)
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def put_tree(self, folder: Path, uri: str) -> list[str]:
        """Upload every file under `folder` below the prefix `uri`; return the keys written."""
        prefix = uri.rstrip("/")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        written = [f"{prefix}/{path.relative_to(folder).as_posix()}" for path in files]
        self.put_files(zip(files, written, strict=True))
        return written

    def put_files(self, uploads: Iterable[tuple[Path, str]]) -> None:
        """Upload each (local file, S3 URI) as `put_file` does, several at a time."""
        _in_parallel(self.put_file, uploads)

    def list_objects(self, uri: str) -> list[tuple[str, int]]:
        """Return (key, size) of every object below the prefix `uri`, sorted by key."""
        return [(key, size) for key, size, _ in self.list_object_entries(uri)]

    def list_object_entries(self, uri: str) -> list[tuple[str, int, str]]:
        """Return (key, size, ETag) of every object below the prefix `uri`, sorted by key."""
        bucket, prefix = split_s3_uri(uri)
        paginator = self.s3.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append((item["Key"], item["Size"], item["ETag"].strip('"')))
        return sorted(found)

    def download(self, bucket: str, key: str, local: Path, etag: str = "") -> None:
        """Download one object to `local`, which appears only once it is complete.

        With the object's `etag` from a listing, the workspace copy replaces the GetObject
        request when its MD5 digest equals that ETag. A single-part upload's ETag is the MD5
        digest of its bytes, so the copied bytes are the ones S3 contains.
        """
        local.parent.mkdir(parents=True, exist_ok=True)
        mirror = self._mirror_path(bucket, key)
        with tempfile.NamedTemporaryFile(
            dir=local.parent, prefix=PARTIAL_PREFIX, delete=False
        ) as tmp:
            try:
                if not (etag and _copy_if_digest_matches(mirror, tmp, etag)):
                    tmp.seek(0)
                    tmp.truncate()
                    body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
                    with contextlib.closing(body):
                        shutil.copyfileobj(body, tmp, length=1024 * 1024)
            except BaseException:
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, local)

    def download_all(self, items: Iterable[tuple[str, str, Path, str]]) -> None:
        """Download each (bucket, key, local path, ETag or ""), several at a time."""
        _in_parallel(self.download, items)

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    # The control plane, journaled.

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """Call one SageMaker API operation and journal it so that a restart replays it."""
        response = getattr(self.sagemaker, _snake_case(operation))(**request)
        created = datetime.datetime.now(datetime.UTC).isoformat()
        self._set_creation_time(operation, request, response, created)
        self._journal({"call": operation, "request": request, "created": created})
        return response

    def _set_creation_time(
        self, operation: str, request: dict[str, Any], response: dict[str, Any], created: str
    ) -> None:
        """Give a created record the time of the original call, also when it is replayed."""
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[ACCOUNT_ID][self.region]
        records = {
            "CreateModelPackage": lambda: backend.model_packages[response["ModelPackageArn"]],
            "CreateModelPackageGroup": lambda: backend.model_package_groups[
                request["ModelPackageGroupName"]
            ],
            "CreateTrainingJob": lambda: backend.training_jobs[request["TrainingJobName"]],
            "CreateProcessingJob": lambda: backend.processing_jobs[request["ProcessingJobName"]],
            "CreateHyperParameterTuningJob": lambda: backend.hyper_parameter_tuning_jobs[
                request["HyperParameterTuningJobName"]
            ],
        }
        if operation in records:
            records[operation]().creation_time = datetime.datetime.fromisoformat(created)

    def patch_job(self, kind: str, name: str, **fields: Any) -> None:
        """Set fields on a job record that moto cannot set itself (status, failure reason).

        moto reports every training and processing job as Completed the moment it is
        created and runs nothing, so the local runner writes the real outcome here.
        """
        self._apply_patch(kind, name, fields)
        self._journal({"patch": kind, "name": name, "fields": fields})

    def _apply_patch(self, kind: str, name: str, fields: dict[str, Any]) -> None:
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[ACCOUNT_ID][self.region]
        jobs = {
            "training": backend.training_jobs,
            "processing": backend.processing_jobs,
            "tuning": backend.hyper_parameter_tuning_jobs,
        }[kind]
        job = jobs[name]
        for attribute, value in fields.items():
            setattr(job, attribute, _decode_times(attribute, value))

    def _journal(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=str, sort_keys=True)
        with self._journal_lock, open(self.workspace / "control-plane.jsonl", "a") as journal:
            journal.write(line + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def _restore(self) -> None:
        restored_objects = 0
        s3_root = self.workspace / "s3"
        if s3_root.is_dir():
            for bucket_dir in sorted(p for p in s3_root.iterdir() if p.is_dir()):
                self.ensure_bucket(bucket_dir.name)
                uploads = [
                    (path, bucket_dir.name, path.relative_to(bucket_dir).as_posix())
                    for path in _files_below(bucket_dir)
                ]
                _in_parallel(self._upload, uploads)
                restored_objects += len(uploads)

        replayed = 0
        journal = self.workspace / "control-plane.jsonl"
        if journal.exists():
            for number, line in enumerate(journal.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    # A crash mid-write can leave a torn last line: everything before it is valid.
                    logger.warning("skipped unreadable line %d of %s", number, journal)
                    continue
                if "call" in entry:
                    operation, request = entry["call"], entry["request"]
                    response = getattr(self.sagemaker, _snake_case(operation))(**request)
                    if "created" in entry:
                        self._set_creation_time(operation, request, response, entry["created"])
                else:
                    self._apply_patch(entry["patch"], entry["name"], entry["fields"])
                replayed += 1
        if restored_objects or replayed:
            logger.info(
                "restored %d S3 objects and %d control-plane records from %s",
                restored_objects,
                replayed,
                self.workspace,
            )


def journal_contains(workspace: Path, operation: str, request_digest: str) -> bool:
    """Return whether the control-plane journal records `operation` with that request."""
    from harness.local.cache import canonical_digest

    journal = workspace / "control-plane.jsonl"
    if not request_digest or not journal.exists():
        return False
    for line in journal.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("call") == operation and canonical_digest(entry["request"]) == request_digest:
            return True
    return False


def _copy_if_digest_matches(source: Path, target: Any, etag: str) -> bool:
    """Copy `source` into the open file `target` when its MD5 digest is `etag`; else copy
    nothing and return False. A multipart ETag (with a "-") never matches."""
    if "-" in etag:
        return False
    try:
        with open(source, "rb") as file:
            digest = hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False))
            if digest.hexdigest() != etag:
                return False
            file.seek(0)
            shutil.copyfileobj(file, target, length=1024 * 1024)
    except OSError:
        return False
    return True


def _in_parallel(function: Callable[..., None], calls: Iterable[tuple[Any, ...]]) -> None:
    """Call `function(*arguments)` for each tuple, several at a time; re-raise the first error."""
    calls = list(calls)
    if len(calls) <= 1:
        for arguments in calls:
            function(*arguments)
        return
    with ThreadPoolExecutor(max_workers=PARALLEL_TRANSFERS) as pool:
        futures = [pool.submit(function, *arguments) for arguments in calls]
        for future in futures:
            future.result()


def _files_below(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        # Temporary files of an interrupted upload are never restored.
        if path.is_file() and not path.name.startswith(PARTIAL_PREFIX):
            yield path


def _snake_case(operation: str) -> str:
    out = []
    for index, char in enumerate(operation):
        if char.isupper() and index:
            out.append("_")
        out.append(char.lower())
    return "".join(out)


def _decode_times(attribute: str, value: Any) -> Any:
    if attribute.endswith("_time") and isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return value
