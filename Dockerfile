# claude-code-api as one replica: the package and the Claude Code CLI bundled in its
# claude-agent-sdk wheel (no npm). docker-compose.yml runs two of these behind nginx,
# with PostgreSQL and Redis; see the README's "Several replicas".
FROM python:3.12-slim

# The bundled CLI is a native binary; it needs only the C library and CA roots.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /src

# Never root: the CLI runs as this user, in its private working directories.
RUN useradd --create-home --uid 10001 cca
USER cca
WORKDIR /home/cca
ENV CLAUDE_CODE__CLAUDE__WORK_ROOT=/home/cca/work \
    PYTHONUNBUFFERED=1

EXPOSE 8080
CMD ["claude-code-api", "serve", "--host", "0.0.0.0", "--port", "8080"]
