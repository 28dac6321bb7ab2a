# operando in a container: `docker build -t operando .`
#   docker run --rm -v "$PWD/work:/work" -w /work operando demo
#   docker run --rm -v "$PWD:/data" operando validate /data/run.yaml
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    PREFECT_HOME=/tmp/prefect

WORKDIR /opt/operando
COPY pyproject.toml README.md ./
COPY src ./src
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install "."

WORKDIR /work
ENTRYPOINT ["operando"]
CMD ["--help"]
