"""The buffering front of `serve`: nginx on SageMaker's port, handing only complete requests to gunicorn.

Why a front (the layout of AWS's own bring-your-own examples): gunicorn's request threads read a request
while the client sends it, so 40 clients sending their headers a byte at a time held every thread and /ping
stopped answering. nginx holds slow and idle connections in its event loop at no thread's cost, reads each
request whole (chunked bodies decoded, Content-Length set), and passes it to gunicorn on a Unix socket. It also
refuses malformed HTTP before the app sees it; every error it answers itself is JSON {"error": ...}.

Nothing here starts a process: config() renders the file, command() the argv (dogbreed.serve supervises).
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

# What nginx answers by itself (the app answers everything it receives). 494 is nginx's internal code for
# headers over large_client_header_buffers; 502 means gunicorn is not listening yet (workers still loading)
# or any more: SageMaker's "not ready" is a 503.
ERRORS = {
    400: (400, "malformed HTTP request (request line, headers or chunked body)"),
    404: (404, "not found: the server answers /ping, /invocations and /execution-parameters"),
    405: (405, "method not allowed: /ping answers GET and HEAD, /invocations POST"),
    411: (411, "a request body needs Content-Length or chunked Transfer-Encoding"),
    414: (414, "request line too long"),
    429: (429, "too many requests in progress at once: retry shortly"),
    494: (431, "request headers too large"),
    500: (500, "internal server error in the HTTP front; see the server log"),
    501: (501, "unsupported Transfer-Encoding"),
    502: (503, "the model server is not accepting requests (starting up or restarting)"),
    503: (503, "the model server is not accepting requests"),
    504: (504, "the model server did not answer in time"),
    505: (505, "unsupported HTTP version"),
}
HEADER_BUFFER = "8k"  # longest request line or header line; gunicorn behind accepts anything nginx passes
# Bodies up to this size stay in memory; larger ones (up to the payload limit) are buffered in a temp file, so
# many slow clients declaring 6 MB bodies cannot make nginx hold gigabytes of memory...
BODY_MEMORY_BUFFER = "512k"
# ...nor of disk: past this many requests in progress (bodies being read included), nginx answers 429 at once.
# 256 x the 6 MB payload limit is 1.5 GB of temp files; 400 stalled uploads held 2.2 GB before this limit.
MAX_REQUESTS_IN_PROGRESS = 256
SLOW_CLIENT_TIMEOUT_S = 30  # between two reads of a client's headers or body: then the connection is closed
# gunicorn closes a connection idle this long; nginx drops its idle ones sooner, so it never sends a request on
# one gunicorn is closing (a POST is not retried: the client would get a 503).
UPSTREAM_KEEPALIVE_S = 5
SHUTDOWN_TIMEOUT_S = 15  # SIGQUIT: requests in flight may finish within this (SageMaker kills after 30 s)


@dataclass(frozen=True)
class FrontConfig:
    port: int
    run_dir: Path  # gunicorn's socket, the ready marker, nginx's pid and temp files
    max_body_bytes: int
    request_timeout_s: int  # the app's own deadline answers first; nginx gives up a little later


def socket_path(run_dir: Path) -> Path:
    """gunicorn's Unix socket, the only way in to the model server."""
    return run_dir / "model.sock"


def ready_marker(run_dir: Path) -> Path:
    """Created by the first gunicorn worker that has loaded the model; until then nginx answers 503 itself
    (quietly: proxying to a socket with no worker behind would log an error for every /ping)."""
    return run_dir / "worker-ready"


def loaded_marker(run_dir: Path) -> Path:
    """Present while a worker holds the loaded model: nginx then answers GET /ping 200 itself, so no request the
    workers are busy with (every request thread decoding large images, say) can delay a ping past SageMaker's 2 s.
    Without it /ping goes to the workers, whose app says why the model is not loaded (503 with the reason)."""
    return run_dir / "model-loaded"


def _error_pages(max_body_bytes: int) -> str:
    too_large = f"request body exceeds the {max_body_bytes // 2**20} MB limit ({max_body_bytes} bytes)"
    pages = {**ERRORS, 413: (413, too_large)}
    return "".join(
        f"        error_page {code} ={status} /_error/{code};\n"
        f"        location = /_error/{code} {{ internal; return {status} '{json.dumps({'error': text})}'; }}\n"
        for code, (status, text) in pages.items()
    )


# nginx.conf for one worker process (the event loop needs far less than a core at our request rates); config()
# fills in the fields. Temp files live in the run directory; every error nginx answers itself is JSON.
NGINX_CONF = """daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 8192;
worker_shutdown_timeout {shutdown_timeout_s}s;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/json;
    server_tokens off;
    client_body_temp_path {run}/body;
    limit_conn_zone $server_port zone=requests:1m;
    limit_conn_status 429;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    client_max_body_size {max_body_bytes};
    client_body_buffer_size {body_memory_buffer};
    client_header_buffer_size 4k;
    large_client_header_buffers 4 {header_buffer};
    client_header_timeout {slow_client_timeout_s}s;
    client_body_timeout {slow_client_timeout_s}s;
    send_timeout {slow_client_timeout_s}s;
    upstream model_server {{
        server unix:{socket};
        keepalive 32;
        keepalive_timeout {upstream_idle_s}s;
    }}
    server {{
        listen 0.0.0.0:{port} reuseport backlog=1024;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_request_buffering on;
        proxy_buffers 64 16k;
        proxy_read_timeout {proxy_timeout_s}s;
        proxy_send_timeout {proxy_timeout_s}s;
        proxy_intercept_errors off;
        location = /ping {{
            if ($request_method !~ ^(GET|HEAD)$) {{ return 405; }}
            if (-f {loaded_marker}) {{ return 200; }}
            if (!-f {ready_marker}) {{ return 503; }}
            proxy_pass http://model_server;
        }}
        location / {{
            if (!-f {ready_marker}) {{ return 503; }}
            limit_conn requests {max_requests};
            error_log stderr error;  # not a warning for every body buffered to a file (any photo over 512 KB)
            proxy_pass http://model_server;
        }}
{error_pages}    }}
}}
"""


def config(front: FrontConfig) -> str:
    """nginx.conf for this server (NGINX_CONF)."""
    return NGINX_CONF.format(
        run=front.run_dir,
        port=front.port,
        max_body_bytes=front.max_body_bytes,
        proxy_timeout_s=front.request_timeout_s + 5,
        socket=socket_path(front.run_dir),
        ready_marker=ready_marker(front.run_dir),
        loaded_marker=loaded_marker(front.run_dir),
        error_pages=_error_pages(front.max_body_bytes),
        shutdown_timeout_s=SHUTDOWN_TIMEOUT_S,
        body_memory_buffer=BODY_MEMORY_BUFFER,
        max_requests=MAX_REQUESTS_IN_PROGRESS,
        header_buffer=HEADER_BUFFER,
        slow_client_timeout_s=SLOW_CLIENT_TIMEOUT_S,
        upstream_idle_s=UPSTREAM_KEEPALIVE_S - 3,
    )


def command(config_path: Path) -> list[str]:
    """nginx in the foreground with this config; startup errors go to stderr (not /var/log/nginx)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return [binary, "-e", "stderr", "-c", str(config_path)]
