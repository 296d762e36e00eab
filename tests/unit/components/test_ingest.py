"""Ingestion: every line becomes an example or a rejected row with its line number and reason."""

import codecs
import collections
import csv
import gzip
import json
import os

import pytest

from components import artifacts, features, ingest, rows
from tests.helpers.data import read_examples, run_example_gen, sample_lines

GOOD = b'"3","Oil prices rise","Crude oil rose #36;2 on Monday."'


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'"3","only two"', rows.WRONG_COLUMN_COUNT),
        (b'"3","a","b","c"', rows.WRONG_COLUMN_COUNT),
        (b"", rows.WRONG_COLUMN_COUNT),
        (b'"3","unterminated, text', rows.UNTERMINATED_QUOTE),
        (b'"3","a"x,"b"', rows.BAD_QUOTING),
        (b'"5","title","text"', rows.LABEL_NOT_1_TO_4),
        (b'"0","title","text"', rows.LABEL_NOT_1_TO_4),
        (b'"World","title","text"', rows.LABEL_NOT_1_TO_4),
        (b'"2","  ",""', rows.EMPTY_TEXT),
        (b'"2","caf\xe9","latin-1 bytes"', rows.INVALID_UTF8),
        (b'"2","' + b"x" * 11 + b'","ok"', rows.FIELD_TOO_LONG),
    ],
)
def test_bad_lines_get_their_reason(line, reason):
    assert rows.parse_line(line, max_field_chars=10) == reason


def test_a_field_of_any_length_over_the_limit_is_field_too_long():
    huge = b'"2","title","' + b"x" * 1_000_000 + b'"'
    assert rows.parse_line(huge) == rows.FIELD_TOO_LONG
    assert rows.parse_line(huge, max_field_chars=2_000_000)[0] == 1


def test_good_line_keeps_text_as_written_and_shifts_label():
    assert rows.parse_line(GOOD) == (2, "Oil prices rise", "Crude oil rose #36;2 on Monday.")
    assert rows.parse_line(b'"1","He said ""no""","a\\nb"') == (0, 'He said "no"', "a\\nb")
    assert rows.parse_line(b'"4","title only",""') == (3, "title only", "")


def _run_example_gen(tmp_path, data_dir, max_bad_fraction):
    return run_example_gen(
        tmp_path / "examples",
        rows.IngestSettings(max_bad_fraction),
        str(data_dir),
        {"train": "train*.csv*", "test": "test*.csv*"},
    )


def _count_examples(examples, split):
    return len(read_examples(examples, split))


def _mixed_data(tmp_path, good_count):
    """train.csv.gz with bad lines at known places, and a clean test.csv."""
    data = tmp_path / "data"
    data.mkdir()
    lines = sample_lines(good_count)
    bad = {
        3: b'"9","bad label","x"',
        10: b'"2","cut short',
        11: b'"1","",""',
        20: b'"1","caf\xe9","x"',
        25: b'"1","a"',
    }
    for number in sorted(bad):
        lines.insert(number - 1, bad[number])
    with gzip.open(data / "train.csv.gz", "wb") as handle:
        handle.write(b"\n".join(lines) + b"\n")
    (data / "test.csv").write_bytes(b"\n".join(sample_lines(40)[-7:]) + b"\n")
    return data, bad, len(lines)


def _rejected_rows(examples):
    with open(
        f"{examples.uri}/{artifacts.REJECTED_FILE_NAME}", newline="", encoding="utf-8"
    ) as handle:
        return sorted(csv.DictReader(handle), key=lambda row: int(row["line_number"]))


def test_every_row_is_an_example_or_a_rejected_row_with_its_line(tmp_path):
    data, bad, total = _mixed_data(tmp_path, good_count=600)
    examples, error = _run_example_gen(tmp_path, data, max_bad_fraction=0.01)
    assert error is None  # 5 bad of 605 rows is below 1%
    rejected = _rejected_rows(examples)
    assert [(r["source_file"], int(r["line_number"]), r["reason"]) for r in rejected] == [
        ("train.csv.gz", 3, rows.LABEL_NOT_1_TO_4),
        ("train.csv.gz", 10, rows.UNTERMINATED_QUOTE),
        ("train.csv.gz", 11, rows.EMPTY_TEXT),
        ("train.csv.gz", 20, rows.INVALID_UTF8),
        ("train.csv.gz", 25, rows.WRONG_COLUMN_COUNT),
    ]
    assert rejected[0]["raw_line"] == bad[3].decode()
    assert rejected[3]["raw_line"] == '"1","caf\\xe9","x"'
    train, evaluation, holdout, test = (
        _count_examples(examples, s) for s in ("train", "eval", "holdout", "test")
    )
    assert train + evaluation + holdout + len(rejected) == total
    assert 0 < evaluation < train and 0 < holdout < train and test == 7
    summary = artifacts.read_summary(examples.uri)
    assert summary[artifacts.ACCEPTED] == total - len(bad) + 7
    assert examples.split_names == '["train", "eval", "holdout", "test"]'


