"""Reading AG News rows: canonical headerless CSV (training and scoring, labelled or not),
TFRecords of tf.Examples and TFDS records, each row kept with its file and 1-based line number;
a good row becomes a tf.Example, any other a Rejection with its reason.

Plain Beam and TensorFlow, no TFX: the pipeline's ExampleGen (components.ingest) and `agnews
score` read rows with this one code, so a row one rejects the other rejects too, for the same
reason.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import itertools
import json
import os
import re
from collections.abc import Iterator

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from google.protobuf import message

from components import features
from components.artifacts import (
    ACCEPTED,
    BLANK_LINE,
)
from components.settings import DEFAULT_MAX_BAD_FRACTION, DEFAULT_MAX_FIELD_CHARS

# Reasons a line is rejected, as written in rejected.csv.
WRONG_COLUMN_COUNT = "wrong_column_count"
UNTERMINATED_QUOTE = "unterminated_quote"
BAD_QUOTING = "bad_quoting"
LABEL_NOT_1_TO_4 = "label_not_1_to_4"
EMPTY_TEXT = "empty_title_and_description"
INVALID_UTF8 = "invalid_utf8"
FIELD_TOO_LONG = "field_too_long"
NOT_A_TF_EXAMPLE = "not_a_tf_example"

# Where a scoring example came from (the same names as rejected.csv's columns).
SOURCE_FILE_KEY = "source_file"
LINE_NUMBER_KEY = "line_number"

# Forms of an input file.
LABELLED_CSV = "class,title,description"
UNLABELLED_CSV = "title,description"
TF_EXAMPLES = "tf.Example"
_FORM_BY_FIELD_COUNT = {3: LABELLED_CSV, 2: UNLABELLED_CSV}
_FORM_SCAN_LINES = 100  # lines read to tell a file's form before taking the canonical one

REJECTED_HEADER = "source_file,line_number,reason,raw_line"

SOURCE_CSV = "csv"
SOURCE_TFDS = "tfds"


# Python's csv module refuses fields over 131,072 characters with a quoting-like error; a line
# is one row and already in memory, so lift that limit and let max_field_chars decide, with
# its own reason (field_too_long), whatever the field's length.
csv.field_size_limit(2**31 - 1)


class IngestError(RuntimeError):
    """The input data cannot be used as it is; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
    source: str = (
        SOURCE_CSV  # SOURCE_CSV: input_base holds CSV files; SOURCE_TFDS: a prepared TFDS dir
    )
    # True: training input, every row class,title,description. False: scoring input (see above).
    labelled: bool = True


@dataclasses.dataclass(frozen=True)
class Rejection:
    source_file: str
    line_number: int
    reason: str
    raw_line: bytes

    def to_csv_line(self) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(
            [
                self.source_file,
                self.line_number,
                self.reason,
                self.raw_line.decode("utf-8", errors="backslashreplace"),
            ]
        )
        return out.getvalue()


def check_fields(
    label: int | None, title: str, description: str, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
) -> str | None:
    """The reason a decoded row breaks the contract, or None. Shared by every source; a row
    without a label (None) is checked on its text alone."""
    if label is not None and label not in range(features.NUM_CLASSES):
        return LABEL_NOT_1_TO_4
    if not title.strip() and not description.strip():
        return EMPTY_TEXT
    if max(len(title), len(description)) > max_field_chars:
        return FIELD_TOO_LONG
    return None


