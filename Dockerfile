# syntax=docker/dockerfile:1
# aihub: one image for every role. The default command serves HTTP and WebSocket with daphne; docker-compose.yml
# runs the same image as `celery -A aihub worker`, `celery -A aihub beat` and a one-shot `migrate`.

# --- builder: every dependency into a virtual environment that the runtime stage copies whole ----------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Requirements alone first, so that code changes do not reinstall them.
COPY requirements.txt /tmp/requirements.txt
# torch from PyTorch's CPU index first (requirements.txt pins the same version): from PyPI it is the CUDA build,
# gigabytes the local embedding model does not use.
RUN pip install --upgrade pip \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==$(sed -n 's/^torch==//p' /tmp/requirements.txt)" \
    && pip install -r /tmp/requirements.txt

# --- runtime: the virtual environment, the code and the static files; no compiler, no pip cache ---------------
FROM python:3.11-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_DEBUG=false \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    AIHUB_VAR_DIR=/var/lib/aihub

RUN groupadd --system aihub \
    && useradd --system --gid aihub --home-dir /app --no-create-home --shell /usr/sbin/nologin aihub \
    && mkdir -p /var/lib/aihub \
    && chown aihub:aihub /var/lib/aihub

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root: the server can read it but not change it. Only AIHUB_VAR_DIR is writable.
COPY . /app

# Static files are part of the image (WhiteNoise serves them). The secret key only satisfies the production
# checks of settings.py during this step; it is not kept in the image and never signs anything.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret-0123456789abcdef \
    DJANGO_ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput --verbosity 1

USER aihub
VOLUME ["/var/lib/aihub"]
EXPOSE 8000

# Django answers only to DJANGO_ALLOWED_HOSTS, so the probe sends the first of them as its Host header.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host = (os.environ.get('DJANGO_ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.').replace('*', 'localhost'); urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/api/v1/health', headers={'Host': host}), timeout=4)"]

# A command rather than an entry point, so the worker, beat and migrate services can replace it. The endpoint
# form sets the listen backlog: with Twisted's default of 50, a burst of connections overflows it and the kernel
# drops the rest (clients see connection resets).
CMD ["daphne", "-e", "tcp:port=8000:interface=0.0.0.0:backlog=1024", "aihub.asgi:application"]