def test_copies_of_a_story_share_a_split_whatever_their_description(tmp_path):
    """Reposts of one headline (case, punctuation and description differ) never straddle the
    train/holdout line; distinct headlines still spread over all three splits."""
    data = tmp_path / "data"
    data.mkdir()
    headlines = [f"Story number {i} breaks" for i in range(60)]
    lines = [f'"2","{title}","First version {i}."'.encode() for i, title in enumerate(headlines)]
    lines += [
        f'"2","{title.upper()}!","Updated: version two of {i}."'.encode()
        for i, title in enumerate(headlines)
    ]
    (data / "train.csv").write_bytes(b"\n".join(lines) + b"\n")
    examples, error = _run_example_gen(tmp_path, data, max_bad_fraction=0.0)
    assert error is None
    split_of = collections.defaultdict(set)
    for split in ("train", "eval", "holdout"):
        for example in read_examples(examples, split):
            split_of[ingest.story_key(example)].add(split)
    assert len(split_of) == len(headlines)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert set().union(*split_of.values()) == {"train", "eval", "holdout"}


def test_too_many_bad_rows_stop_the_run_naming_the_rejected_file(tmp_path):
    data, bad, total = _mixed_data(tmp_path, good_count=100)
    examples, error = _run_example_gen(tmp_path, data, max_bad_fraction=0.01)
    assert error is not None
    message = str(error)
    assert f"5 of {total + 7} input rows" in message and "--max-bad-fraction" in message
    assert f"{examples.uri}/{artifacts.REJECTED_FILE_NAME}" in message
    assert len(_rejected_rows(examples)) == 5  # kept for inspection even though the run stops


