"""`agnews serve`: TF Serving's REST and gRPC APIs for pushed models, in one Python process.

Client code written against `tensorflow/serving` works unchanged against it (docs/serving.md).
One idea per module: `model_config` (which models and versions to serve: flags or a
ModelServerConfig file), `store` (loads, warms and unloads versions in the background, through
`agnews.versions`), `batcher` (gathers concurrent requests into one signature call), `service`
(what both APIs answer: the predict request and its checks, metadata, status, request metrics),
`rest` and `grpc_api` (each decodes its API's requests for the service and encodes its answers),
`errors` (one error type, as a gRPC status and as an HTTP one), `metrics` (Prometheus, TF
Serving's names), `request_log` (sampled PredictionLogs) and `server` (wiring, signals).
`agnews.skew` compares the logged requests with the training statistics.
"""
