"""Keeps known, harmless TensorFlow and TFX messages out of what `agnews` prints.

TF 2.16 registers its CUDA plugins twice and logs each at ERROR level ("Unable to register
cuFFT factory ..."), even on machines without a GPU, and its oneDNN build logs an ERROR line
the first time a graph has an int64 op. Raising TF_CPP_MIN_LOG_LEVEL to 3 would also hide real
errors, so instead stderr is captured around the code that prints them and everything but
these known lines is written back. TFX 1.16's LocalDagRunner logs a warning per artifact query
that it cannot push a property filter into MLMD (it filters in Python instead).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

# What TensorFlow prints that says nothing about the user's run.
TENSORFLOW_NOISE = re.compile(
    rb"Unable to register (cuFFT|cuDNN|cuBLAS) factory"
    rb"|All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|oneDNN supports DT_INT64 only on platforms with AVX-512"
)
TFX_NOTICES = ("ArtifactQuery.property_predicate is not supported",)


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern = TENSORFLOW_NOISE):
    """Captures file descriptor 2 (C++ logs write there directly) and replays every line that
    does not match `noise` when the block ends, also when it raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(
                line for line in captured.read().splitlines(keepends=True) if not noise.search(line)
            )
            if kept:
                os.write(2, kept)


def import_tensorflow():
    """`import tensorflow`, quietly when this is the process's first import of it."""
    if "tensorflow" not in sys.modules:
        with filtered_stderr():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


class _DropTfxNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(notice in record.getMessage() for notice in TFX_NOTICES)


def drop_tfx_notices() -> None:
    """Keeps TFX_NOTICES out of the absl log (where TFX logs them)."""
    logging.getLogger("absl").addFilter(_DropTfxNotices())
