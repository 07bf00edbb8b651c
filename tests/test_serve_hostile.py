"""visent serve against hostile clients and broken model directories.

A real ``visent serve`` process with the descriptor limit of a small server (1024) stays answerable while 1,100
connections send nothing, half a request or a byte now and then, closes them within its header timeout, and still
scores images. A model directory is checked whole before anything is served: a damaged network or a config.json
that names a file outside its directory is one line and a non-zero exit, never a service whose every /predict fails.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import visent
from visent.model import ModelError, VisentModel
from visent.model.student import packaged_model_dir
from visent.serve import background, create_app
from visent.serve.connections import guarded_protocol

DESCRIPTORS = 1024
IDLE = 1100
HEADER_TIMEOUT = 4  # seconds: the mechanism of the default (10 s), sooner


def png(color=(200, 40, 40), side: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, "PNG")
    return buffer.getvalue()


def upload(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in named]


def closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing ``sock`` (b"" for nothing), or None while it is still open."""
    sock.setblocking(False)
    received = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return received
            received += data
    except BlockingIOError:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return received


# A real server under a flood of idle connections --------------------------------------------------------
@pytest.mark.slow
def test_idle_and_trickling_connections_do_not_take_the_server_down(tmp_path):
    log = tmp_path / "serve.log"
    # a header timeout shorter than the default (the same mechanism, sooner): the suite waits it out below
    with background("default", max_open_files=DESCRIPTORS, log=log, env={"VISENT_CACHE": str(tmp_path / "cache")},
                    options=["--header-timeout", str(HEADER_TIMEOUT)]) as url:
        host, port = url.removeprefix("http://").split(":")
        sockets: list[socket.socket] = []
        half = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; bound"
        started = time.monotonic()
        for i in range(IDLE):
            sock = socket.create_connection((host, int(port)), timeout=10)
            if i % 3 == 1:
                sock.sendall(half[:20])  # half a request line
            elif i % 3 == 2:
                sock.sendall(half)  # the headers, never finished
            sockets.append(sock)
        opened = time.monotonic() - started

        stop = threading.Event()

        def trickle() -> None:  # a byte a second on some of them: it must not extend the header timeout
            while not stop.wait(0.5):
                for sock in sockets[-60::3]:
                    try:
                        sock.send(b"x")
                    except OSError:
                        pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            latencies = []
            for _ in range(3):
                began = time.monotonic()
                response = httpx.get(url + "/health", timeout=2)
                latencies.append(time.monotonic() - began)
                assert response.status_code == 200 and response.json()["status"] == "ok"
            assert max(latencies) < 2, latencies
            response = httpx.post(url + "/predict", files=upload(("red.png", png())), timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["predictions"][0]["file"] == "red.png"

            # every idle connection is closed by the server within its header timeout (some earlier, to make room)
            deadline = started + opened + HEADER_TIMEOUT + 5
            answers: list[bytes] = []
            pending = list(sockets)
            while pending and time.monotonic() < deadline:
                still = []
                for sock in pending:
                    got = closed_by_server(sock)
                    if got is None:
                        still.append(sock)
                    else:
                        answers.append(got)
                pending = still
                time.sleep(0.25)
            assert not pending, f"{len(pending)} of {IDLE} idle connections still open after the header timeout"
            assert any(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)  # those that sent part of one
            assert all(answer == b"" or answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
        finally:
            stop.set()
            trickler.join(timeout=5)
            for sock in sockets:
                sock.close()
        assert httpx.get(url + "/health", timeout=2).status_code == 200
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "out of system resource" not in text


# The guard itself, in-process with small limits ---------------------------------------------------------
class _Uvicorn:
    """uvicorn in a thread with the guarded protocol and a /slow route that holds its connection."""

    def __init__(self, max_connections: int, header_timeout: float, idle_timeout: float = 30.0):
        import uvicorn

        self.release = threading.Event()

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            if scope["path"] == "/slow":
                await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"ok"})

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", http=guarded_protocol(max_connections, header_timeout,
                                                                                idle_timeout))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "_Uvicorn":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)


