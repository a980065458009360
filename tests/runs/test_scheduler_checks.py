"""`run --scheduler` against what is not a dask scheduler (#23 B5), and the dashboard's address:
a web server made dask hang, another service made it allocate exabytes."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from napari_reddino.runs import distributed as dist


class _Quiet(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _serve(server) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"tcp://127.0.0.1:{server.server_address[1]}"


class _Banner(socketserver.BaseRequestHandler):
    def handle(self):  # what an SSH or SMTP server says first
        self.request.sendall(b"SSH-2.0-OpenSSH_9.6 something else entirely\r\n" * 4)
        time.sleep(0.5)


@pytest.fixture
def http_address():
    server = HTTPServer(("127.0.0.1", 0), _Quiet)
    yield _serve(server)
    server.shutdown()


@pytest.fixture
def banner_address():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Banner)
    server.daemon_threads = True
    yield _serve(server)
    server.shutdown()


def test_a_web_server_times_out_with_a_message(http_address, monkeypatch):
    monkeypatch.setattr(dist, "SCHEDULER_TIMEOUT", 1.5)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"no answer within 1\.5 s; is a dask scheduler"):
        dist.start_client(scheduler=http_address)
    assert time.monotonic() - start < 10


def test_another_service_is_not_a_scheduler(banner_address, monkeypatch):
    monkeypatch.setattr(dist, "SCHEDULER_TIMEOUT", 3)
    with pytest.raises(ConnectionError, match="not a dask scheduler"):
        dist.start_client(scheduler=banner_address)


def test_nothing_listening_and_a_bad_address(monkeypatch):
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match="cannot reach dask scheduler"):
        dist.check_scheduler(f"tcp://127.0.0.1:{port}", 2)
    with pytest.raises(ConnectionError, match="tcp://HOST:PORT"):
        dist.check_scheduler("tcp://localhost", 2)


def test_a_real_scheduler_passes_and_the_dashboard_stays_local():
    client = dist.start_client(0)  # a LocalCluster without workers: quick
    try:
        dist.check_scheduler(client.scheduler.address, 5)
        cluster = client.cluster
        hosts = {sock.getsockname()[0]
                 for sock in cluster.scheduler.http_server._sockets.values()}
        assert hosts == {"127.0.0.1"}
        assert "127.0.0.1" in client.dashboard_link
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
