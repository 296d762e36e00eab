"""`agnews serve`: TF Serving's REST and gRPC APIs for pushed models, in one Python process.

Client code written against `tensorflow/serving` works unchanged against it (README). One idea per
module: `config` (which models and versions to serve: flags or a ModelServerConfig file),
`store` (loads, warms and unloads versions in the background), `batcher` (gathers concurrent
requests into one signature call), `service` (the predict path REST and gRPC share), `rest` (the
ASGI app), `grpc_api` (PredictionService and ModelService), `metrics` (Prometheus, TF Serving's
names), `request_log` (sampled PredictionLogs), `server` (wiring, signals) and `skew` (logged
requests against the training statistics).
"""