def _csv_fields(raw_line: bytes) -> list[str] | str:
    """The fields of one CSV line, else the reason it cannot be read."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error as error:
        return UNTERMINATED_QUOTE if "end of data" in str(error) else BAD_QUOTING
    return rows[0] if len(rows) == 1 else WRONG_COLUMN_COUNT


def parse_line(
    raw_line: bytes, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS, form: str = LABELLED_CSV
) -> tuple[int | None, str, str] | str:
    """Returns (label 0-3, or None in an unlabelled file; title, description) for a good CSV
    line of `form`, else the reason to reject it."""
    fields = _csv_fields(raw_line)
    if isinstance(fields, str):
        return fields
    if len(fields) != (3 if form == LABELLED_CSV else 2):
        return WRONG_COLUMN_COUNT
    label = None
    if form == LABELLED_CSV:
        class_index, *fields = fields
        if class_index.strip() not in ("1", "2", "3", "4"):
            return LABEL_NOT_1_TO_4
        label = int(class_index) - 1
    title, description = fields
    return check_fields(label, title, description, max_field_chars) or (label, title, description)


def parse_example_record(
    record: bytes, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
) -> tuple[int | None, str, str] | str:
    """The same contract for a serialized tf.Example (a missing text feature reads as empty;
    the label, when there is one, is 0-3 as ExampleGen writes it)."""
    try:
        example = tf.train.Example.FromString(record)
    except message.DecodeError:
        return NOT_A_TF_EXAMPLE
    if example.ByteSize() != len(record):  # protobuf stops early on some garbage, with a warning
        return NOT_A_TF_EXAMPLE
    feature = example.features.feature
    try:
        title, description = (
            b"".join(feature[k].bytes_list.value[:1]).decode("utf-8") for k in features.TEXT_KEYS
        )
    except UnicodeDecodeError:
        return INVALID_UTF8
    labels = feature[features.LABEL_KEY].int64_list.value if features.LABEL_KEY in feature else []
    label = int(labels[0]) if labels else None
    return check_fields(label, title, description, max_field_chars) or (label, title, description)


def parse_tfds_record(
    record: dict, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
) -> tuple[int, str, str] | str:
    """The same contract for a TFDS ag_news_subset record (label already 0-3, text as bytes)."""
    try:
        title, description = (record[k].decode("utf-8") for k in features.TEXT_KEYS)
    except UnicodeDecodeError:
        return INVALID_UTF8
    label = int(record[features.LABEL_KEY])
    return check_fields(label, title, description, max_field_chars) or (label, title, description)


def make_example(
    label: int | None, title: str, description: str, source: tuple[str, int] | None = None
) -> tf.train.Example:
    """The example of a good row: the label when it has one, (source file, line) when given."""

    def _bytes(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {features.TITLE_KEY: _bytes(title), features.DESCRIPTION_KEY: _bytes(description)}
    if label is not None:
        feature[features.LABEL_KEY] = _int(label)
    if source is not None:
        feature[SOURCE_FILE_KEY], feature[LINE_NUMBER_KEY] = _bytes(source[0]), _int(source[1])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def example_source(example: tf.train.Example) -> tuple[str, int]:
    """(source file, line number) of a scoring example."""
    feature = example.features.feature
    return (
        feature[SOURCE_FILE_KEY].bytes_list.value[0].decode("utf-8"),
        feature[LINE_NUMBER_KEY].int64_list.value[0],
    )


def read_numbered_lines(path: str) -> Iterator[tuple[str, int, bytes]]:
    """Yields (path, 1-based line number, line without its end) for plain or .gz files; the
    first line without a UTF-8 byte-order mark."""
    with FileSystems.open(path) as handle:  # compression is detected from the name
        for number, line in enumerate(iter(handle.readline, b""), start=1):
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            yield path, number, line.rstrip(b"\r\n")


def is_tfrecord(path: str) -> bool:
    return "tfrecord" in os.path.basename(path).lower()


def read_numbered_records(path: str) -> Iterator[tuple[str, int, bytes]]:
    """Yields (path, 1-based record number, record) of a TFRecord file (GZIP when named *.gz)."""
    compression = "GZIP" if path.endswith(".gz") else ""
    for number, record in enumerate(
        tf.compat.v1.io.tf_record_iterator(path, tf.io.TFRecordOptions(compression)), start=1
    ):
        yield path, number, record


def read_numbered_rows(path: str) -> Iterator[tuple[str, int, bytes]]:
    """Lines of a CSV file or records of a TFRecord file, numbered from 1."""
    return read_numbered_records(path) if is_tfrecord(path) else read_numbered_lines(path)


@dataclasses.dataclass(frozen=True)
class FileForm:
    form: str
    header: bool = False  # line 1 names the columns: skipped, not a row


def file_form(path: str) -> FileForm:
    """A scoring file's form: TF_EXAMPLES by its name, else the column count of its first line
    that reads as 2 or 3 CSV fields (LABELLED_CSV when none of the first lines does). Reads the
    file's first record, so an unreadable file fails here, before any work."""
    if is_tfrecord(path):
        next(read_numbered_records(path), None)
        return FileForm(TF_EXAMPLES)
    for _, number, line in itertools.islice(read_numbered_lines(path), _FORM_SCAN_LINES):
        fields = _csv_fields(line)
        if not isinstance(fields, str) and len(fields) in _FORM_BY_FIELD_COUNT:
            names = [f.strip().lower() for f in fields]
            header = number == 1 and names[-2:] == list(features.TEXT_KEYS)
            return FileForm(_FORM_BY_FIELD_COUNT[len(fields)], header)
    return FileForm(LABELLED_CSV)


