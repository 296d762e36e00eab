"""ExampleGen for canonical AG News CSV (or TFDS ag_news_subset): every input row becomes an
example or a rejected row.

The canonical files are headerless (class 1-4, title, description), which TFX's
CsvExampleGen cannot read, and real copies carry damaged lines. This executor keeps each
line's file and 1-based number, turns good lines into tf.Examples (`title`, `description`
as bytes, `label` as int64 0-3, text kept exactly as in the file: normalization belongs to
the model graph so that serving sees the same), and writes every other line to
`rejected.csv` inside the Examples artifact with the reason. The run fails when the
rejected fraction exceeds `max_bad_fraction`.
"""
from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
from typing import Any, Iterator

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import write_split
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.components.util import examples_utils
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import features
from components.artifacts import ACCEPTED, REJECTED_FILE_NAME, SUMMARY_FILE_NAME, read_summary
from components.settings import DEFAULT_MAX_BAD_FRACTION, DEFAULT_MAX_FIELD_CHARS

# Reasons a line is rejected, as written in rejected.csv.
WRONG_COLUMN_COUNT = "wrong_column_count"
UNTERMINATED_QUOTE = "unterminated_quote"
BAD_QUOTING = "bad_quoting"
LABEL_NOT_1_TO_4 = "label_not_1_to_4"
EMPTY_TEXT = "empty_title_and_description"
INVALID_UTF8 = "invalid_utf8"
FIELD_TOO_LONG = "field_too_long"

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
    source: str = SOURCE_CSV  # SOURCE_CSV: input_base holds CSV files; SOURCE_TFDS: a prepared TFDS dir

    def to_custom_config(self) -> example_gen_pb2.CustomConfig:
        """Packs the settings the way FileBasedExampleGen carries executor options."""
        config = example_gen_pb2.CustomConfig()
        config.custom_config.Pack(
            json_format.ParseDict(dataclasses.asdict(self), struct_pb2.Struct()))
        return config

    @classmethod
    def from_exec_properties(cls, exec_properties: dict[str, Any]) -> "IngestSettings":
        text = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
        if not text:
            return cls()
        config = proto_utils.json_to_proto(text, example_gen_pb2.CustomConfig())
        values = struct_pb2.Struct()
        config.custom_config.Unpack(values)
        values = json_format.MessageToDict(values)
        return cls(max_bad_fraction=float(values["max_bad_fraction"]),
                   max_field_chars=int(values["max_field_chars"]),
                   source=values.get("source", SOURCE_CSV))


@dataclasses.dataclass(frozen=True)
class Rejection:
    source_file: str
    line_number: int
    reason: str
    raw_line: bytes

    def to_csv_line(self) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([
            self.source_file, self.line_number, self.reason,
            self.raw_line.decode("utf-8", errors="backslashreplace")])
        return out.getvalue()


