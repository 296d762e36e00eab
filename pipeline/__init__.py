"""Pipeline definition, configuration, runners and the `agnews` command line."""

import components  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
