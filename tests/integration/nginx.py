"""Debian's nginx on loopback with the repository's config, and stand-in replicas to put
behind it (shared by the gateway and scale-out tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from clients.servers import Launched, free_port, launch

NGINX_DIR = Path(__file__).parents[2] / "docker" / "nginx"
#: which replica answered: lets a test tell a retried request from one served at once
UPSTREAM_HEADER = "X-Test-Upstream"


def upstream_servers(addresses: Sequence[str]) -> str:
    """The `server` lines the nginx image's entrypoint writes, from the same script."""
    script = NGINX_DIR / "upstreams.envsh"
    return subprocess.run(
        ["sh", "-c", '. "$0"; printf %s "$ALIGN_UPSTREAM_SERVERS"', str(script)],
        env=os.environ | {"ALIGN_UPSTREAM": " ".join(addresses)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def start_nginx(upstream_ports: Sequence[int], workdir: Path) -> tuple[str, subprocess.Popen]:
    """nginx in front of the given loopback ports; each answer names the replica (or
    replicas, when nginx retried) in `X-Test-Upstream`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)
    servers = upstream_servers([f"127.0.0.1:{p}" for p in upstream_ports])
    site = (
        (NGINX_DIR / "align-serve.conf.template")
        .read_text()
        .replace("${ALIGN_UPSTREAM_SERVERS}", servers)
        .replace("${NGINX_PORT}", f"127.0.0.1:{port}")
    )
    (workdir / "site.conf").write_text(site)
    # run as root (CI), the workers would be `nobody`, who cannot reach pytest's private
    # temporary folders (nginx buffers request bodies there): keep them the master's user
    user = "user root;" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(f"""
daemon off;
{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    add_header {UPSTREAM_HEADER} $upstream_addr always;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {workdir}/site.conf;
}}
""")
    process = subprocess.Popen([nginx, "-c", str(workdir / "nginx.conf"), "-p", str(workdir)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:  # not /health: a 503 there (a stand-in's dead model) marks a replica failed
            httpx.get(f"{url}/v1/models", timeout=1)
            return url, process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError((workdir / "error.log").read_text())


def stop_nginx(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


def start_stand_in(logs: Path, *flags: str) -> Launched:
    """tests/integration/stand_in_server.py on a free port, once it answers."""
    port = free_port()
    server = launch(
        ["-m", "tests.integration.stand_in_server", "--port", str(port), *flags],
        port,
        logs / f"stand-in-{port}.log",
    )
    for _ in range(200):
        try:
            httpx.get(f"{server.url}/health", timeout=1)
            return server
        except httpx.HTTPError:
            if server.process.poll() is not None:
                break
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"stand-in server did not start:\n{server.log.read_text()[-4000:]}")