def relative_name(path: str, base_dir: str) -> str:
    """`path` as rejected.csv and the scores name it: relative to the input base directory."""
    prefix = base_dir.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else os.path.basename(path)


def read_tfds_records(input_base: str, split: str) -> Iterator[tuple[str, int, dict]]:
    """Yields (source, 1-based record number, record) of a prepared TFDS dataset directory."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(input_base)
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    for number, record in enumerate(tfds.as_numpy(dataset), start=1):
        yield f"tfds:{builder.name}/{split}", number, record


def _raw_tfds_record(record: dict) -> bytes:
    return json.dumps(
        {
            k: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else int(v)
            for k, v in record.items()
        },
        sort_keys=True,
    ).encode()


class ParseRow(beam.DoFn):
    """(source, number, raw CSV line, tf.Example record or TFDS record) to a tf.Example or a
    tagged Rejection (reason BLANK_LINE for a blank CSV line). `forms` (scoring input) maps each
    file to its FileForm; training files are all LABELLED_CSV."""

    def __init__(
        self,
        source: str,
        max_field_chars: int,
        base_dir: str = "",
        forms: dict[str, FileForm] | None = None,
    ):
        self._source = source
        self._max_field_chars = max_field_chars
        self._base_dir = base_dir
        self._forms = forms

    def process(self, numbered_row):
        origin, number, raw = numbered_row
        form = self._forms[origin] if self._forms is not None else FileForm(LABELLED_CSV)
        if form.header and number == 1:
            return
        if self._source == SOURCE_TFDS:
            parsed = parse_tfds_record(raw, self._max_field_chars)
        elif form.form == TF_EXAMPLES:
            parsed = parse_example_record(raw, self._max_field_chars)
        elif not raw.strip():
            parsed = BLANK_LINE
        else:
            parsed = parse_line(raw, self._max_field_chars, form.form)
        name = relative_name(origin, self._base_dir)
        if isinstance(parsed, str):
            if self._source == SOURCE_TFDS:
                raw = _raw_tfds_record(raw)
            elif form.form == TF_EXAMPLES:
                raw = codecs.escape_encode(raw)[0]  # binary: as a bytes literal reads, one line
            yield beam.pvalue.TaggedOutput("rejected", Rejection(name, number, parsed, raw))
        else:
            yield make_example(*parsed, source=(name, number) if self._forms is not None else None)


class ParseFiles(beam.PTransform):
    """Files (CSV or TFRecord) to examples (main output) and Rejections (`rejected`, blank lines
    included: WriteRejected, write_summary and check_bad_fraction tell them apart), spread over
    the workers: the one reading path of ExampleGen and `agnews score`."""

    def __init__(self, paths: list[str], settings: IngestSettings, base_dir: str):
        super().__init__()
        self._paths = sorted(paths)
        self._settings = settings
        self._base_dir = base_dir

    def expand(self, pbegin):
        forms = None if self._settings.labelled else {p: file_form(p) for p in self._paths}
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._paths)
            | "ReadRows" >> beam.FlatMap(read_numbered_rows)
            | "Spread" >> beam.Reshuffle()
            | "Parse"
            >> beam.ParDo(
                ParseRow(SOURCE_CSV, self._settings.max_field_chars, self._base_dir, forms)
            ).with_outputs("rejected", main="examples")
        )


class WriteRejected(beam.PTransform):
    """Rejections but blank lines to one `rejected.csv` (header only when nothing was rejected)."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, rejected):
        return (
            rejected
            | "NotBlank" >> beam.Filter(lambda r: r.reason != BLANK_LINE)
            | "RejectedToCsv" >> beam.Map(Rejection.to_csv_line)
            | "WriteRejected"
            >> beam.io.WriteToText(self._path, shard_name_template="", header=REJECTED_HEADER)
        )


