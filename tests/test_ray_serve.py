"""server/ray_serve.py: `arr serve --ray ADDRESS --replicas 2` on a real local Ray cluster (started
here on loopback with two CPUs, shut down after) answers as `arr serve` does."""

import os
import signal
import subprocess
import sys
import time

import pytest

from arretrieve.errors import ArrError
from arretrieve.index import IndexStore, build_index
from index_helpers import SMALL_SHARDS, corpus

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

QUERIES = ["yaml python library", "fonts", "compression library development"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(process, url: str, log_path) -> None:
    deadline, last = time.monotonic() + 60, None
    while True:
        try:
            last = httpx.get(url + "/health", timeout=2)
            if last.status_code == 200:
                return
            last = f"{last.status_code} {last.text}"
        except httpx.TransportError as exc:
            last = repr(exc)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the replicas did not start (last answer: {last}):\n" + log_path.read_text())
        time.sleep(0.5)


def test_two_replicas_answer_search_as_arr_serve_does(tmp_path, registry, cluster):
    from fastapi.testclient import TestClient

    from arretrieve.server.app import build_app

    build_index(corpus(tmp_path), name="docs", model="tiny", encoding=SMALL_SHARDS, registry=registry)
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "arretrieve.cli.app", "serve", "--index", "docs", "--ray", cluster,
                                    "--replicas", "2", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, url, log_path)
        for _ in range(120):  # /health answers as soon as one replica does
            replicas = serve.status().applications["arretrieve"].deployments["arretrieve"].replica_states
            if replicas == {"RUNNING": 2}:
                break
            time.sleep(0.5)
        assert replicas == {"RUNNING": 2}
        local = TestClient(build_app(["docs"], IndexStore(), registry, "auto", None, None, "127.0.0.1"),
                           base_url="http://127.0.0.1")
        for query in QUERIES:
            assert httpx.get(url + "/search", params={"q": query, "k": 5}).json() == \
                local.get("/search", params={"q": query, "k": 5}).json()
        batch = {"queries": QUERIES, "k": 3}
        assert httpx.post(url + "/search", json=batch).json() == local.post("/search", json=batch).json()
        unknown = {"q": "x", "index": "nope"}  # the app's own errors
        remote, expected = httpx.get(url + "/search", params=unknown), local.get("/search", params=unknown)
        assert (remote.status_code, remote.json()) == (expected.status_code, expected.json())
        assert httpx.get(url + "/health", headers={"host": "evil.example"}).status_code == 421  # and its Host check
    finally:
        process.send_signal(signal.SIGINT)  # the command takes its replicas down with it
        process.wait(timeout=120)
    assert process.returncode == 0, log_path.read_text()
    with pytest.raises(httpx.TransportError):  # the proxy went with the application
        httpx.get(url + "/health", timeout=2)


def test_ray_serve_refusals_are_one_line(tmp_path, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    ran = CliRunner().invoke(app, ["serve", "--replicas", "2"])
    assert isinstance(ran.exception, ArrError) and "--replicas sets the Ray Serve replicas of --ray" in str(ran.exception)
    from arretrieve.server.ray_serve import deploy

    with pytest.raises(ArrError, match="--replicas must be at least 1"):
        deploy([], replicas=0)
    with pytest.raises(ArrError, match="lets other machines in"):
        deploy([], replicas=1, host="0.0.0.0")
