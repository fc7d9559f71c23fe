"""The sample fetcher's offline parts: checksums, extraction and the up-to-date check."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile

import pytest

from tests.steps.steprunner import REPO


@pytest.fixture(scope="module")
def fetch():
    spec = importlib.util.spec_from_file_location("fetch_sample", REPO / "sample_data" / "fetch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_archive(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_verify_archive_deletes_mismatch(fetch, tmp_path):
    archive = tmp_path / "rankeval-0.8.2.tar.gz"
    archive.write_bytes(b"not the archive")
    with pytest.raises(fetch.FetchError, match="has SHA-256 .* expected c7d71602"):
        fetch.verify_archive(str(archive))
    assert not archive.exists()


def test_verify_archive_accepts_match(fetch, tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"data")
    fetch.verify_archive(str(archive), hashlib.sha256(b"data").hexdigest())
    assert archive.exists()


def test_extract_files_takes_only_sample_files(fetch, tmp_path):
    archive = tmp_path / "rankeval-0.8.2.tar.gz"
    make_archive(
        archive,
        {
            "rankeval-0.8.2/rankeval/test/data/msn1.fold1.train.5k.txt": b"1 qid:1 1:0.5\n",
            "rankeval-0.8.2/rankeval/test/data/msn1.fold1.test.5k.txt": b"0 qid:2 1:0.1\n",
            "rankeval-0.8.2/setup.py": b"print('never extracted')\n",
        },
    )
    destination = tmp_path / "out"
    destination.mkdir()
    fetch.extract_files(str(archive), str(destination))
    assert sorted(path.name for path in destination.iterdir()) == sorted(fetch.FILE_NAMES)
    assert (destination / "msn1.fold1.test.5k.txt").read_bytes() == b"0 qid:2 1:0.1\n"


def test_extract_files_reports_missing_member(fetch, tmp_path):
    archive = tmp_path / "rankeval-0.8.2.tar.gz"
    make_archive(archive, {"rankeval-0.8.2/rankeval/test/data/msn1.fold1.train.5k.txt": b"x"})
    with pytest.raises(fetch.FetchError, match="is missing msn1.fold1.test.5k.txt"):
        fetch.extract_files(str(archive), str(tmp_path))


def test_files_are_current_checks_every_checksum(fetch, tmp_path):
    data_dir = tmp_path / "mslr"
    data_dir.mkdir()
    checksums = {}
    for name in fetch.FILE_NAMES:
        (data_dir / name).write_bytes(name.encode())
        checksums[name] = hashlib.sha256(name.encode()).hexdigest()
    sums = tmp_path / "SHA256SUMS"
    fetch.write_checksums(str(sums), checksums)
    assert fetch.files_are_current(str(data_dir), str(sums))
    (data_dir / fetch.FILE_NAMES[0]).write_bytes(b"changed")
    assert not fetch.files_are_current(str(data_dir), str(sums))
    assert not fetch.files_are_current(str(data_dir), str(tmp_path / "missing"))


def test_recorded_checksums_cover_sample_files(fetch):
    recorded = fetch.read_checksums(str(REPO / "sample_data" / "SHA256SUMS"))
    assert sorted(recorded) == sorted(fetch.FILE_NAMES)