def write_summary(accepted: list, rejected, path: str) -> None:
    """Writes rows per outcome (ACCEPTED, a rejection reason or BLANK_LINE) as JSON at `path`,
    from the accepted examples' PCollections and the Rejections."""
    _ = (
        [
            pcoll | f"Accepted[{i}]" >> beam.Map(lambda _: ACCEPTED)
            for i, pcoll in enumerate(accepted)
        ]
        + [rejected | "Reasons" >> beam.Map(lambda r: r.reason)]
        | "AllOutcomes" >> beam.Flatten()
        | "CountOutcomes" >> beam.combiners.Count.PerElement()
        | "ToDict" >> beam.combiners.ToDict()
        | "WriteSummary" >> beam.Map(_write_summary, path)
    )


def _write_summary(counts: dict[str, int], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(counts, sort_keys=True).encode())


def matching_files(pattern: str) -> list[str]:
    """The files a glob pattern matches, on any file system Beam reads, sorted."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def check_bad_fraction(
    counts: dict[str, int],
    max_bad_fraction: float,
    rejected_path: str,
    where_to_look: str = "check the input files",
) -> None:
    """Stops (IngestError) on input with no rows or with too large a share of rejected rows
    (blank lines are not rows)."""
    counts = {k: v for k, v in counts.items() if k != BLANK_LINE}
    total = sum(counts.values())
    bad = total - counts.get(ACCEPTED, 0)
    if total == 0:
        raise IngestError(f"The input files hold no rows: {where_to_look}.")
    if bad / total > max_bad_fraction:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != ACCEPTED)
        raise IngestError(
            f"{bad} of {total} input rows ({bad / total:.2%}) were rejected ({reasons}), more than "
            f"--max-bad-fraction {max_bad_fraction:g} allows. Each rejected row, with its file, "
            f"line number and reason, is in {rejected_path}. Fix the input or raise the limit."
        )


def split_files(paths: list[str], split: str) -> tuple[list[str], list[str]]:
    """(the files named like input split `split`, plain or gzipped, whole or in shards:
    `train.csv`, `train-00000-of-00004.csv.gz`; the others, e.g. `train.csv.bak` or
    `train_subset.csv.gz`, which are not read)."""
    form = re.compile(rf"{re.escape(split)}(-[^/]*)?\.csv(\.gz)?")
    kept = [path for path in paths if form.fullmatch(os.path.basename(path))]
    return kept, sorted(set(paths) - set(kept))


def no_split_files_message(split: str, skipped: list[str]) -> str:
    """Why input split `split` has no file although `skipped` (in one directory) matched its
    pattern: the names that are read, and the files passed over."""
    passed_over = ", ".join(os.path.basename(path) for path in skipped)
    return (
        f"No {split}.csv or {split}.csv.gz (or shards such as {split}-00000-of-00002.csv.gz) in "
        f"{os.path.dirname(skipped[0])}: found {passed_over}, which is not read. Rename the "
        f"file, e.g. to {split}.csv.gz."
    )
