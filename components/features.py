"""The one source of truth for feature names, labels, vocabulary size and token ids."""

TITLE_KEY = "title"
DESCRIPTION_KEY = "description"
TEXT_KEYS = (TITLE_KEY, DESCRIPTION_KEY)
LABEL_KEY = "label"

# AG News class index 1..4 in the CSV files is label 0..3 everywhere after ingestion.
LABEL_NAMES = ("World", "Sports", "Business", "Sci/Tech")
NUM_CLASSES = len(LABEL_NAMES)

# ExampleGen's splits. The train files are hash-split into train (fitting), eval (early
# stopping, learning-rate cuts and the push gate) and holdout (read only by its own Evaluator:
# the accuracy users are told). Test files, when given, are a split of their own.
TRAIN_SPLIT, EVAL_SPLIT, HOLDOUT_SPLIT, TEST_SPLIT = "train", "eval", "holdout", "test"

# Which raw text the model reads: the mission's model reads both fields; the lesson's
# first models read the title alone.
TEXT_TITLE_AND_DESCRIPTION = "title+description"
TEXT_TITLE = "title"
TEXT_CHOICES = (TEXT_TITLE_AND_DESCRIPTION, TEXT_TITLE)

# Transform's outputs.
TOKEN_IDS_KEY = "token_ids"
NUM_TOKENS_KEY = "num_tokens"
LENGTH_BUCKET_KEY = "length_bucket"  # for TFMA slices: text length in tokens
SHORT_MAX_TOKENS = 30  # short: at most 30 tokens
MEDIUM_MAX_TOKENS = 45  # medium: 31-45; long: more

# Token ids: 0 pads a batch, 1 is any token outside the vocabulary, and the
# vocabulary's most frequent tokens take ids 2 .. VOCAB_SIZE - 1.
PAD_ID = 0
OOV_ID = 1
NUM_RESERVED_IDS = 2
VOCAB_SIZE = 20_000
VOCAB_NAME = "tokens"
DEFAULT_MAX_TOKENS = 256
DEFAULT_MIN_TOKEN_COUNT = 1  # a token must occur this often in train to get its own id

# The bag of word n-grams the linear models read: ids of the NGRAM_VOCAB_SIZE - 1 most
# frequent 1- and 2-grams of the training text seen at least NGRAM_MIN_COUNT times (the
# last id stands for every other n-gram), each with its TF-IDF weight in the example.
NGRAM_IDS_KEY = "ngram_ids"
NGRAM_WEIGHTS_KEY = "ngram_weights"
NGRAM_VOCAB_NAME = "ngrams"
NGRAM_VOCAB_SIZE = 200_000
NGRAM_RANGE = (1, 2)
NGRAM_MIN_COUNT = 2

# Serving signature names and outputs.
SERVING_DEFAULT = "serving_default"
SERVING_TF_EXAMPLE = "serving_tf_example"
TRANSFORM_FEATURES = "transform_features"
# Serialized tf.Examples in, probabilities and class id out: what batch scoring (`agnews score`,
# TFX's BulkInferrer) runs. tfx_bsl's RunInference splits every output into one tensor per
# example and fails on a per-example string, so this signature has no label name.
BATCH_SCORING = "batch_scoring"
PROBABILITIES_KEY = "probabilities"
CLASS_ID_KEY = "class_id"
LABEL_NAME_KEY = LABEL_KEY  # the class name, under the name clients know the label by
