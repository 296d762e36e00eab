# Pipeline image for Kubeflow Pipelines / Vertex AI: TFX's own image of the pinned version,
# plus this project and its locked dependencies. Build from the repository root (.dockerignore
# keeps the context to what is copied here):
#   docker build -t REGISTRY/agnews-pipeline:TAG . && docker push REGISTRY/agnews-pipeline:TAG
# It is also the Dataflow workers' image in compiled pipelines (--sdk_container_image): TFX's
# image keeps Beam's worker boot entrypoint, and the workers' Python is the one agnews is
# installed in (RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: no per-worker virtualenv).
FROM gcr.io/tfx-oss-public/tfx:1.16.0

ENV TF_USE_LEGACY_KERAS=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    PYTHONDONTWRITEBYTECODE=1 \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1
WORKDIR /pipeline
RUN python -m pip install --no-cache-dir uv
COPY pyproject.toml uv.lock README.md ./
# The locked versions go into the image's own Python, which runs the TFX executors; compiled to
# bytecode here, since PYTHONDONTWRITEBYTECODE would have every task compile them again.
RUN uv export --frozen --no-dev --no-hashes --no-emit-project --extra kubeflow > /tmp/requirements.txt \
    && uv pip install --system --no-cache --compile-bytecode -r /tmp/requirements.txt
COPY components components
COPY pipeline pipeline
COPY agnews agnews
COPY schemas schemas
COPY data data
RUN uv pip install --system --no-cache --compile-bytecode --no-deps .
