"""Text cleaning and tokenization as TensorFlow ops, so training and serving share one graph.

`normalize` undoes the residue the AG News crawl left in its text (`#36;` for `$`,
`&lt;b&gt;` tags, ` quot;`, literal `\\n`), `standardize` then mirrors Keras
TextVectorization's default (lower-case, strip punctuation) and `tokenize` splits on
whitespace. Ingestion keeps the text as it was; this module is the one place it is cleaned.
"""
import tensorflow as tf

# (pattern, replacement), applied in order: entities first, then the tags they spelled.
_RESIDUE_RULES = (
    (r"\\n", " "),                          # escaped line breaks
    (r"&?#36;", "$"),
    (r"&?#39;", "'"),
    (r"&?#38;", "&"),
    (r"&?#\d+;", " "),                     # other numeric character references
    (r"&lt;", "<"),
    (r"&gt;", ">"),
    (r" ?&?quot;", "\""),                 # the crawl turned &quot; into " quot;"
    (r"&nbsp;", " "),
    (r"<[^<>]{0,200}>", " "),              # HTML tags such as <b>, </b>, <a href=...>
    (r"&amp;", "&"),
    (r"\s+", " "),
)

# Keras TextVectorization's DEFAULT_STRIP_REGEX.
_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


def normalize(text: tf.Tensor) -> tf.Tensor:
    """Replaces AG News crawl residue with the characters it stands for."""
    for pattern, replacement in _RESIDUE_RULES:
        text = tf.strings.regex_replace(text, pattern, replacement)
    return tf.strings.strip(text)


def standardize(text: tf.Tensor) -> tf.Tensor:
    """Lower-cases (Unicode aware) and strips punctuation like TextVectorization's default."""
    return tf.strings.regex_replace(tf.strings.lower(text, encoding="utf-8"), _PUNCTUATION, "")


def tokenize(title: tf.Tensor, description: tf.Tensor) -> tf.RaggedTensor:
    """Tokens of title + description, one ragged row per example."""
    text = tf.strings.join([normalize(title), normalize(description)], separator=" ")
    return tf.strings.split(standardize(text))
