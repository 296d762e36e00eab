"""The TFDS path (`--data tfds:ag_news_subset:DATA_DIR`) on a TFDS directory built here.

TFDS's own ag_news_subset builder prepares the directory; only its download step is pointed
at local copies of the canonical CSV files, since this machine has no internet.
"""

import pytest
import tensorflow_datasets as tfds

from components import rows
from pipeline.pipeline import resolve_data_source
from tests.helpers.data import read_examples, run_example_gen, sample_lines


@pytest.fixture(scope="module")
def canonical_rows():
    return {"train": sample_lines(120)[:100], "test": sample_lines(120)[100:]}


@pytest.fixture(scope="module")
def tfds_data_dir(tmp_path_factory, canonical_rows):
    root = tmp_path_factory.mktemp("tfds")
    extracted = root / "downloads" / "ag_news_csv"
    extracted.mkdir(parents=True)
    for split, lines in canonical_rows.items():
        (extracted / f"{split}.csv").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            tfds.download.DownloadManager,
            "download_and_extract",
            lambda self, urls: {"ag_news_csv": str(root / "downloads")},
        )
        tfds.builder("ag_news_subset", data_dir=str(root / "prepared")).download_and_prepare()
    return root / "prepared"


def test_a_prepared_tfds_directory_is_read_without_download(tfds_data_dir):
    source = resolve_data_source(f"tfds:ag_news_subset:{tfds_data_dir}")
    assert source.kind == rows.SOURCE_TFDS and source.splits == ("train", "test")
    assert source.input_base.startswith(str(tfds_data_dir))


def _serialized(examples, split):
    return sorted(e.SerializeToString(deterministic=True) for e in read_examples(examples, split))


def test_csv_and_tfds_give_the_same_examples_and_splits(tmp_path, tfds_data_dir, canonical_rows):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for split, lines in canonical_rows.items():
        (csv_dir / f"{split}.csv").write_bytes(b"\n".join(lines) + b"\n")
    settings = rows.IngestSettings(max_bad_fraction=0.0)
    from_csv, csv_error = run_example_gen(
        tmp_path / "from_csv",
        settings,
        str(csv_dir),
        {"train": "train*.csv*", "test": "test*.csv*"},
    )
    tfds_source = resolve_data_source(f"tfds:ag_news_subset:{tfds_data_dir}")
    from_tfds, tfds_error = run_example_gen(
        tmp_path / "from_tfds",
        rows.IngestSettings(max_bad_fraction=0.0, source=rows.SOURCE_TFDS),
        tfds_source.input_base,
        {s.name: s.pattern for s in tfds_source.input_config.splits},
    )
    assert csv_error is None and tfds_error is None
    for split in ("train", "eval", "holdout", "test"):
        assert _serialized(from_csv, split) == _serialized(from_tfds, split)
    assert sum(len(_serialized(from_csv, split)) for split in ("train", "eval", "holdout")) == 100
    assert len(_serialized(from_tfds, "test")) == 20


def test_with_test_split_given_nothing_is_downloaded_or_listed(tmp_path, monkeypatch):
    """How the Airflow DAG (built at every parse) and `agnews compile` read a TFDS source."""
    monkeypatch.setattr(
        tfds.core.DatasetBuilder,
        "download_and_prepare",
        lambda *a, **k: pytest.fail("downloaded at build time"),
    )
    source = resolve_data_source(f"tfds:ag_news_subset:{tmp_path / 'none'}", test_split=True)
    assert source.splits == ("train", "test") and not (tmp_path / "none").exists()
