"""Text cleaning and tokenization as TensorFlow ops, so training and serving share one graph.

`normalize` turns the AG News crawl's escapes back into the text a client would send:
the crawl wrote each entity's `&` as a space ("Yahoo #39;s", "AT #38;T", " quot;"),
escaped `$` as `\\$` and wrote line breaks as a lone backslash ("touchdown\\passes",
"big\\nose"). `standardize` then mirrors Keras TextVectorization's default (lower-case,
strip punctuation) and `tokenize` splits on whitespace. Ingestion keeps the text as it
was; this module is the one place it is cleaned.
"""

import tensorflow as tf

# (pattern, replacement), applied in order: the crawl's forms first, entities next, then
# the tags they spelled.
_RESIDUE_RULES = (
    # The space before a bare entity is the crawl's `&`: put it back, so "Yahoo #39;s"
    # becomes "Yahoo's" (not "Yahoo 's", which would split off a token "s").
    (r" (#\d+|quot|amp|lt|gt|nbsp);", r"&\1;"),
    (r"\\\$", "$"),  # "C\$1": an escaped dollar sign
    (r"\\+", " "),  # any other backslash is a line break
    (r"&?#36;", "$"),
    (r"&?#(?:39|146|8217);", "'"),  # apostrophes: ASCII, cp1252, Unicode
    ("[\u2018\u2019]", "'"),  # what clients paste: curly quotes, straightened
    ("[\u201c\u201d]", '"'),
    (r"&?#38;", "&"),
    (r"&?#\d+;", " "),  # other numeric character references
    (r"&lt;", "<"),
    (r"&gt;", ">"),
    (r"&?quot;", '"'),
    (r"&nbsp;", " "),
    (r"<[^<>]{0,200}>", " "),  # HTML tags such as <b>, </b>, <a href=...>
    (r"&(?:amp;)+", "&"),  # "&amp;amp;": escaped more than once
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
