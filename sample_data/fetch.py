"""Fetch the MSLR-WEB10K sample that the rankeval 0.8.2 source archive ships for its tests.

Downloads the archive with pip (it is never installed, because installing it compiles
C++), checks its SHA-256, and extracts two LETOR files into sample_data/mslr/:
msn1.fold1.train.5k.txt and msn1.fold1.test.5k.txt. The SHA-256 of each file is
recorded in sample_data/SHA256SUMS after the first fetch and checked on every later run.
When the files are present with the recorded checksums, the script does nothing.

Standard library only: run it with the interpreter whose pip should download.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "rankeval"
VERSION = "0.8.2"
ARCHIVE_SHA256 = "c7d71602ab7fe0a0281976c1f0e883cb16431f72e4e946e5fd83790449bb21a9"
MEMBER_DIR = "rankeval/test/data"
FILE_NAMES = ("msn1.fold1.train.5k.txt", "msn1.fold1.test.5k.txt")

HERE = os.path.dirname(os.path.abspath(__file__))


class FetchError(Exception):
    """A download, checksum or extraction failure, with what to do next."""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(path: str) -> dict[str, str]:
    """Parse a `sha256sum`-style file into {file name: hex digest}."""
    checksums = {}
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or len(parts[0]) != 64:
                raise FetchError(f"{path} line {line_number} is not '<sha256>  <file name>'")
            checksums[parts[1].lstrip("*")] = parts[0].lower()
    return checksums


def write_checksums(path: str, checksums: dict[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for name in sorted(checksums):
            file.write(f"{checksums[name]}  {name}\n")


def files_are_current(data_dir: str, checksums_path: str) -> bool:
    """Return whether every sample file exists with the checksum recorded for it."""
    if not os.path.isfile(checksums_path):
        return False
    checksums = read_checksums(checksums_path)
    for name in FILE_NAMES:
        path = os.path.join(data_dir, name)
        if name not in checksums or not os.path.isfile(path) or sha256_of(path) != checksums[name]:
            return False
    return True


def download_archive(folder: str) -> str:
    """Download the source archive into `folder` with pip and return its path.

    pip checks the pinned hash before it reads the archive (--require-hashes), and
    --no-build-isolation stops it from building rankeval's build dependencies from
    source only to read the archive's metadata.
    """
    requirements = os.path.join(folder, "requirements.txt")
    with open(requirements, "w", encoding="utf-8") as file:
        file.write(f"{PACKAGE}=={VERSION} --hash=sha256:{ARCHIVE_SHA256}\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        "--require-hashes",
        "-r",
        requirements,
        "-d",
        folder,
    ]
    print("running:", " ".join(command), flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise FetchError(
            f"pip download of {PACKAGE}=={VERSION} failed with exit status {result.returncode}"
        )
    archives = [
        name
        for name in os.listdir(folder)
        if name.startswith(f"{PACKAGE}-{VERSION}") and name.endswith((".tar.gz", ".zip"))
    ]
    if len(archives) != 1:
        raise FetchError(
            f"expected one {PACKAGE}-{VERSION} source archive from pip, found {archives}"
        )
    return os.path.join(folder, archives[0])


def verify_archive(path: str, expected_sha256: str = ARCHIVE_SHA256) -> None:
    """Raise FetchError and delete the file when its SHA-256 differs from the expected one."""
    actual = sha256_of(path)
    if actual != expected_sha256:
        os.remove(path)
        raise FetchError(
            f"{os.path.basename(path)} has SHA-256 {actual}, expected {expected_sha256}; "
            f"the file was deleted. Check the package index or the pinned version."
        )


def extract_files(archive_path: str, destination: str) -> None:
    """Extract the sample files from the archive into `destination`, flattening their paths."""
    members_to_extract = {f"{MEMBER_DIR}/{name}": name for name in FILE_NAMES}
    found = set()
    with tarfile.open(archive_path) as archive:
        for member in archive.getmembers():
            # Members sit under a top-level folder such as rankeval-0.8.2/.
            relative = member.name.split("/", 1)[-1]
            if relative not in members_to_extract or not member.isfile():
                continue
            source = archive.extractfile(member)
            with (
                source,
                open(os.path.join(destination, members_to_extract[relative]), "wb") as target,
            ):
                shutil.copyfileobj(source, target)
            found.add(members_to_extract[relative])
    missing = sorted(set(FILE_NAMES) - found)
    if missing:
        raise FetchError(
            f"{os.path.basename(archive_path)} is missing {', '.join(missing)} under {MEMBER_DIR}"
        )


def install_files(staging: str, data_dir: str) -> None:
    """Replace `data_dir` with the staging folder by renaming, so readers see old or new files."""
    previous = None
    if os.path.exists(data_dir):
        previous = tempfile.mkdtemp(prefix=".mslr-old-", dir=os.path.dirname(data_dir))
        os.rmdir(previous)
        os.rename(data_dir, previous)
    os.rename(staging, data_dir)
    if previous:
        shutil.rmtree(previous)


def fetch(data_dir: str, checksums_path: str) -> None:
    if files_are_current(data_dir, checksums_path):
        print(f"{data_dir} is up to date; nothing to fetch")
        return
    recorded = read_checksums(checksums_path) if os.path.isfile(checksums_path) else None
    parent = os.path.dirname(os.path.abspath(data_dir))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rankeval-download-") as download_dir:
        archive_path = download_archive(download_dir)
        verify_archive(archive_path)
        # The staging folder sits next to data_dir so that the final rename stays on one file system.
        staging = tempfile.mkdtemp(prefix=".mslr-new-", dir=parent)
        os.chmod(staging, 0o755)  # mkdtemp creates the folder readable by its owner only
        try:
            extract_files(archive_path, staging)
            checksums = {name: sha256_of(os.path.join(staging, name)) for name in FILE_NAMES}
            if recorded is not None:
                for name in FILE_NAMES:
                    if recorded.get(name) != checksums[name]:
                        raise FetchError(
                            f"{name} from the verified archive has SHA-256 {checksums[name]}, but "
                            f"{checksums_path} records {recorded.get(name)}; fix or delete {checksums_path}"
                        )
            install_files(staging, data_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if recorded is None:
        write_checksums(checksums_path, checksums)
        print(f"recorded the files' SHA-256 in {checksums_path}")
    print(f"wrote {', '.join(FILE_NAMES)} to {data_dir}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default=os.path.join(HERE, "mslr"),
        help="folder that receives the two LETOR files (default: sample_data/mslr)",
    )
    parser.add_argument(
        "--checksums",
        default=os.path.join(HERE, "SHA256SUMS"),
        help="file with the SHA-256 of each LETOR file (default: sample_data/SHA256SUMS)",
    )
    args = parser.parse_args()
    try:
        fetch(args.data_dir, args.checksums)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
