"""What runs against a pushed model: the `agnews` command line, predict, batch scoring, skew
and the model server. Nothing here imports TFX: the server and `predict` need TensorFlow and TF
Serving's protos only; `agnews run`, `compile` and `report` hand over to the `pipeline` package.

Keras 2 (tf-keras) is selected before TensorFlow is first imported, as `components` does, for
every entry point that starts here.
"""

import components  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
