"""Transform's preprocessing_fn: vocabulary over the full training text, token ids per example."""

import tensorflow as tf
import tensorflow_transform as tft

from components import features, text


def _squeeze(tensor: tf.Tensor) -> tf.Tensor:
    """Raw features arrive as [batch, 1] (schema shape [1]); the graph works on [batch]."""
    return tf.reshape(tensor, [-1])


def _never_empty(token_ids: tf.RaggedTensor) -> tf.RaggedTensor:
    """Gives an empty text a single OOV token: an all-padding row would be fully masked,
    which breaks the cuDNN LSTM kernel and says nothing to the model anyway."""
    is_empty = tf.cast(tf.equal(token_ids.row_lengths(), 0), tf.int64)
    filler = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(is_empty)], tf.constant(features.OOV_ID, tf.int64)), is_empty
    )
    return tf.concat([token_ids, filler], axis=1)


def _frequency_threshold(min_count: int) -> int | None:
    """TFT's frequency_threshold for "seen at least min_count times": None at 1 or less, where
    every seen token qualifies anyway (TFT warns that a threshold of 1 does nothing)."""
    return min_count if min_count > 1 else None


def length_bucket(num_tokens: tf.Tensor) -> tf.Tensor:
    """ "short", "medium" or "long" by token count, for slicing the evaluation."""
    return tf.where(
        num_tokens <= features.SHORT_MAX_TOKENS,
        "short",
        tf.where(num_tokens <= features.MEDIUM_MAX_TOKENS, "medium", "long"),
    )


def preprocessing_fn(inputs, custom_config=None):
    """Maps raw title/description/label to `token_ids` (variable length), `num_tokens`,
    `length_bucket` and `label`.

    custom_config: `max_tokens` (length cap), `min_token_count` (rarer tokens are OOV),
    `text` (one of features.TEXT_CHOICES) and `ngrams` (also emit `ngram_bag`'s features).
    The vocabulary keeps the VOCAB_SIZE - 2 most frequent tokens of the whole text (before
    the length cap); id 0 is padding, id 1 any other token.
    Every analyzer has a `name`: TFT's analyzer cache keys carry it, so they do not depend on
    the order of the calls.
    """
    config = custom_config or {}
    max_tokens = int(config.get("max_tokens", features.DEFAULT_MAX_TOKENS))
    title = _squeeze(inputs[features.TITLE_KEY])
    description = _squeeze(inputs[features.DESCRIPTION_KEY])
    if config.get("text", features.TEXT_TITLE_AND_DESCRIPTION) == features.TEXT_TITLE:
        description = tf.zeros_like(description)  # empty strings: the title alone counts
    tokens = text.tokenize(title, description)
    vocabulary = tft.vocabulary(
        tokens,
        top_k=features.VOCAB_SIZE - features.NUM_RESERVED_IDS,
        frequency_threshold=_frequency_threshold(
            int(config.get("min_token_count", features.DEFAULT_MIN_TOKEN_COUNT))
        ),
        vocab_filename=features.VOCAB_NAME,
        name="token_vocabulary",
    )
    token_ids = (
        tft.apply_vocabulary(
            tokens[:, :max_tokens],
            vocabulary,
            default_value=features.OOV_ID - features.NUM_RESERVED_IDS,
        )
        + features.NUM_RESERVED_IDS
    )
    outputs = {
        features.TOKEN_IDS_KEY: _never_empty(token_ids).to_sparse(),
        features.NUM_TOKENS_KEY: tokens.row_lengths(),
        features.LENGTH_BUCKET_KEY: length_bucket(tokens.row_lengths()),
        features.LABEL_KEY: _squeeze(inputs[features.LABEL_KEY]),
    }
    if config.get("ngrams"):
        outputs.update(ngram_bag(tokens))
    return outputs


def ngram_bag(tokens: tf.RaggedTensor) -> dict[str, tf.SparseTensor]:
    """Each example's distinct word 1-2-grams as vocabulary ids with their TF-IDF weights, for
    the linear models (TFT's own n-gram, vocabulary and TF-IDF analyzers)."""
    ngrams = tft.ngrams(tokens.to_sparse(), features.NGRAM_RANGE, separator=" ")
    ngram_ids = tft.compute_and_apply_vocabulary(
        ngrams,
        top_k=features.NGRAM_VOCAB_SIZE - 1,
        frequency_threshold=_frequency_threshold(features.NGRAM_MIN_COUNT),
        num_oov_buckets=1,
        vocab_filename=features.NGRAM_VOCAB_NAME,
        name="ngram_vocabulary",
    )
    ids, weights = tft.tfidf(ngram_ids, features.NGRAM_VOCAB_SIZE, name="ngram_tfidf")
    return {features.NGRAM_IDS_KEY: ids, features.NGRAM_WEIGHTS_KEY: weights}