def test_examples_carry_the_contract_features(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(GOOD + b"\n")
    examples, error = _run_example_gen(tmp_path, data, max_bad_fraction=0.0)
    assert error is None
    (example,) = read_examples(examples, "train") + read_examples(examples, "eval")
    feature = example.features.feature
    assert feature[features.LABEL_KEY].int64_list.value == [2]
    assert feature[features.TITLE_KEY].bytes_list.value == [b"Oil prices rise"]
    assert feature[features.DESCRIPTION_KEY].bytes_list.value == [
        b"Crude oil rose #36;2 on Monday."
    ]
    with open(f"{examples.uri}/{artifacts.SUMMARY_FILE_NAME}") as handle:
        assert json.load(handle) == {artifacts.ACCEPTED: 1}


def test_unlabelled_lines_and_tf_examples_follow_the_same_rules():
    unlabelled = rows.UNLABELLED_CSV
    assert rows.parse_line(b'"Oil prices rise","Crude rose."', form=unlabelled) == (
        None,
        "Oil prices rise",
        "Crude rose.",
    )
    assert rows.parse_line(GOOD, form=unlabelled) == rows.WRONG_COLUMN_COUNT
    assert rows.parse_line(b'"Oil prices rise","Crude rose."') == rows.WRONG_COLUMN_COUNT
    assert rows.parse_line(b'" ",""', form=unlabelled) == rows.EMPTY_TEXT
    assert rows.parse_line(b'"caf\xe9","x"', form=unlabelled) == rows.INVALID_UTF8
    assert (
        rows.parse_line(b'"' + b"x" * 11 + b'","y"', max_field_chars=10, form=unlabelled)
        == rows.FIELD_TOO_LONG
    )
    example = rows.make_example(None, "Mets win", "", source=("a/b.csv", 7))
    assert rows.example_source(example) == ("a/b.csv", 7)
    assert features.LABEL_KEY not in example.features.feature
    assert rows.parse_example_record(example.SerializeToString()) == (None, "Mets win", "")
    assert rows.parse_example_record(rows.make_example(2, "a", "b").SerializeToString()) == (
        2,
        "a",
        "b",
    )
    assert (
        rows.parse_example_record(rows.make_example(7, "a", "b").SerializeToString())
        == rows.LABEL_NOT_1_TO_4
    )
    assert (
        rows.parse_example_record(rows.make_example(None, "", " ").SerializeToString())
        == rows.EMPTY_TEXT
    )
    for garbage in (b"hello world", b"not a proto", b"\xff\xff"):
        assert rows.parse_example_record(garbage) == rows.NOT_A_TF_EXAMPLE


@pytest.mark.parametrize(
    "lines, form",
    [
        ([GOOD], rows.FileForm(rows.LABELLED_CSV)),
        ([b'"Oil prices rise","Crude rose."', GOOD], rows.FileForm(rows.UNLABELLED_CSV)),
        ([b"title,description", b'"a","b"'], rows.FileForm(rows.UNLABELLED_CSV, header=True)),
        ([b"class,Title,Description", GOOD], rows.FileForm(rows.LABELLED_CSV, header=True)),
        # A damaged first line does not decide: the first line that reads as 2 or 3 fields does.
        ([b'"cut short', b'"a","b","c","d"', b'"a","b"'], rows.FileForm(rows.UNLABELLED_CSV)),
        ([b"", b"just one field"], rows.FileForm(rows.LABELLED_CSV)),
    ],
)
def test_a_files_form_is_told_from_its_first_readable_line(tmp_path, lines, form):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert rows.file_form(str(path)) == form


def test_scoring_examplegen_reads_unlabelled_files_and_keeps_each_rows_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "unlabelled.csv").write_bytes(
        b'title,description\n"Mets win","Big game."\n"only"\n"A","B"\n'
    )
    (data / "labelled.csv").write_bytes(GOOD + b"\n")
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(data / "examples.tfrecord.gz"), "GZIP") as writer:
        writer.write(rows.make_example(None, "From a record", "").SerializeToString())
    assert rows.file_form(str(data / "examples.tfrecord.gz")) == rows.FileForm(rows.TF_EXAMPLES)
    examples, error = run_example_gen(
        tmp_path / "examples",
        rows.IngestSettings(max_bad_fraction=0.5, labelled=False),
        str(data),
        {"score": "*"},
    )
    assert error is None and examples.split_names == '["score"]'
    got = sorted(
        (rows.example_source(e), e.features.feature[features.TITLE_KEY].bytes_list.value[0])
        for e in read_examples(examples, "score")
    )
    assert got == [
        (("examples.tfrecord.gz", 1), b"From a record"),
        (("labelled.csv", 1), b"Oil prices rise"),
        (("unlabelled.csv", 2), b"Mets win"),
        (("unlabelled.csv", 4), b"A"),
    ]
    assert [
        (r["source_file"], r["line_number"], r["reason"]) for r in _rejected_rows(examples)
    ] == [("unlabelled.csv", "3", rows.WRONG_COLUMN_COUNT)]


def _write(path, lines: list[bytes]) -> None:
    """Writes `lines` as a .csv or, by its name, a .csv.gz file."""
    content = b"\n".join(lines) + b"\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(content)
    else:
        path.write_bytes(content)


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
def test_a_byte_order_mark_and_blank_lines_are_not_bad_rows(tmp_path, name):
    """A BOM is not part of row 1; blank lines (CRLF ones too) are counted apart, not rejected and
    not rows, and later rows keep their line numbers."""
    lines = sample_lines(20)
    data = tmp_path / "data"
    data.mkdir()
    _write(
        data / name,
        [
            codecs.BOM_UTF8 + lines[0],
            b"",
            *lines[1:10],
            b"  \t",
            b'"9","bad label","x"',
            *lines[10:],
            b"\r",
            b" ",
        ],
    )
    # 1 bad row of 21 is under 5%; it would not be if the 4 blank lines were bad rows.
    examples, error = _run_example_gen(tmp_path, data, max_bad_fraction=0.05)
    assert error is None
    assert [
        (r["source_file"], int(r["line_number"]), r["reason"]) for r in _rejected_rows(examples)
    ] == [(name, 13, rows.LABEL_NOT_1_TO_4)]
    assert artifacts.read_summary(examples.uri) == {
        artifacts.ACCEPTED: 20,
        rows.LABEL_NOT_1_TO_4: 1,
        artifacts.BLANK_LINE: 4,
    }
    titles = sorted(
        e.features.feature[features.TITLE_KEY].bytes_list.value[0].decode()
        for split in ("train", "eval", "holdout")
        for e in read_examples(examples, split)
    )
    assert titles == sorted(rows.parse_line(line)[1] for line in lines)


