"""preprocessing_fn through TFT's real Beam implementation on a few rows."""

import dataclasses
import functools
import logging
import math
import re

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.metrics.metric import MetricsFilter
from tensorflow_transform import impl_helper
from tensorflow_transform.beam import analyzer_cache
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features, preprocessing, rows
from tests.helpers.data import sample_lines

RAW_FEATURE_SPEC = {
    features.TITLE_KEY: tf.io.FixedLenFeature([1], tf.string),
    features.DESCRIPTION_KEY: tf.io.FixedLenFeature([1], tf.string),
    features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
}
RAW_METADATA = dataset_metadata.DatasetMetadata(
    schema_utils.schema_from_feature_spec(RAW_FEATURE_SPEC)
)


def _row(title: str, description: str, label: int = 0) -> dict:
    return {
        features.TITLE_KEY: [title.encode()],
        features.DESCRIPTION_KEY: [description.encode()],
        features.LABEL_KEY: [label],
    }


TRAIN_ROWS = [
    _row("Oil prices rise", "Oil up again. OIL!", 2),
    _row("Oil &lt;b&gt;falls&lt;/b&gt;", "Traders sell oil", 2),
    _row("Mets win", "The Mets beat the Cubs in a late rally", 1),
]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """(transformed training rows, vocabulary, rows from new text) with max_tokens = 4."""
    temp = tmp_path_factory.mktemp("tft")
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config={"max_tokens": 4})
    new_rows = [_row("Zebra oil", "unseen words here", 3), _row("", "", 0), _row("...", "!!", 1)]
    with tft_beam.Context(temp_dir=str(temp / "tmp")):
        (train_out, _), transform_fn = (
            TRAIN_ROWS,
            RAW_METADATA,
        ) | tft_beam.AnalyzeAndTransformDataset(fn, output_record_batches=False)
        new_out, _ = ((new_rows, RAW_METADATA), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "out"))
    vocabulary = [
        t.decode()
        for t in tft.TFTransformOutput(str(temp / "out")).vocabulary_by_name(features.VOCAB_NAME)
    ]
    return train_out, vocabulary, new_out


def _ids(row) -> list[int]:
    return list(row[features.TOKEN_IDS_KEY])


def test_vocabulary_is_built_from_the_full_text_most_frequent_first(transformed):
    _, vocabulary, _ = transformed
    # "oil" 5 times (case and punctuation folded), then "mets" and "the" twice each.
    assert vocabulary[0] == "oil" and set(vocabulary[1:3]) == {"mets", "the"}
    # Tokens past the max_tokens cap still count: "rally" is the 10th token of its row.
    assert "rally" in vocabulary and "cubs" in vocabulary
    assert not any(t in vocabulary for t in ("b", "lt", "gt", "oil!", "Oil"))


def test_token_ids_reserve_padding_and_oov_and_cap_length(transformed):
    train_out, vocabulary, _ = transformed
    first = _ids(train_out[0])
    assert first == [
        vocabulary.index(t) + features.NUM_RESERVED_IDS for t in ("oil", "prices", "rise", "oil")
    ]
    assert all(len(_ids(row)) <= 4 for row in train_out)
    assert all(min(_ids(row)) >= features.NUM_RESERVED_IDS for row in train_out)
    assert [row[features.NUM_TOKENS_KEY] for row in train_out] == [7, 5, 11]
    assert [row[features.LENGTH_BUCKET_KEY] for row in train_out] == [b"short"] * 3
    assert [row[features.LABEL_KEY] for row in train_out] == [2, 2, 1]


def test_unseen_tokens_are_oov_and_empty_text_is_one_oov_token(transformed):
    _, vocabulary, new_out = transformed
    assert _ids(new_out[0]) == [
        features.OOV_ID,
        vocabulary.index("oil") + 2,
        features.OOV_ID,
        features.OOV_ID,
    ]
    assert _ids(new_out[1]) == [features.OOV_ID]
    assert _ids(new_out[2]) == [features.OOV_ID]
    assert features.PAD_ID not in _ids(new_out[0]) + _ids(new_out[1])


