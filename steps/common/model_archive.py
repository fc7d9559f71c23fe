"""Unpack the `model.tar.gz` that SageMaker makes from a training job's SM_MODEL_DIR."""

from __future__ import annotations

import os
import tarfile

from .contract import StepError

MODEL_ARCHIVE = "model.tar.gz"


def extract_model_archive(model_dir: str, destination: str) -> str:
    """Extract `<model_dir>/model.tar.gz` into `destination` and return the model.keras path.

    Raises StepError when the archive or the model file inside it is missing, or when the
    archive is unreadable or contains unsafe members such as absolute paths.
    """
    archive_path = os.path.join(model_dir, MODEL_ARCHIVE)
    if not os.path.isfile(archive_path):
        raise StepError(f"model archive {archive_path} not found")
    try:
        with tarfile.open(archive_path) as archive:
            # The "data" filter rejects absolute paths, links out of the folder and devices.
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise StepError(f"failed to extract {archive_path}: {error}") from error
    model_path = os.path.join(destination, "model.keras")
    if not os.path.isfile(model_path):
        raise StepError(f"{archive_path} contains no model.keras at its top level")
    return model_path
