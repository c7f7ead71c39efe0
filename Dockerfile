# The serving image. It trains the model during the build (continuous training: the quality gate
# failing fails the build) and ships only what serves it. `make docker` builds it; see README "Docker".
#
#   deps     a virtual environment with the runtime requirements (what the server imports)
#   train    deps + gcc + the training requirements + the dataset -> /opt/model (the artifact)
#   slim     the deps venv without what the server never imports (measured in issue 17)
#   runtime  the base image + the slim venv + service/ and model/ + the artifact, as a non-root user
#
# Build args: PYTHON_IMAGE (base), MAX_TEST_RMSE (override the quality gate's bound),
# GIT_REVISION and MODEL_VERSION (the build's identity: labels, and /ready's `revision`).
# No `# syntax=` line: the engine's built-in frontend is used.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
# The venv's python comes first on PATH; whatever python the base image has is only used to create it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

FROM base AS deps
# No pip or setuptools inside the venv (23 MB the server never uses): the base image's pip installs
# into it with --python.
RUN python -m venv --without-pip /opt/venv
# Only the requirement files are copied first, so a code change never reinstalls dependencies.
# requirements/runtime.txt alone decides what the server gets.
COPY constraints.txt /src/
COPY requirements/runtime.txt /src/requirements/
# The libraries' own test suites (about 65 MB, mostly scipy's) are never imported by the server.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    pip --python /opt/venv/bin/python install -c /src/constraints.txt -r /src/requirements/runtime.txt \
    && find /opt/venv -depth -type d -name tests -exec rm -rf {} +

FROM deps AS train
# gcc compiles the forest evaluator (model/treeeval.c) into the artifact, so the runtime stage needs
# no compiler; LightGBM's wheel links OpenMP (libgomp1). This stage is never shipped.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/train.txt /src/requirements/
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    pip --python /opt/venv/bin/python install -c /src/constraints.txt -r /src/requirements/train.txt
# `make docker` stages the host's scikit-learn cache in .build-data/ (ignored by git). The glob lets
# the build go on without it (a plain `docker build` from a fresh clone); scikit-learn then downloads
# the dataset into the same folder, as it would on a laptop.
COPY .build-dat[a] /data/
ENV SCIKIT_LEARN_DATA=/data/scikit_learn_data
WORKDIR /src
COPY model/ /src/model/
# model.train reads MAX_TEST_RMSE from the environment; unset, its own default bound applies.
# `--build-arg MAX_TEST_RMSE=...` tightens the gate (the tests set an impossible one to prove it fails the build).
ARG MAX_TEST_RMSE
# Training publishes a link to a versioned folder (model/artifact.py); an image is never republished,
# so the one folder it published becomes /opt/model itself, a plain folder.
# Whatever mode training left (umask-dependent), the non-root server may read the artifact and nobody may write it.
RUN python -m model.train --out /opt/published/model \
    && mv "$(readlink -f /opt/published/model)" /opt/model \
    && chmod -R a+rX,go-w /opt/model

FROM deps AS slim
# The deps venv cut to what the server imports; training keeps the whole venv (its libraries use
# numpy.random, numpy.linalg and more). Measured in the deps venv (bench/results.md, issue 17):
# numpy is 56 MB of its 77 MB, 25 MB of that OpenBLAS, which numpy's core links and so stays.
# - numpy's developer tools, which no numpy function imports: f2py, distutils, the C headers, the
#   typing stubs, the SIMD test module. Not numpy.ma, .random, .fft or .polynomial (about 6 MB):
#   numpy reaches them lazily from everyday functions (np.unique imports numpy.ma), so an image
#   without them imports fine and fails on the first such call;
# - debug and symbol tables of the compiled modules (strip keeps the dynamic symbols imports use);
#   not of the libraries auditwheel vendored into *.libs/: patchelf rewrote their program headers,
#   and stripped they no longer load ("ELF load command address/offset not page-aligned");
# - C, Cython and stub sources shipped beside the compiled modules, and gevent's test helpers.
# __pycache__ stays for what remains: the image runs with PYTHONDONTWRITEBYTECODE, so without it
# every worker would compile its imports again at each start.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
# the venv's site-packages; the test below fails the build if the base image's Python moves on
WORKDIR /opt/venv/lib/python3.11/site-packages
RUN site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && test "$site" = "$PWD" \
    && rm -rf numpy/f2py numpy/distutils numpy/_pyinstaller numpy/doc numpy/typing numpy/conftest.py \
       numpy/_core/include numpy/_core/lib numpy/_core/_simd.*.so gevent/testing \
    && find "$site" \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.c' -o -name '*.h' \) \
       -type f -delete \
    && find "$site" -type f -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
    && python -c 'import numpy, flask, gevent.monkey, gunicorn.workers.ggevent, prometheus_client'

FROM base AS runtime
# A fixed uid/gid so file ownership and the server's security policy can name it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
COPY --from=slim /opt/venv /opt/venv
WORKDIR /app
# The server imports only the schema, the artifact checks, the drift reference (profile.py) and the
# lean predictor (numpy and the compiled evaluator) from model/; training code stays out.
COPY model/__init__.py model/schema.py model/artifact.py model/features.py model/runtime.py model/profile.py /app/model/
COPY service/ /app/service/
COPY --from=train /opt/model /opt/model
ENV PYTHONPATH=/app \
    MODEL_DIR=/opt/model \
    HOST=0.0.0.0 \
    PORT=8080
USER 10001:10001
EXPOSE 8080
# The image has no curl to rely on (python:slim ships none); the venv's python asks /health instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]
# gunicorn is PID 1: SIGTERM (docker stop) makes it stop accepting, drain in-flight requests within
# the graceful timeout set in service/gunicorn_conf.py (GRACEFUL_TIMEOUT), and exit 0.
# --no-control-socket: gunicorn's runtime-management socket would go under $HOME, which this user
# does not have; nothing in a container drives it (docker restarts, the orchestrator scales).
CMD ["gunicorn", "--no-control-socket", "-c", "python:service.gunicorn_conf", "service:create_app()"]
# The build's identity, last so a new revision rebuilds no layer above. GIT_REVISION is the commit
# (served by /ready as `revision`); MODEL_VERSION, when the caller knows it (CI trains the same
# inputs first, and training is deterministic), is checked against the artifact just trained, so
# the label cannot lie. The image's tag is its content hash (infra/release.py), never the revision.
ARG GIT_REVISION=unknown
ARG MODEL_VERSION=""
RUN python -c 'import json, os, sys; want = os.environ.get("MODEL_VERSION"); got = json.load(open("/opt/model/metadata.json"))["model_version"]; sys.exit(f"MODEL_VERSION={want} but the trained model is {got}" if want and want != got else None)'
ENV GIT_REVISION=${GIT_REVISION}
LABEL org.opencontainers.image.title="cali-housing" \
      org.opencontainers.image.description="California Housing price model served over HTTP" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.version="${MODEL_VERSION}"
