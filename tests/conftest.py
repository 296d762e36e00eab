"""Shared fixtures. Importing `components` first selects Keras 2 before TensorFlow loads."""
import gzip
from pathlib import Path

import pytest

import components  # noqa: F401
from pipeline.config import SAMPLE_DATA_DIR


def sample_lines(count: int) -> list[bytes]:
    """The first `count` lines of the embedded AG News sample."""
    with gzip.open(SAMPLE_DATA_DIR / "train.csv.gz", "rb") as handle:
        return handle.read().splitlines()[:count]


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A data directory with 300 canonical training rows."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(b"\n".join(sample_lines(300)) + b"\n")
    return data