def check_fields(label: int, title: str, description: str,
                 max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> str | None:
    """The reason a decoded row breaks the contract, or None. Shared by the CSV and TFDS sources."""
    if label not in range(features.NUM_CLASSES):
        return LABEL_NOT_1_TO_4
    if not title.strip() and not description.strip():
        return EMPTY_TEXT
    if max(len(title), len(description)) > max_field_chars:
        return FIELD_TOO_LONG
    return None


def parse_line(raw_line: bytes, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
               ) -> tuple[int, str, str] | str:
    """Returns (label 0-3, title, description) for a good CSV line, else the reason to reject it."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error as error:
        return UNTERMINATED_QUOTE if "end of data" in str(error) else BAD_QUOTING
    if len(rows) != 1 or len(rows[0]) != 3:
        return WRONG_COLUMN_COUNT
    class_index, title, description = rows[0]
    if class_index.strip() not in ("1", "2", "3", "4"):
        return LABEL_NOT_1_TO_4
    label = int(class_index) - 1
    return check_fields(label, title, description, max_field_chars) or (label, title, description)


def parse_tfds_record(record: dict, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
                      ) -> tuple[int, str, str] | str:
    """The same contract for a TFDS ag_news_subset record (label already 0-3, text as bytes)."""
    try:
        title, description = (record[k].decode("utf-8") for k in features.TEXT_KEYS)
    except UnicodeDecodeError:
        return INVALID_UTF8
    label = int(record[features.LABEL_KEY])
    return check_fields(label, title, description, max_field_chars) or (label, title, description)


def make_example(label: int, title: str, description: str) -> tf.train.Example:
    def _bytes(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))

    return tf.train.Example(features=tf.train.Features(feature={
        features.TITLE_KEY: _bytes(title),
        features.DESCRIPTION_KEY: _bytes(description),
        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }))


def read_numbered_lines(path: str) -> Iterator[tuple[str, int, bytes]]:
    """Yields (path, 1-based line number, line without its end) for plain or .gz files."""
    with FileSystems.open(path) as handle:  # compression is detected from the name
        for number, line in enumerate(iter(handle.readline, b""), start=1):
            yield path, number, line.rstrip(b"\r\n")


def read_tfds_records(input_base: str, split: str) -> Iterator[tuple[str, int, dict]]:
    """Yields (source, 1-based record number, record) of a prepared TFDS dataset directory."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(input_base)
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    for number, record in enumerate(tfds.as_numpy(dataset), start=1):
        yield f"tfds:{builder.name}/{split}", number, record


def _raw_tfds_record(record: dict) -> bytes:
    return json.dumps({k: v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else int(v)
                       for k, v in record.items()}, sort_keys=True).encode()


class _ParseRow(beam.DoFn):
    """(source, number, raw CSV line or TFDS record) to a tf.Example or a tagged Rejection."""

    def __init__(self, source: str, max_field_chars: int):
        self._source = source
        self._max_field_chars = max_field_chars

    def process(self, numbered_row):
        origin, number, raw = numbered_row
        if self._source == SOURCE_TFDS:
            parsed = parse_tfds_record(raw, self._max_field_chars)
        else:
            parsed = parse_line(raw, self._max_field_chars)
        if isinstance(parsed, str):
            raw_line = _raw_tfds_record(raw) if self._source == SOURCE_TFDS else raw
            yield beam.pvalue.TaggedOutput(
                "rejected", Rejection(os.path.basename(origin), number, parsed, raw_line))
        else:
            yield make_example(*parsed)


_WORD = re.compile(r"[^\W_]+")  # runs of Unicode letters and digits


def story_key(example) -> bytes:
    """What the split hashes: the headline's words, lower-cased (the description's when the
    headline has none). AG News carries reposts of one story under the same headline with
    edited descriptions; hashing whole examples (TFX's default) put such copies on both sides
    of the train/holdout line, so the held-out figure partly measured memorized stories."""
    feature = example.features.feature
    for key in features.TEXT_KEYS:
        words = _WORD.findall(feature[key].bytes_list.value[0].decode("utf-8").lower())
        if words:
            return " ".join(words).encode("utf-8")
    return example.SerializeToString(deterministic=True)


def hash_split_index(example, num_partitions: int, bucket_ends: list[int]) -> int:
    """TFX ExampleGen's rule (sha256 buckets) keyed on `story_key`, so a story's copies share a split."""
    del num_partitions
    digest = int(hashlib.sha256(story_key(example)).hexdigest(), 16)
    return bisect.bisect(bucket_ends, digest % bucket_ends[-1])


def _write_summary(counts: dict[str, int], path: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(counts, sort_keys=True).encode())


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads input split `train` hash-split into the output config's splits (train/eval/holdout), and
    any other input split (test) as it is."""

    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = IngestSettings.from_exec_properties(exec_properties)
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        examples_artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        examples = artifact_utils.get_single_instance(examples_artifacts)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                                          example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        train_splits = [s.name for s in output_config.split_config.splits]
        bucket_ends = list(itertools.accumulate(s.hash_buckets for s in output_config.split_config.splits))

        split_names = [name for split in input_config.splits
                       for name in (train_splits if split.name == "train" else [split.name])]
        examples.split_names = artifact_utils.encode_split_names(split_names)
        rejected_pcolls, outcome_pcolls = [], []
        with self._make_beam_pipeline() as pipeline:
            for split in input_config.splits:
                if settings.source == SOURCE_TFDS:
                    rows = (pipeline
                            | f"Split[{split.name}]" >> beam.Create([(input_base, split.name)])
                            | f"ReadTfds[{split.name}]" >> beam.FlatMapTuple(read_tfds_records))
                else:
                    files = FileSystems.match([os.path.join(input_base, split.pattern)])[0].metadata_list
                    rows = (pipeline
                            | f"ListFiles[{split.name}]" >> beam.Create(sorted(m.path for m in files))
                            | f"ReadLines[{split.name}]" >> beam.FlatMap(read_numbered_lines))
                parsed = (
                    rows
                    | f"Spread[{split.name}]" >> beam.Reshuffle()
                    | f"Parse[{split.name}]" >> beam.ParDo(
                        _ParseRow(settings.source, settings.max_field_chars)
                    ).with_outputs("rejected", main="examples"))
                rejected_pcolls.append(parsed.rejected)
                outcome_pcolls.append(parsed.examples | f"Accepted[{split.name}]" >> beam.Map(
                    lambda _: ACCEPTED))
                if split.name == "train":
                    outputs = dict(zip(train_splits, parsed.examples | "HashSplit" >> beam.Partition(
                        hash_split_index, len(bucket_ends), bucket_ends)))
                else:
                    outputs = {split.name: parsed.examples}
                for name, pcoll in outputs.items():
                    _ = pcoll | f"WriteSplit[{name}]" >> write_split.WriteSplit(
                        artifact_utils.get_split_uri(examples_artifacts, name),
                        file_format, exec_properties)
            rejected = rejected_pcolls | "AllRejected" >> beam.Flatten()
            _ = (rejected
                 | "RejectedToCsv" >> beam.Map(Rejection.to_csv_line)
                 | "WriteRejected" >> beam.io.WriteToText(
                     os.path.join(examples.uri, REJECTED_FILE_NAME), shard_name_template="",
                     header=REJECTED_HEADER))
            _ = ((outcome_pcolls + [rejected | "Reasons" >> beam.Map(lambda r: r.reason)])
                 | "AllOutcomes" >> beam.Flatten()
                 | "CountOutcomes" >> beam.combiners.Count.PerElement()
                 | "ToDict" >> beam.combiners.ToDict()
                 | "WriteSummary" >> beam.Map(
                     _write_summary, os.path.join(examples.uri, SUMMARY_FILE_NAME)))

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))
        counts = read_summary(examples.uri)
        for key, value in counts.items():
            examples.set_int_custom_property(f"rows_{key}", value)
        check_bad_fraction(counts, settings.max_bad_fraction,
                           os.path.join(examples.uri, REJECTED_FILE_NAME))


def check_bad_fraction(counts: dict[str, int], max_bad_fraction: float, rejected_path: str) -> None:
    total = sum(counts.values())
    bad = total - counts.get(ACCEPTED, 0)
    if total == 0:
        raise IngestError("The input files hold no rows: check --data and the file names "
                          "(train*.csv, train*.csv.gz, test*.csv...).")
    if bad / total > max_bad_fraction:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != ACCEPTED)
        raise IngestError(
            f"{bad} of {total} input rows ({bad / total:.2%}) were rejected ({reasons}), more than "
            f"--max-bad-fraction {max_bad_fraction:g} allows. Each rejected row, with its file, "
            f"line number and reason, is in {rejected_path}. Fix the input or raise the limit.")
