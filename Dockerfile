# One image for the three services; compose picks the service with its command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY switchyard ./switchyard
COPY services ./services
RUN pip install --no-deps -e .

USER nobody
EXPOSE 8001 8002 8003