def test_title_only_text_ignores_the_description(tmp_path):
    fn = functools.partial(
        preprocessing.preprocessing_fn, custom_config={"text": features.TEXT_TITLE}
    )
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (out, _), _ = (TRAIN_ROWS, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False
        )
    assert [row[features.NUM_TOKENS_KEY] for row in out] == [3, 2, 2]


def test_length_buckets_edges():
    counts = tf.constant([0, 30, 31, 45, 46, 300], tf.int64)
    assert [b.decode() for b in preprocessing.length_bucket(counts).numpy()] == [
        "short",
        "short",
        "medium",
        "medium",
        "long",
        "long",
    ]


def test_ngram_bag_weighs_each_distinct_1_and_2_gram_by_tf_idf(tmp_path):
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config={"ngrams": True})
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        (out, _), transform_fn = (TRAIN_ROWS, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "out"))
    ngrams = [
        t.decode()
        for t in tft.TFTransformOutput(str(tmp_path / "out")).vocabulary_by_name(
            features.NGRAM_VOCAB_NAME
        )
    ]
    # Seen at least NGRAM_MIN_COUNT (2) times: "oil" (5), "the" and "mets" (2 each), "oil prices"
    # once only, so it and every other n-gram share the last id (out of vocabulary).
    assert ngrams[0] == "oil" and set(ngrams) == {"oil", "the", "mets"}
    first = out[0]  # "oil prices rise oil up again oil": "oil" x3, 10 other n-grams, all OOV
    ids, weights = list(first[features.NGRAM_IDS_KEY]), list(first[features.NGRAM_WEIGHTS_KEY])
    assert sorted(ids) == [0, len(ngrams)]  # distinct ids: "oil" and the OOV id
    oil, other = (weights[ids.index(i)] for i in (0, len(ngrams)))
    # TF-IDF as TFT defines it: (count / the row's 13 n-grams) x (1 + ln((1 + 3 rows) / (1 + df))).
    # "oil": 3 times, in 2 of the 3 rows; the OOV id: the other 10, in all 3 rows.
    assert oil == pytest.approx(3 / 13 * (1 + math.log(4 / 3)), rel=1e-5)
    assert other == pytest.approx(10 / 13 * (1 + math.log(4 / 4)), rel=1e-5)


def test_without_ngrams_transform_emits_no_ngram_features(transformed):
    train_out, _, _ = transformed
    assert (
        features.NGRAM_IDS_KEY not in train_out[0]
        and features.NGRAM_WEIGHTS_KEY not in train_out[0]
    )


@dataclasses.dataclass
class _Analysis:
    written: dict[str, set[bytes]]  # cache entry keys written per dataset key: computed, not read
    to_read: set[str]  # dataset keys whose rows the analysis still reads (TFX's view)
    counters: dict[str, int]  # TFT's Beam counters
    vocabularies: dict[str, list[bytes]]


def _analyze(
    fn, spans: dict[str, list[dict]], cache_dir, work_dir, vocabularies: list[str]
) -> _Analysis:
    """One analysis of `spans` with TFT's analyzer cache in `cache_dir`, read and then written
    as TFX's Transform does with an `analyzer_cache` input."""
    keys = [analyzer_cache.DatasetKey(name) for name in spans]
    specs = impl_helper.get_type_specs_from_feature_specs(RAW_FEATURE_SPEC)
    pipeline = beam.Pipeline()
    with tft_beam.Context(temp_dir=str(work_dir / "tmp")):
        input_cache = pipeline | analyzer_cache.ReadAnalysisCacheFromFS(str(cache_dir), keys)
        to_read = tft_beam.analysis_graph_builder.get_analysis_dataset_keys(
            fn, specs, keys, input_cache, force_tf_compat_v1=False
        )
        data = {key: pipeline | f"Rows[{key.key}]" >> beam.Create(spans[key.key]) for key in keys}
        transform_fn, output_cache = (
            data,
            input_cache,
            RAW_METADATA,
        ) | tft_beam.AnalyzeDatasetWithCache(fn)
        _ = output_cache | analyzer_cache.WriteAnalysisCacheToFS(pipeline, str(cache_dir), keys)
        _ = transform_fn | tft_beam.WriteTransformFn(str(work_dir / "out"))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        name: sum(
            c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"]
        )
        for name in (
            "cache_entries_decoded",
            "cache_entries_encoded",
            "analysis_input_bytes_from_cache",
        )
    }
    output = tft.TFTransformOutput(str(work_dir / "out"))
    return _Analysis(
        {key.key: set(cache.cache_dict) for key, cache in output_cache.items()},
        {key.key for key in to_read},
        counters,
        {name: output.vocabulary_by_name(name) for name in vocabularies},
    )


