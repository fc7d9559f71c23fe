"""Read the Parquet files that prepare writes (qid, doc, label, features) with pyarrow."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .contract import StepError

COLUMNS = ("qid", "doc", "label", "features")


def list_parquet_files(folder: str) -> list[str]:
    """Return the `.parquet` files under `folder`, recursively, sorted by relative path.

    Other files, such as Spark's `_SUCCESS` marker and `.crc` checksums, are skipped.
    """
    if not os.path.isdir(folder):
        raise StepError(f"input folder {folder} not found")
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths.extend(
            os.path.join(root, name)
            for name in files
            if name.endswith(".parquet") and not name.startswith((".", "_"))
        )
    return sorted(paths, key=lambda path: os.path.relpath(path, folder))


def read_table(paths: list[str]) -> pa.Table:
    """Read and concatenate Parquet files. Raises StepError when a column is missing."""
    tables = []
    for path in paths:
        table = pq.read_table(path)
        missing = [name for name in COLUMNS if name not in table.column_names]
        if missing:
            raise StepError(f"{path} is missing the column(s) {', '.join(missing)}")
        tables.append(table)
    if not tables:
        raise StepError("no Parquet files to read")
    return pa.concat_tables(tables, promote_options="permissive")


def features_matrix(table: pa.Table, num_features: int | None = None) -> np.ndarray:
    """Return the `features` column as a float64 array [rows, features].

    Raises StepError when rows have different lengths, or a length other than
    `num_features` when it is given.
    """
    column = table.column("features").combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    expected = num_features
    if expected is None:
        expected = int(lengths[0]) if len(lengths) else 0
    if len(lengths) and (lengths.min() != expected or lengths.max() != expected):
        raise StepError(
            f"features arrays must all have {expected} values, found lengths "
            f"{int(lengths.min())} to {int(lengths.max())}"
        )
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
    return values.reshape(len(lengths), expected)