def test_half_a_request_gets_408_within_the_header_timeout_and_silence_is_closed():
    with _Uvicorn(max_connections=10, header_timeout=0.5) as server:
        silent, partial = server.connect(), server.connect()
        partial.sendall(b"GET /fast HTTP/1.1\r\nHost:")
        began = time.monotonic()
        for _ in range(4):  # trickling does not extend the deadline
            time.sleep(0.1)
            partial.sendall(b"x")
        partial.settimeout(3)
        answer = partial.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout") and b"0.5 s" in answer
        silent.settimeout(3)
        assert silent.recv(4096) == b""
        assert time.monotonic() - began < 2
        with server.connect() as fine:  # a whole request is answered
            fine.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            assert fine.recv(4096).startswith(b"HTTP/1.1 200")


def test_beyond_the_limit_idle_connections_make_room_and_busy_ones_get_a_prompt_503():
    with _Uvicorn(max_connections=4, header_timeout=30) as server:
        idle = [server.connect() for _ in range(4)]
        time.sleep(0.2)
        with server.connect() as newcomer:  # the longest idle connection is closed for it
            newcomer.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            assert newcomer.recv(4096).startswith(b"HTTP/1.1 200")
        idle[0].settimeout(2)
        assert idle[0].recv(4096) == b""
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        busy = [server.connect() for _ in range(4)]
        for sock in busy:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        began = time.monotonic()
        with server.connect() as newcomer:  # every connection is being answered: a prompt 503, then closed
            newcomer.settimeout(3)
            answer = newcomer.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable")
            assert b"retry-after: 2" in answer.lower()
            assert newcomer.recv(4096) == b""
        assert time.monotonic() - began < 1
        server.release.set()
        for sock in busy:
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.close()


def test_a_full_queue_of_uploads_is_a_prompt_503_with_retry_after_and_health_still_answers():
    model = visent.load("default")
    entered, release = threading.Event(), threading.Event()
    predict = model.predict

    def slow(images, *args, **kwargs):
        entered.set()
        release.wait(10)
        return predict(images, *args, **kwargs)

    model.predict = slow
    app = create_app(model, max_concurrent=1, max_queued=0)
    first: list[int] = []
    thread = threading.Thread(target=lambda: first.append(
        TestClient(app).post("/predict", files=upload(("a.png", png()))).status_code))
    thread.start()
    try:
        assert entered.wait(10)
        client = TestClient(app)
        began = time.monotonic()
        response = client.post("/predict", files=upload(("b.png", png())))
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert "busy" in response.json()["detail"]
        assert client.get("/health").status_code == 200
        assert time.monotonic() - began < 2
    finally:
        release.set()
        thread.join(timeout=30)
    assert first == [200]


# Broken model directories -------------------------------------------------------------------------------
@pytest.fixture
def model_copy(tmp_path) -> Path:
    """The shipped model, copied to be damaged."""
    directory = tmp_path / "model"
    shutil.copytree(packaged_model_dir(), directory)
    return directory


def run_visent(*args: str, tmp_path: Path, timeout: float = 120) -> tuple[int, list[str]]:
    env = {**os.environ, "VISENT_CACHE": str(tmp_path / "cache"), "COLUMNS": "400"}
    result = subprocess.run([sys.executable, "-m", "visent", *args], capture_output=True, text=True, timeout=timeout,
                            env=env, check=False)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result.returncode, [line for line in output.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_garbage_network_is_one_line_from_load_serve_and_predict(model_copy, tmp_path):
    (model_copy / "backbone.onnx").write_bytes(os.urandom(4096))
    with pytest.raises(ModelError) as caught:
        VisentModel.load(model_copy)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{model_copy / 'backbone.onnx'}: not a network visent can run" in message
    assert "visent train" in message

    image = tmp_path / "red.png"
    image.write_bytes(png())
    port = free_port()
    code, lines = run_visent("serve", str(model_copy), "--port", str(port), tmp_path=tmp_path)
    assert code != 0 and len(lines) == 1, lines
    assert "backbone.onnx: not a network visent can run" in lines[0] and "visent train" in lines[0]
    code, lines = run_visent("predict", str(model_copy), str(image), tmp_path=tmp_path)
    assert code != 0 and len(lines) == 1, lines
    assert "backbone.onnx: not a network visent can run" in lines[0]


def test_a_model_that_cannot_score_is_refused_before_serving(model_copy, monkeypatch):
    model = VisentModel.load(model_copy)

    def broken(*args, **kwargs):
        raise ValueError("X has 7 features, but the head expects 2576")

    monkeypatch.setattr(model.head, "predict_proba", broken)
    with pytest.raises(ModelError, match=r"the model cannot score an image \(ValueError: X has 7 features"):
        model.check()


@pytest.mark.parametrize("field", ["graph.file", "int8_calibration"])
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_config_paths_outside_the_model_directory_are_refused(model_copy, tmp_path, field, kind):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(model_copy / "backbone.onnx", outside)
    if kind == "absolute":
        name = str(outside)
    elif kind == "dotdot":
        name = "../elsewhere.onnx"
    else:
        (model_copy / "link.onnx").symlink_to(outside)
        name = "link.onnx"
    config = json.loads((model_copy / "config.json").read_text())
    if field == "graph.file":
        config["graph"]["file"] = name
    else:
        config["int8_calibration"] = name
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError) as caught:
        VisentModel.load(model_copy)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{model_copy / 'config.json'}: {field} {name!r}")
    assert "outside the model directory" in message