def _analyzer_names(cache_keys: set[bytes]) -> set[str]:
    """The analyzer each cache entry key names: `...Accumulate[<name>]-<hash>`."""
    return {re.search(rb"\[(.+)\]-", key).group(1).decode() for key in cache_keys}


@pytest.mark.parametrize("ngrams", [False, True])
def test_a_second_analysis_of_the_same_spans_takes_every_cacheable_analyzer_from_tfts_cache(
    tmp_path, ngrams
):
    """Each analyzer's cache key is named and stable (a fresh tracing gives the same keys), so a
    rerun over the same dataset keys computes none of them again. With the n-gram features,
    tf-idf's document frequency needs the n-gram vocabulary first: a second-phase analyzer, which
    TFT never caches, so every span is read again (TFT does not count cache hits then)."""
    examples = [
        _row(title, description, label)
        for label, title, description in (rows.parse_line(line) for line in sample_lines(240))
    ]
    spans = {"span-1": examples[:120], "span-2": examples[120:]}
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config={"ngrams": ngrams})
    vocabularies = [features.VOCAB_NAME] + ([features.NGRAM_VOCAB_NAME] if ngrams else [])
    expected = tft_beam.analysis_graph_builder.get_analysis_cache_entry_keys(
        fn,
        impl_helper.get_type_specs_from_feature_specs(RAW_FEATURE_SPEC),
        [analyzer_cache.DatasetKey(name) for name in spans],
        force_tf_compat_v1=False,
    )
    assert _analyzer_names(expected) == (
        {"token_vocabulary", "ngram_vocabulary#vocabulary", "ngram_tfidf#sum_1"}
        if ngrams
        else {"token_vocabulary"}
    )

    first = _analyze(fn, spans, tmp_path / "cache", tmp_path / "first", vocabularies)
    second = _analyze(fn, spans, tmp_path / "cache", tmp_path / "second", vocabularies)

    assert first.written == {name: expected for name in spans}
    assert second.written == {}  # every entry came from the cache: none was computed again
    assert second.vocabularies == first.vocabularies and all(first.vocabularies.values())
    if ngrams:
        assert second.to_read == set(spans)
    else:
        assert second.to_read == set()
        assert first.counters["cache_entries_encoded"] == len(expected) * len(spans)
        assert second.counters["cache_entries_decoded"] == len(expected) * len(spans)
        assert second.counters["cache_entries_encoded"] == 0
        assert second.counters["analysis_input_bytes_from_cache"] > 0


@pytest.mark.parametrize("config", [{}, {"ngrams": True}, {"min_token_count": 2}])
def test_tracing_the_preprocessing_fn_draws_no_tft_warning(config, caplog):
    """TFT warns of a frequency_threshold that does nothing (1: what min_token_count defaults to);
    the threshold is passed only when it filters."""
    specs = impl_helper.get_type_specs_from_feature_specs(RAW_FEATURE_SPEC)
    with caplog.at_level(logging.WARNING):
        impl_helper.trace_preprocessing_function(
            functools.partial(preprocessing.preprocessing_fn, custom_config=config),
            specs,
            use_tf_compat_v1=False,
        )
    assert [r.getMessage() for r in caplog.records if "frequency_threshold" in r.getMessage()] == []
