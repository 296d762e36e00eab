"""preprocessing_fn through TFT's real Beam implementation on a few rows."""
import functools
import math

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features, preprocessing

RAW_METADATA = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
    features.TITLE_KEY: tf.io.FixedLenFeature([1], tf.string),
    features.DESCRIPTION_KEY: tf.io.FixedLenFeature([1], tf.string),
    features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
}))


def _row(title: str, description: str, label: int = 0) -> dict:
    return {features.TITLE_KEY: [title.encode()], features.DESCRIPTION_KEY: [description.encode()],
            features.LABEL_KEY: [label]}


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
        (train_out, _), transform_fn = (TRAIN_ROWS, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False)
        new_out, _ = ((new_rows, RAW_METADATA), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(temp / "out"))
    vocabulary = [t.decode() for t in tft.TFTransformOutput(str(temp / "out")).vocabulary_by_name(
        features.VOCAB_NAME)]
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
    assert first == [vocabulary.index(t) + features.NUM_RESERVED_IDS for t in ("oil", "prices", "rise", "oil")]
    assert all(len(_ids(row)) <= 4 for row in train_out)
    assert all(min(_ids(row)) >= features.NUM_RESERVED_IDS for row in train_out)
    assert [row[features.NUM_TOKENS_KEY] for row in train_out] == [7, 5, 11]
    assert [row[features.LENGTH_BUCKET_KEY] for row in train_out] == [b"short"] * 3
    assert [row[features.LABEL_KEY] for row in train_out] == [2, 2, 1]


def test_unseen_tokens_are_oov_and_empty_text_is_one_oov_token(transformed):
    _, vocabulary, new_out = transformed
    assert _ids(new_out[0]) == [features.OOV_ID, vocabulary.index("oil") + 2, features.OOV_ID, features.OOV_ID]
    assert _ids(new_out[1]) == [features.OOV_ID]
    assert _ids(new_out[2]) == [features.OOV_ID]
    assert features.PAD_ID not in _ids(new_out[0]) + _ids(new_out[1])


def test_title_only_text_ignores_the_description(tmp_path):
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config={"text": features.TEXT_TITLE})
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (out, _), _ = (TRAIN_ROWS, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False)
    assert [row[features.NUM_TOKENS_KEY] for row in out] == [3, 2, 2]


def test_length_buckets_edges():
    counts = tf.constant([0, 30, 31, 45, 46, 300], tf.int64)
    assert [b.decode() for b in preprocessing.length_bucket(counts).numpy()] == [
        "short", "short", "medium", "medium", "long", "long"]


def test_ngram_bag_weighs_each_distinct_1_and_2_gram_by_tf_idf(tmp_path):
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config={"ngrams": True})
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        (out, _), transform_fn = (TRAIN_ROWS, RAW_METADATA) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "out"))
    ngrams = [t.decode() for t in tft.TFTransformOutput(str(tmp_path / "out")).vocabulary_by_name(
        features.NGRAM_VOCAB_NAME)]
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
    assert features.NGRAM_IDS_KEY not in train_out[0] and features.NGRAM_WEIGHTS_KEY not in train_out[0]
