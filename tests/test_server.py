"""`arr serve`: a real uvicorn process on a free loopback port, spoken to with httpx."""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
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


def _tiny_default_with_index(tiny_llama_dir) -> "arretrieve.Registry":
    """The tiny model as the registry's default, and index "one" of SENTENCES built with it."""
    registry = arretrieve.Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    registry.set_default("tiny")
    arretrieve.Index.build(SENTENCES, name="one")
    return registry


@pytest.fixture
def server(tmp_path, tiny_llama_dir):
    _tiny_default_with_index(tiny_llama_dir)
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
    explained = httpx.get(server + "/search", params={"q": "fonts", "k": 2, "index": "one", "explain": "true"}).json()
    assert explained == [h.to_dict() for h in arretrieve.Index("one").search("fonts", k=2, explain=True)]
    assert all(isinstance(h["explanation"], str) for h in explained)
    reranked = httpx.get(server + "/search", params={"q": "fonts", "k": 2, "index": "one", "rerank": "likelihood"}).json()
    assert [h["id"] for h in reranked] == [h.id for h in arretrieve.Index("one").search("fonts", k=2, rerank="likelihood")]
    assert httpx.get(server + "/search", params={"q": "fonts", "index": "one", "rerank": "cross"}).status_code == 422

    assert {i["name"] for i in httpx.get(server + "/indexes").json()} == {"one", "two"}
    assert httpx.get(server + "/indexes").json()[0]["default_mode"] == "hybrid"
    assert [m["name"] for m in httpx.get(server + "/models").json()] == ["tiny"]
    assert httpx.get(server + "/health").json() == {"status": "ok", "indexes": 2, "queued": 0}
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


# --------------------------------------------------------------------------- one client must not stall the others
@pytest.fixture
def in_process(tmp_path, tiny_llama_dir):
    """Start a server in this process (so a test can slow its model calls down); stopped after."""
    import threading

    import uvicorn

    from arretrieve.index import IndexStore
    from arretrieve.server import ServedIndexes, ServerLimits, create_app

    registry = _tiny_default_with_index(tiny_llama_dir)
    running = []

    def start(limits=ServerLimits(), host="127.0.0.1", token=None):
        served = ServedIndexes(["one"], IndexStore(), registry, limits=limits)
        app = create_app(served, token)
        app.listening_on(host)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        running.append((server, thread))
        return f"http://127.0.0.1:{port}", served

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


def _slowed(served, seconds):
    """Make every search take `seconds` on the model thread; returns the list of queries computed."""
    index = served.indexes["one"]
    computed, search_many = [], index.search_many

    def slow(queries, *args, **kwargs):
        time.sleep(seconds)
        computed.extend(queries)
        return search_many(queries, *args, **kwargs)

    index.search_many = slow
    return computed


def test_requests_whose_clients_left_are_never_computed(in_process):
    url, served = in_process()
    computed = _slowed(served, 0.6)
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(httpx.get, url + "/search", params={"q": "first", "index": "one"}, timeout=30)
        time.sleep(0.2)  # the first is on the model thread now

        def abandon(i):
            with pytest.raises(httpx.TimeoutException):
                httpx.get(url + "/search", params={"q": f"abandoned {i}", "index": "one"}, timeout=0.2)

        list(pool.map(abandon, range(8)))
        assert first.result().status_code == 200
    last = httpx.get(url + "/search", params={"q": "after", "index": "one"}, timeout=30)
    assert last.status_code == 200
    assert computed == ["first", "after"]  # none of the eight abandoned queries reached the model


