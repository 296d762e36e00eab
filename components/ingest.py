"""ExampleGen's executor for canonical AG News CSV (or TFDS ag_news_subset): every input row
becomes an example or a rejected row.

The canonical files are headerless (class 1-4, title, description), which TFX's
CsvExampleGen cannot read, and real copies carry damaged lines. This executor keeps each
line's file and 1-based number, turns good lines into tf.Examples (`title`, `description`
as bytes, `label` as int64 0-3, text kept exactly as in the file: normalization belongs to
the model graph so that serving sees the same), and writes every other line to
`rejected.csv` inside the Examples artifact with the reason. The run fails when the
rejected fraction exceeds `max_bad_fraction`. A blank line (empty or whitespace only; editors
and exports leave them) is neither: the summary counts it under BLANK_LINE. A UTF-8 byte-order
mark at the start of a file (what Excel and Notepad write) is not part of the first row.

Scoring input (`labelled=False`: `agnews score` and the pipeline's `--score` ExampleGen) goes
through the same parsing and rules. Its CSV files may also be unlabelled (title, description):
each file's form is told from its first line that reads as 2 or 3 CSV fields (a first line of
column names, e.g. `title,description`, is skipped), so a damaged line never changes the form
of its neighbours. Files whose name contains `tfrecord` hold tf.Examples instead (gzipped when
named *.gz). Scoring examples carry their `source_file` and `line_number`, which the model
ignores and the scores repeat.

Rows are read and parsed by components.rows, which `agnews score` uses too.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import os
import re
from typing import Any

import apache_beam as beam
from absl import logging
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import features
from components.artifacts import REJECTED_FILE_NAME, SUMMARY_FILE_NAME, read_summary
from components.rows import (
    SOURCE_CSV,
    SOURCE_TFDS,
    IngestError,
    IngestSettings,
    ParseFiles,
    ParseRow,
    WriteRejected,
    check_bad_fraction,
    matching_files,
    no_split_files_message,
    read_tfds_records,
    split_files,
    write_summary,
)


def custom_config(settings: IngestSettings) -> example_gen_pb2.CustomConfig:
    """Packs the settings the way FileBasedExampleGen carries executor options."""
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(
        json_format.ParseDict(dataclasses.asdict(settings), struct_pb2.Struct())
    )
    return config


def settings_from_exec_properties(exec_properties: dict[str, Any]) -> IngestSettings:
    """The settings `custom_config` packed, read back from the executor's properties."""
    text = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not text:
        return IngestSettings()
    config = proto_utils.json_to_proto(text, example_gen_pb2.CustomConfig())
    values = struct_pb2.Struct()
    config.custom_config.Unpack(values)
    values = json_format.MessageToDict(values)
    return IngestSettings(
        max_bad_fraction=float(values["max_bad_fraction"]),
        max_field_chars=int(values["max_field_chars"]),
        source=values.get("source", SOURCE_CSV),
        labelled=bool(values.get("labelled", True)),
    )


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
    """TFX ExampleGen's rule (sha256 buckets) keyed on `story_key`, so a story's copies share a
    split."""
    del num_partitions
    digest = int(hashlib.sha256(story_key(example)).hexdigest(), 16)
    return bisect.bisect(bucket_ends, digest % bucket_ends[-1])


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads input split `train` hash-split into the output config's splits
    (train/eval/holdout), and any other input split (test) as it is."""

    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = settings_from_exec_properties(exec_properties)
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
        )
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output()
        )
        examples_artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        examples = artifact_utils.get_single_instance(examples_artifacts)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        file_format = exec_properties.get(
            standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FORMAT_TFRECORDS_GZIP
        )
        train_splits = [s.name for s in output_config.split_config.splits]
        bucket_ends = list(
            itertools.accumulate(s.hash_buckets for s in output_config.split_config.splits)
        )

        split_names = [
            name
            for split in input_config.splits
            for name in (train_splits if split.name == "train" else [split.name])
        ]
        examples.split_names = artifact_utils.encode_split_names(split_names)
        rejected_pcolls, accepted_pcolls = [], []
        with self._make_beam_pipeline() as pipeline:
            for split in input_config.splits:
                parsed = _parse_split(pipeline, split, settings, input_base)
                rejected_pcolls.append(parsed.rejected)
                accepted_pcolls.append(parsed.examples)
                if split.name == "train":
                    outputs = _hash_split(parsed.examples, train_splits, bucket_ends)
                else:
                    outputs = {split.name: parsed.examples}
                for name, pcoll in outputs.items():
                    _ = pcoll | f"WriteSplit[{name}]" >> write_split.WriteSplit(
                        artifact_utils.get_split_uri(examples_artifacts, name),
                        file_format,
                        exec_properties,
                    )
            rejected = rejected_pcolls | "AllRejected" >> beam.Flatten()
            _ = rejected | WriteRejected(os.path.join(examples.uri, REJECTED_FILE_NAME))
            write_summary(accepted_pcolls, rejected, os.path.join(examples.uri, SUMMARY_FILE_NAME))

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))
        _record_counts(examples, settings)


def _parse_split(pipeline, split, settings: IngestSettings, input_base: str):
    """Input split `split`'s rows parsed: a tuple of PCollections `examples` and `rejected`."""
    if settings.source == SOURCE_TFDS:
        return (
            pipeline
            | f"Split[{split.name}]" >> beam.Create([(input_base, split.name)])
            | f"ReadTfds[{split.name}]" >> beam.FlatMapTuple(read_tfds_records)
            | f"Spread[{split.name}]" >> beam.Reshuffle()
            | f"Parse[{split.name}]"
            >> beam.ParDo(ParseRow(SOURCE_TFDS, settings.max_field_chars)).with_outputs(
                "rejected", main="examples"
            )
        )
    paths = (
        data_files(input_base, split.pattern, split.name)
        if settings.labelled
        else matching_files(os.path.join(input_base, split.pattern))
    )
    return pipeline | f"Read[{split.name}]" >> ParseFiles(paths, settings, input_base)


