"""Data ingestion: locate or download a MovieLens release, validate it, write typed parquet tables.

Pure library code (no Prefect, no MLflow): the pipeline's tasks call these functions.
"""

from .download import KNOWN_CHECKSUMS, ChecksumMismatchError, DownloadError, download_release
from .ingest import ingest_dataset
from .locate import DatasetNotFoundError, locate_dataset
from .releases import DatasetFormatError, raw_files
from .synth import write_synthetic
from .validate import TooManyRejectsError

__all__ = [
    "KNOWN_CHECKSUMS",
    "ChecksumMismatchError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DownloadError",
    "TooManyRejectsError",
    "download_release",
    "ingest_dataset",
    "locate_dataset",
    "raw_files",
    "write_synthetic",
]