def test_a_full_queue_answers_503_and_the_caps_are_enforced(in_process):
    from arretrieve.server import ServerLimits

    url, served = in_process(ServerLimits(max_batch=3, max_queued=4, max_query_chars=50, max_body_bytes=2000))
    _slowed(served, 0.5)
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(httpx.post, url + "/search", json={"queries": ["a", "b"], "index": "one"}, timeout=30)
                   for _ in range(2)]
        time.sleep(0.2)
        full = httpx.get(url + "/search", params={"q": "one more", "index": "one"}, timeout=30)
        assert full.status_code == 503 and full.headers["retry-after"] == "1" and "busy" in full.json()["error"]
        assert [w.result().status_code for w in waiting] == [200, 200]
    assert httpx.get(url + "/search", params={"q": "room again", "index": "one"}, timeout=30).status_code == 200

    cases = [
        (httpx.post(url + "/search", json={"queries": ["a"] * 4, "index": "one"}), 422, "queries"),
        (httpx.get(url + "/search", params={"q": "x" * 51, "index": "one"}), 422, "q"),
        (httpx.post(url + "/search", json={"queries": ["x" * 1500, "y" * 1500]}), 413, "over 2000 bytes"),
        (httpx.post(url + "/search", content=iter([b'{"queries": ["', b"z" * 3000, b'"]}']),
                    headers={"content-type": "application/json"}), 413, "over 2000 bytes"),  # chunked: no length
        (httpx.get(url + "/search", params={"q": "x", "index": "one"}, headers={"host": "evil.example"}), 421, "host"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
    for host in ("localhost:1234", "[::1]:80", "127.0.0.1"):
        assert httpx.get(url + "/health", headers={"host": host}).status_code == 200, host


def test_a_server_beyond_loopback_answers_only_the_allowed_names_when_given(in_process):
    from arretrieve.server import ServerLimits

    url, _ = in_process(host="0.0.0.0")
    assert httpx.get(url + "/health", headers={"host": "search.example"}).status_code == 200
    url, _ = in_process(ServerLimits(allowed_hosts=("search.example",)), host="0.0.0.0")
    assert httpx.get(url + "/health", headers={"host": "search.example:8000"}).status_code == 200
    assert httpx.get(url + "/health", headers={"host": "other.example"}).status_code == 421


def test_error_bodies_name_no_file_of_the_server(in_process, isolated_home):
    from arretrieve.server import public_message

    url, served = in_process()
    folder = served.indexes["one"].searcher.folder
    docs = folder / "docs.jsonl"
    with open(docs, "r+b") as handle:  # damaged in place: the file the server holds open
        handle.write(b"\xff\xfe not json")
    response = httpx.get(url + "/search", params={"q": SENTENCES[0], "index": "one", "mode": "bm25"})
    assert response.status_code == 400 and "docs.jsonl is corrupted at row" in response.json()["error"]
    assert str(folder) not in response.text and str(isolated_home.parent) not in response.text
    assert public_message("cannot read /srv/data/x.json: gone; see owner/name") == "cannot read x.json: gone; see owner/name"


def test_searches_during_overwrites_see_one_generation_whole(tmp_path, in_process):
    """`arr index --overwrite` and `--add` while serving: every response is all old or all new
    (ids and texts of one corpus), and once the writer is done the server answers from the last."""
    import threading

    url, _ = in_process()
    old = {str(i): s for i, s in enumerate(SENTENCES)}
    new = {f"n{i}": f"replacement {s}" for i, s in enumerate(reversed(SENTENCES))}
    stop, seen, problems = threading.Event(), set(), []

    def ask():
        while not stop.is_set():
            hits = httpx.get(url + "/search", params={"q": "fonts library", "index": "one", "k": 6}, timeout=60).json()
            sets = {"old" if old.get(h["id"]) == h["text"] else "new" if new.get(h["id"]) == h["text"] else "mixed"
                    for h in hits}
            if len(sets) != 1 or "mixed" in sets or len(hits) != len(old):
                problems.append(hits)
            seen.update(sets)

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for thread in askers:
        thread.start()
    for round in range(6):
        corpus = new if round % 2 == 0 else old
        arretrieve.Index.build(list(corpus.values()), ids=list(corpus), name="one", overwrite=True)
        time.sleep(0.2)
    stop.set()
    for thread in askers:
        thread.join()
    assert not problems, problems[0]
    assert seen == {"old", "new"}
    final = httpx.get(url + "/search", params={"q": "fonts library", "index": "one", "k": 6}).json()
    assert {h["id"] for h in final} == set(old)


def test_the_token_guards_everything_but_health_and_docs(in_process):
    url, _ = in_process(token="s3cret")
    search = {"q": "fonts", "index": "one"}
    refused = httpx.get(url + "/search", params=search)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert httpx.get(url + "/search", params=search, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/search", params=search, headers={"authorization": "Bearer s3cret"}).status_code == 200
    for open_path in ("/health", "/docs", "/openapi.json"):
        assert httpx.get(url + open_path).status_code == 200, open_path


def test_serving_beyond_loopback_needs_a_token_or_no_auth():
    from arretrieve.errors import ArrError
    from arretrieve.server import serve

    with pytest.raises(ArrError, match="give a token"):
        serve(["one"], host="0.0.0.0")
    with pytest.raises(ArrError, match="contradict"):
        serve(["one"], host="0.0.0.0", token="t", no_auth=True)


def test_documents_vectors_and_similarity_over_http(in_process):
    url, served = in_process()
    index = arretrieve.Index("one")
    doc = httpx.get(url + "/doc/2", params={"index": "one"}).json()
    assert doc == {"id": "2", "title": "", "text": SENTENCES[2], "parent": "2"}
    assert index.get("2").text == SENTENCES[2] and index.get("nope") is None
    missing = httpx.get(url + "/doc/nope")
    assert missing.status_code == 404 and "no document 'nope'" in missing.json()["error"]

    encoded = httpx.post(url + "/encode", json={"texts": ["yaml parser", "fonts"], "role": "query"}).json()
    expected = arretrieve.encode(["yaml parser", "fonts"], role="query")
    assert encoded["model"] == "tiny" and encoded["dim"] == 64
    np.testing.assert_allclose(np.array(encoded["vectors"]), expected, atol=1e-5)
    scores = httpx.post(url + "/similarity", json={"queries": ["yaml parser"], "documents": SENTENCES[:3]}).json()
    hand = expected[:1] @ arretrieve.encode(SENTENCES[:3], role="document").T
    np.testing.assert_allclose(np.array(scores["scores"]), hand, atol=1e-5)
    bad_role = httpx.post(url + "/encode", json={"texts": ["x"], "role": "i_next"})
    assert bad_role.status_code == 422
    not_json = httpx.post(url + "/encode", content=b"texts=x", headers={"content-type": "text/plain"})
    assert not_json.status_code == 422 and "the body must be a JSON object" in not_json.json()["error"]


def test_openapi_describes_responses_and_docs_need_no_network(in_process):
    url, _ = in_process()
    schema = httpx.get(url + "/openapi.json").json()
    ok = schema["paths"]["/search"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["items"]["$ref"].endswith("/HitOut")
    for name in ("HitOut", "BatchOut", "DocumentOut", "EncodeOut", "SimilarityOut", "HealthOut"):
        assert name in schema["components"]["schemas"], name
    page = httpx.get(url + "/docs").text
    assert "/docs/static/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert httpx.get(url + "/docs/static/" + asset).status_code == 200, asset


def test_where_reaches_the_search_from_both_requests(in_process):
    url, _ = in_process()
    assert httpx.get(url + "/search", params={"q": "fonts", "where": '{"section": "x"}'}).json() == []
    assert httpx.post(url + "/search", json={"queries": ["fonts"], "where": {"section": "x"}}).json() == [
        {"query": "fonts", "hits": []}]
    assert httpx.get(url + "/search", params={"q": "fonts", "where": "{not json"}).status_code == 422
    bad = httpx.post(url + "/search", json={"queries": ["fonts"], "where": {"year": {"about": 1}}})
    assert bad.status_code == 400 and "unknown operator" in bad.json()["error"]


def test_add_upsert_and_delete_over_http_with_the_served_model(in_process, monkeypatch):
    import arretrieve.encoding as encoding

    url, _ = in_process(token="t")
    auth = {"authorization": "Bearer t"}
    loads = []
    real = encoding.load_embedder
    monkeypatch.setattr(encoding, "load_embedder", lambda *a, **k: loads.append(1) or real(*a, **k))
    new = {"documents": [{"id": "n1", "text": "a brand new yaml document", "metadata": {"kind": "new"}}]}
    assert httpx.post(url + "/add", json=new).status_code == 401  # writes need the token too
    added = httpx.post(url + "/add", json=new, headers=auth, timeout=60).json()
    assert added["count"] == len(SENTENCES) + 1 and added["index"] == "one"
    hits = httpx.get(url + "/search", params={"q": "brand new yaml", "where": '{"kind": "new"}'}, headers=auth).json()
    assert [h["id"] for h in hits] == ["n1"] and hits[0]["metadata"] == {"kind": "new"}
    clash = httpx.post(url + "/add", json=new, headers=auth)
    assert clash.status_code == 400 and "upsert replaces them" in clash.json()["error"]
    replaced = {"documents": [{"id": "n1", "text": "replaced text"}], "upsert": True}
    assert httpx.post(url + "/add", json=replaced, headers=auth, timeout=60).json()["count"] == len(SENTENCES) + 1
    assert httpx.get(url + "/doc/n1", headers=auth).json()["text"] == "replaced text"
    gone = httpx.post(url + "/delete", json={"ids": ["n1", "0"]}, headers=auth).json()
    assert gone["count"] == len(SENTENCES) - 1
    assert httpx.get(url + "/doc/0", headers=auth).status_code == 404
    refused = httpx.post(url + "/delete", json={"ids": ["nope"]}, headers=auth)
    assert refused.status_code == 400 and "nothing was deleted" in refused.json()["error"]
    assert loads == []  # the served model encoded the new rows: none loaded again
