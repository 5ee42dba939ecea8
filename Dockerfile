# One image for every riverflow command: topics, simulate, replay, infer, learn.
#   docker build -t riverflow .
#   docker run --rm riverflow infer --help

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
# riverflow/deploy links to deploy/ (Prometheus, Grafana and Alertmanager files in the wheel).
COPY deploy/ deploy/
COPY riverflow/ riverflow/
COPY producers/ producers/
COPY consumers/ consumers/
COPY online_model/ online_model/
# Wheels of riverflow and all its dependencies: the runtime stage installs them with no source
# tree, build files or pip cache left behind.
RUN pip wheel --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels riverflow
# Workers need no privilege; a home directory holds River's dataset cache for `replay`.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/riverflow riverflow
USER riverflow
WORKDIR /home/riverflow
# Default metrics ports: infer 8000, learn 8001.
EXPOSE 8000 8001
ENTRYPOINT ["riverflow"]
CMD ["--help"]