def test_a_symlink_inside_the_model_directory_is_fine(model_copy):
    (model_copy / "backbone.onnx").rename(model_copy / "network.onnx")
    (model_copy / "backbone.onnx").symlink_to("network.onnx")
    assert VisentModel.load(model_copy).predict([Image.new("RGB", (40, 40), (9, 99, 199))])["status"][0].as_py() == "ok"


@pytest.mark.slow
def test_cli_predict_refuses_a_config_path_outside_in_one_line(model_copy, tmp_path):
    config = json.loads((model_copy / "config.json").read_text())
    config["graph"]["file"] = "/etc/passwd"
    (model_copy / "config.json").write_text(json.dumps(config))
    image = tmp_path / "red.png"
    image.write_bytes(png())
    code, lines = run_visent("predict", str(model_copy), str(image), tmp_path=tmp_path)
    assert code != 0 and len(lines) == 1, lines
    assert "config.json: graph.file '/etc/passwd' points outside the model directory" in lines[0]


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                          ("0.0.0.0", True), ("::", True), ("192.0.2.7", True)])
def test_serve_warns_when_it_listens_beyond_this_machine(host, warned, monkeypatch):
    """`visent serve --host 0.0.0.0` says that the service has no authentication and is reachable from the
    network; the options for slow clients and concurrent work reach the server."""
    from typer.testing import CliRunner

    import visent.serve
    from visent.cli import app

    ran = {}
    monkeypatch.setattr(visent.serve, "bind", lambda host, port: None)  # nothing listens in this test
    monkeypatch.setattr(visent.serve, "serve", lambda model, **kwargs: ran.update(kwargs))
    result = CliRunner().invoke(app, ["serve", "default", "--host", host, "--port", "8123", "--max-connections", "50",
                                      "--header-timeout", "3", "--max-concurrent", "2"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert ("no authentication" in output) is warned, output
    assert (ran["max_connections"], ran["header_timeout"], ran["max_concurrent"]) == (50, 3.0, 2)
    assert ran["check"] is False  # checked by the command, before its address is announced
    assert "label_pool" not in ran  # no pool, no labelling


def test_serve_passes_its_labelling_options(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import visent.serve
    from visent.cli import app

    ran = {}
    monkeypatch.setattr(visent.serve, "bind", lambda host, port: None)
    monkeypatch.setattr(visent.serve, "serve", lambda model, **kwargs: ran.update(kwargs))
    result = CliRunner().invoke(app, ["serve", "default", "--label-pool", str(tmp_path), "--labels-out",
                                      str(tmp_path / "l.csv"), "--label-strategy", "random", "--label-n", "7",
                                      "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert {k: ran[k] for k in ("label_pool", "labels_file", "label_strategy", "label_n", "seed")} == {
        "label_pool": str(tmp_path), "labels_file": tmp_path / "l.csv", "label_strategy": "random", "label_n": 7,
        "seed": 4}
