"""`arr serve`: a real uvicorn process on a free loopback port, spoken to with httpx."""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import arretrieve
from conftest import SENTENCES, tiny_entry

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path, tiny_llama_dir):
    registry = arretrieve.Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    registry.set_default("tiny")
    arretrieve.Index.build(SENTENCES, name="one")
    arretrieve.Index.build(SENTENCES[:3], ids=["a", "b", "c"], name="two")
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "arretrieve.cli.app", "serve", "--index", "one", "--index", "two",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the server did not start:\n" + (tmp_path / "server.log").read_text())
        time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_search_endpoints_give_what_arr_search_json_gives(server):
    expected = [h.to_dict() for h in arretrieve.Index("one").search(SENTENCES[1], k=3)]  # the default mode: hybrid
    got = httpx.get(server + "/search", params={"q": SENTENCES[1], "k": 3, "index": "one"}).json()
    assert [h["id"] for h in got] == [h["id"] for h in expected] and [h["rank"] for h in got] == [1, 2, 3]
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in expected], abs=1e-5)
    assert set(got[0]) == {"rank", "score", "id", "title", "text"}

    batch = httpx.post(server + "/search", json={"queries": SENTENCES[:2], "k": 2, "index": "two"}).json()
    assert [r["query"] for r in batch] == SENTENCES[:2]
    assert batch[0]["hits"][0]["id"] == "a"

    lexical = httpx.get(server + "/search", params={"q": "quick brown fox", "k": 1, "index": "one", "mode": "bm25"}).json()
    assert lexical[0]["id"] == "5"
    dense = httpx.post(server + "/search", json={"queries": ["fonts"], "k": 2, "index": "one", "mode": "dense"}).json()
    assert len(dense[0]["hits"]) == 2

    assert {i["name"] for i in httpx.get(server + "/indexes").json()} == {"one", "two"}
    assert httpx.get(server + "/indexes").json()[0]["default_mode"] == "hybrid"
    assert [m["name"] for m in httpx.get(server + "/models").json()] == ["tiny"]
    assert httpx.get(server + "/health").json() == {"status": "ok", "indexes": 2}
    assert httpx.get(server + "/docs").status_code == 200


def test_bad_requests_get_json_errors(server):
    cases = [
        (httpx.get(server + "/search", params={"q": "  ", "index": "one"}), 400, "empty query"),
        (httpx.get(server + "/search", params={"q": "fonts", "index": "nope"}), 404, "no index 'nope'"),
        (httpx.get(server + "/search", params={"q": "fonts"}), 400, "several indexes"),
        (httpx.get(server + "/search", params={"q": "fonts", "index": "one", "k": 0}), 422, "k"),
        (httpx.get(server + "/search", params={"q": "fonts", "index": "one", "k": 5000}), 422, "k"),
        (httpx.get(server + "/search", params={"index": "one"}), 422, "q"),
        (httpx.get(server + "/search", params={"q": "fonts", "index": "one", "mode": "sparse"}), 422, "mode"),
        (httpx.post(server + "/search", json={"queries": [], "index": "one"}), 422, "queries"),
        (httpx.post(server + "/search", content=b"{not json", headers={"content-type": "application/json"}), 422, ""),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"] and "Traceback" not in response.text


def test_concurrent_requests_are_safe(server):
    def ask(i):
        query = SENTENCES[i % len(SENTENCES)]
        return query, [h["id"] for h in httpx.get(server + "/search", params={"q": query, "k": 3, "index": "one"},
                                                  timeout=60).json()]

    sequential = dict(ask(i) for i in range(len(SENTENCES)))
    with ThreadPoolExecutor(8) as pool:
        for query, ids in pool.map(ask, range(32)):
            assert ids == sequential[query]