@pytest.mark.parametrize("name", ["unlabelled.csv", "unlabelled.csv.gz"])
def test_scoring_reads_a_byte_order_mark_and_blank_lines_the_same_way(tmp_path, name):
    """`agnews score`'s reading path (ParseFiles, WriteRejected, write_summary, check_bad_fraction):
    the column names behind a BOM are still a header, blank lines are not bad rows."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    _write(
        tmp_path / name,
        [
            codecs.BOM_UTF8 + b"title,description",
            b'"Mets win","Big game."',
            b"",
            b'"only"',
            b"   ",
            b'"A","B"',
        ],
    )
    settings = rows.IngestSettings(max_bad_fraction=0.4, labelled=False)
    with beam.Pipeline() as pipeline:
        parsed = pipeline | rows.ParseFiles([str(tmp_path / name)], settings, str(tmp_path))
        assert_that(
            parsed.examples
            | beam.Map(
                lambda e: (
                    rows.example_source(e),
                    e.features.feature[features.TITLE_KEY].bytes_list.value[0],
                )
            ),
            equal_to([((name, 2), b"Mets win"), ((name, 6), b"A")]),
        )
        _ = parsed.rejected | rows.WriteRejected(str(tmp_path / artifacts.REJECTED_FILE_NAME))
        rows.write_summary([parsed.examples], parsed.rejected, str(tmp_path / "rows.json"))
    counts = artifacts.read_json(str(tmp_path / "rows.json"))
    assert counts == {artifacts.ACCEPTED: 2, rows.WRONG_COLUMN_COUNT: 1, artifacts.BLANK_LINE: 2}
    with open(tmp_path / artifacts.REJECTED_FILE_NAME, encoding="utf-8") as handle:
        assert handle.read().splitlines() == [
            rows.REJECTED_HEADER,
            f'{name},4,wrong_column_count,"""only"""',
        ]
    rows.check_bad_fraction(
        counts, settings.max_bad_fraction, "rejected.csv"
    )  # 1 of 3 rows, not 1 of 5


def test_blank_lines_alone_are_no_rows():
    with pytest.raises(rows.IngestError, match="hold no rows"):
        rows.check_bad_fraction({artifacts.BLANK_LINE: 3}, 0.5, "rejected.csv")


def test_only_csv_files_named_like_the_split_are_read(tmp_path):
    for name in (
        "train.csv",
        "train-00001-of-00002.csv",
        "train.csv.bak",
        "train.csv~",
        "train_old.csv",
        "test.csv",
    ):
        (tmp_path / name).write_text("1,t,d\n")
    assert [os.path.basename(p) for p in ingest.data_files(str(tmp_path), "train*", "train")] == [
        "train-00001-of-00002.csv",
        "train.csv",
    ]
    (tmp_path / "span-3").mkdir()
    (tmp_path / "span-3" / "train.csv.gz").write_bytes(gzip.compress(b"1,t,d\n"))
    assert [
        os.path.basename(p) for p in ingest.data_files(str(tmp_path), "span-3/train*", "train")
    ] == ["train.csv.gz"]


def test_both_plain_and_gzipped_files_of_a_split_stop_the_run(tmp_path):
    (tmp_path / "train.csv").write_text("1,t,d\n")
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress(b"1,t,d\n"))
    with pytest.raises(rows.IngestError, match="read twice. Keep one form"):
        ingest.data_files(str(tmp_path), "train*", "train")


def test_a_split_with_only_misnamed_files_names_them_and_the_names_read(tmp_path):
    (tmp_path / "train_subset.csv.gz").write_bytes(gzip.compress(b"1,t,d\n"))
    with pytest.raises(rows.IngestError) as stopped:
        ingest.data_files(str(tmp_path), "train*", "train")
    message = str(stopped.value)
    assert "found train_subset.csv.gz, which is not read" in message
    assert "No train.csv or train.csv.gz" in message
