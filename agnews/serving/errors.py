"""One error type for both APIs: a gRPC status code, mapped to HTTP as TF Serving maps it.

The service raises these; each transport only encodes them: REST as `{"error": message}` with the
code's HTTP status, gRPC as the code and message.
"""

from __future__ import annotations

import grpc

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
}


class ServingError(Exception):
    """Answered as `{"error": message}` with the code's HTTP status (REST) or as the code (gRPC)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def answered(error: Exception) -> ServingError:
    """What a request that raised `error` is answered with: the error itself when the service
    raised it on purpose, else INTERNAL with its type and message (a server answers; it does not
    crash, and never sends a traceback)."""
    if isinstance(error, ServingError):
        return error
    return ServingError(
        grpc.StatusCode.INTERNAL, f"Internal error: {type(error).__name__}: {error}"
    )


def status_name(error: ServingError | None) -> str:
    """TF Serving's `status` label: the code's name, OK when there was no error."""
    return "OK" if error is None else error.code.name
