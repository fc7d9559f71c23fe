"""Transfers between the workspace and the embedded S3: parallel uploads and downloads, and
the workspace copy that replaces a GetObject only when its digest matches S3's ETag."""

from __future__ import annotations

from pathlib import Path

from harness.local.embedded import EmbeddedAWS

from .conftest import BUCKET


def write_tree(folder: Path, count: int) -> dict[str, bytes]:
    contents = {}
    for index in range(count):
        relative = f"part-{index // 5}/file-{index}.txt"
        data = f"file {index}\n".encode() * (index + 1)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        contents[relative] = data
    return contents


def count_get_object_calls(aws: EmbeddedAWS) -> list[str]:
    calls: list[str] = []
    aws.s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: calls.append(params["Key"])
    )
    return calls


def test_put_tree_and_download_all_round_trip(aws: EmbeddedAWS, tmp_path: Path) -> None:
    contents = write_tree(tmp_path / "source", 23)
    get_calls = count_get_object_calls(aws)
    written = aws.put_tree(tmp_path / "source", f"s3://{BUCKET}/tree/")

    assert sorted(written) == sorted(f"s3://{BUCKET}/tree/{name}" for name in contents)
    entries = aws.list_object_entries(f"s3://{BUCKET}/tree/")
    assert [key for key, _, _ in entries] == sorted(f"tree/{name}" for name in contents)
    aws.download_all((BUCKET, key, tmp_path / "copy" / key, etag) for key, _, etag in entries)
    for name, data in contents.items():
        assert (tmp_path / "copy" / "tree" / name).read_bytes() == data
    assert not list((tmp_path / "copy").rglob(".partial-*"))
    # Every workspace copy matched its ETag, so no object was fetched again.
    assert get_calls == []


def test_download_ignores_changed_workspace_copy(aws: EmbeddedAWS, tmp_path: Path) -> None:
    aws.put_bytes(b"what S3 holds", f"s3://{BUCKET}/object.txt")
    mirror = aws.workspace / "s3" / BUCKET / "object.txt"
    assert mirror.read_bytes() == b"what S3 holds"
    [(_, _, etag)] = aws.list_object_entries(f"s3://{BUCKET}/object.txt")

    get_calls = count_get_object_calls(aws)
    mirror.write_bytes(b"edited in the workspace")
    aws.download(BUCKET, "object.txt", tmp_path / "fetched.txt", etag)
    assert (tmp_path / "fetched.txt").read_bytes() == b"what S3 holds"
    assert get_calls == ["object.txt"]

    mirror.unlink()
    aws.download(BUCKET, "object.txt", tmp_path / "fetched-again.txt", etag)
    assert (tmp_path / "fetched-again.txt").read_bytes() == b"what S3 holds"


def test_download_without_workspace_copy(aws: EmbeddedAWS, tmp_path: Path) -> None:
    # A client other than harness wrote the object, so the workspace has no copy of it.
    aws.s3.put_object(Bucket=BUCKET, Key="outside.txt", Body=b"written by another client")
    [(_, _, etag)] = aws.list_object_entries(f"s3://{BUCKET}/outside.txt")
    aws.download(BUCKET, "outside.txt", tmp_path / "outside.txt", etag)
    assert (tmp_path / "outside.txt").read_bytes() == b"written by another client"