def _hash_split(examples, train_splits: list[str], bucket_ends: list[int]) -> dict:
    """The train examples by output split name: one partition per output split (`bucket_ends`
    has one end per split, in the same order as `train_splits`)."""
    partitions = examples | "HashSplit" >> beam.Partition(
        hash_split_index, len(bucket_ends), bucket_ends
    )
    return dict(zip(train_splits, partitions, strict=True))


def _record_counts(examples, settings: IngestSettings) -> None:
    """Copies the row counts of the run's summary onto the Examples artifact, and fails the run
    when too many rows were rejected."""
    counts = read_summary(examples.uri)
    for key, value in counts.items():
        examples.set_int_custom_property(f"rows_{key}", value)
    check_bad_fraction(
        counts,
        settings.max_bad_fraction,
        os.path.join(examples.uri, REJECTED_FILE_NAME),
        "check --data and the file names (train.csv or train.csv.gz, test.csv...)"
        if settings.labelled
        else "check the --score directory",
    )


def data_files(input_base: str, pattern: str, split: str) -> list[str]:
    """The CSV files of input split `split`: of the files `pattern` (e.g. `span-3/train*`)
    matches, those named like the split (rows.split_files). Others (`train.csv.bak`,
    `train_old.csv`) are named in the log and left alone, or in the error when only such files
    matched; none at all is an empty split (a test split compiled in but not given); both `.csv`
    and `.csv.gz` files for one split would read each row twice, and stop the run."""
    kept, skipped = split_files(matching_files(os.path.join(input_base, pattern)), split)
    if skipped and not kept:
        raise IngestError(no_split_files_message(split, skipped))
    if skipped:
        logging.warning(
            "Not read (not %s.csv or %s.csv.gz, whole or in shards): %s",
            split,
            split,
            ", ".join(skipped),
        )
    if {path.endswith(".gz") for path in kept} == {True, False}:
        raise IngestError(
            f"Both {split}*.csv and {split}*.csv.gz files in {os.path.dirname(kept[0])}: each row "
            f"would be read twice. Keep one form: {', '.join(os.path.basename(p) for p in kept)}."
        )
    return kept
