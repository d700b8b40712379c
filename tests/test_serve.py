"""`python pipeline.py serve`: a live server on a loopback port, hit with a real HTTP client."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import ROOT
from inference_setup import MAX_FRAMES, tiny_model

pytestmark = pytest.mark.slow
MAX_UPLOAD_MB = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tiny = tiny_model(tmp_path_factory)
    uploads = tmp_path_factory.mktemp("uploads")
    port = free_port()
    log = open(tmp_path_factory.mktemp("serve-log") / "serve.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pipeline.py"), "serve", "--model", tiny.run_dir,
         "--pca-dir", tiny.pca_dir, "--max-frames", str(MAX_FRAMES), "--workers", "1",
         "--port", str(port), "--temp-dir", str(uploads), "--max-upload-mb", str(MAX_UPLOAD_MB),
         "--batch-wait-ms", "50"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, open(log.name).read()
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not come up"
        time.sleep(0.5)
    yield base, tiny, uploads, proc
    proc.terminate()  # uvicorn shuts down gracefully, then re-raises SIGTERM
    assert proc.wait(timeout=30) in (0, -15)
    assert "Application shutdown complete" in open(log.name).read()
    log.close()
    assert os.listdir(uploads) == []


def post_clip(base: str, path: str, name: str | None = None) -> httpx.Response:
    with open(path, "rb") as f:
        return httpx.post(f"{base}/classify", files={"video": (name or os.path.basename(path), f)},
                          timeout=120)


def check_clip_object(obj: dict, video: str, names: list[str]) -> None:
    assert set(obj) == {"video", "labels", "random_weights"}
    assert obj["video"] == video and obj["random_weights"] is True
    assert len(obj["labels"]) == len(names)  # top 20 of a 5-class vocabulary: all of them
    assert all(l["name"] == names[l["id"]] for l in obj["labels"])
    scores = [l["score"] for l in obj["labels"]]
    assert scores == sorted(scores, reverse=True)


def test_health_and_labels(server):
    base, tiny, _, _ = server
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["classes"] == len(tiny.names)
    assert health["random_weights"] is True
    labels = httpx.get(f"{base}/labels").json()["labels"]
    assert labels == [{"id": i, "name": n} for i, n in enumerate(tiny.names)]


def test_classify_a_real_clip(server):
    base, tiny, uploads, _ = server
    response = post_clip(base, tiny.clip("carphone_pristine.mp4"))
    assert response.status_code == 200, response.text
    check_clip_object(response.json(), "carphone_pristine.mp4", tiny.names)
    # The same answer as the command line gives for the same clip and settings.
    from conftest import run_pipeline
    cli = run_pipeline("classify", tiny.clip("carphone_pristine.mp4"), "--model", tiny.run_dir,
                       "--pca-dir", tiny.pca_dir, "--max-frames", str(MAX_FRAMES), "--json",
                       "--quiet", env={"OMP_NUM_THREADS": "1"})
    assert cli.returncode == 0, cli.stderr
    import json
    (expected,) = json.loads(cli.stdout)
    assert [l["id"] for l in response.json()["labels"]] == [l["id"] for l in expected["labels"]]
    assert [l["score"] for l in response.json()["labels"]] == \
        pytest.approx([l["score"] for l in expected["labels"]], rel=1e-4)
    assert os.listdir(uploads) == []


def test_8_concurrent_requests_are_batched(server):
    base, tiny, uploads, _ = server
    before = httpx.get(f"{base}/health").json()["batches"]
    clips = ["carphone_distorted.mp4", "carphone_pristine.mp4"] * 4
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda c: post_clip(base, tiny.clip(c[1]), f"{c[0]}-{c[1]}"),
                                  enumerate(clips)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    for i, (clip, r) in enumerate(zip(clips, responses)):
        check_clip_object(r.json(), f"{i}-{clip}", tiny.names)
    # Identical clips get identical answers whatever batch they landed in.
    by_clip = {}
    for clip, r in zip(clips, responses):
        by_clip.setdefault(clip, []).append([(l["id"], round(l["score"], 5)) for l in r.json()["labels"]])
    assert all(all(x == runs[0] for x in runs) for runs in by_clip.values())
    batches = httpx.get(f"{base}/health").json()["batches"] - before
    assert 1 <= batches < 8  # some requests shared a batch
    assert os.listdir(uploads) == []


def test_bad_requests_get_specific_4xx_and_the_server_stays_up(server, tmp_path):
    base, tiny, uploads, proc = server
    url = f"{base}/classify"

    empty = httpx.post(url, content=b"", headers={"content-type": "multipart/form-data; boundary=x"})
    assert empty.status_code == 400 and "empty request body" in empty.json()["detail"]

    not_multipart = httpx.post(url, content=b"hello", headers={"content-type": "text/plain"})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["detail"]

    no_field = httpx.post(url, files={"clip": ("a.mp4", b"abc")})
    assert no_field.status_code == 400 and "no field `video`" in no_field.json()["detail"]

    empty_file = httpx.post(url, files={"video": ("a.mp4", b"")})
    assert empty_file.status_code == 400 and "is empty" in empty_file.json()["detail"]

    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    bad_media = post_clip(base, str(text))
    assert bad_media.status_code == 422
    assert bad_media.json()["detail"].startswith("notes.mp4: ") and "text" in bad_media.json()["detail"]

    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(tiny.clip("carphone_pristine.mp4"), "rb").read()[:20000])
    assert post_clip(base, str(truncated)).status_code == 422

    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(MAX_UPLOAD_MB * (1 << 20) + 4096))
    oversized = post_clip(base, str(big))
    assert oversized.status_code == 413 and "--max-upload-mb" in oversized.json()["detail"]

    # Without a Content-Length (chunked), the limit is enforced while streaming.
    def chunks():
        for _ in range(MAX_UPLOAD_MB * 16 + 2):
            yield b"--b\r\nContent-Disposition: form-data; name=\"video\"; filename=\"x.mp4\"\r\n\r\n" \
                if _ == 0 else os.urandom(65536)
    streamed = httpx.post(url, content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413

    # A client that goes away mid-upload: its partial file is removed.
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
                    b'Content-Disposition: form-data; name="video"; filename="x.mp4"\r\n\r\n'
                    + b"x" * 200000)
        deadline = time.monotonic() + 10
        while not os.listdir(uploads) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(os.listdir(uploads)) == 1  # being received
    deadline = time.monotonic() + 10
    while os.listdir(uploads) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert proc.poll() is None
    assert httpx.get(f"{base}/health").json()["status"] == "ok"
    assert post_clip(base, tiny.clip("carphone_distorted.mp4")).status_code == 200
    assert os.listdir(uploads) == []


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_timeout_answers_504_and_the_upload_is_still_removed(tmp_path_factory, tmp_path):
    """In process (the app object, a real model and extractor): a 1 ms limit cannot be met."""
    import torch
    from starlette.testclient import TestClient

    from extract.extractor import ExtractConfig, Extractor
    from model.checkpoint import load_for_inference
    from model.inference import Classifier
    from model.serve import ServeSettings, create_app

    torch.set_num_threads(1)
    tiny = tiny_model(tmp_path_factory)
    extractor = Extractor(ExtractConfig(max_frames=MAX_FRAMES, workers=1, device="cpu",
                                        random_weights=True, pca_dir=tiny.pca_dir))
    classifier = Classifier(load_for_inference(tiny.run_dir), extractor)
    # Answers come in input order even when a rejection comes before a scored clip.
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 100)
    got = list(classifier.classify([str(bad), tiny.clip("carphone_distorted.mp4"), str(bad)],
                                   ["a", "b", "c"]))
    assert [(n, type(g).__name__) for n, g in got] == [("a", "RejectedInput"), ("b", "ClipResult"),
                                                       ("c", "RejectedInput")]
    uploads = tmp_path / "uploads"
    app = create_app(classifier, ServeSettings(timeout_s=0.001, temp_dir=str(uploads)))
    with TestClient(app) as client:
        with open(tiny.clip("carphone_distorted.mp4"), "rb") as f:
            response = client.post("/classify", files={"video": ("c.mp4", f)})
        assert response.status_code == 504 and "--timeout-s" in response.json()["detail"]
        deadline = time.monotonic() + 60
        while os.listdir(uploads) and time.monotonic() < deadline:
            time.sleep(0.1)  # the batch already running finishes, then removes its file
        assert os.listdir(uploads) == []
    assert os.listdir(uploads) == []


def test_segments_and_top_k_per_request(server):
    base, tiny, _, _ = server
    with open(tiny.clip("carphone_distorted.mp4"), "rb") as f:  # under the 1 MB upload limit
        response = httpx.post(f"{base}/classify", params={"segments": "1", "top_k": "3"},
                              files={"video": ("carphone.mp4", f)}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["labels"]) == 3
    assert body["segments"][0]["start_time"] == 0 and len(body["segments"][0]["labels"]) == 3
    assert post_clip(base, tiny.clip("carphone_pristine.mp4")).json().get("segments") is None
    bad = httpx.post(f"{base}/classify?top_k=0", files={"video": ("a.mp4", b"x")}, timeout=30)
    assert bad.status_code == 400 and "top_k" in bad.json()["detail"]


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver packages")
def test_page_in_headless_chromium_shows_labels_and_a_timeline(server, tmp_path):
    """As a person would: open the page, pick a clip, ask for segments, click, read the labels."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, tiny, _, _ = server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1000,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        driver.get(base + "/")
        assert "YouTube-8M" in driver.title
        WebDriverWait(driver, 30).until(
            lambda d: "classes" in d.find_element(By.ID, "model").text)  # /health answered
        driver.find_element(By.ID, "file").send_keys(tiny.clip("carphone_pristine.mp4"))
        driver.find_element(By.ID, "segments").click()
        driver.find_element(By.ID, "go").click()
        WebDriverWait(driver, 300).until(
            lambda d: d.find_element(By.ID, "status").text in ("done",) or
            "error" in d.find_element(By.ID, "status").get_attribute("class"))
        assert driver.find_element(By.ID, "status").text == "done"
        rows = driver.find_elements(By.CSS_SELECTOR, "#labels tr.label")
        assert len(rows) == min(10, len(tiny.names))  # the page asks for the top 10
        assert rows[0].find_elements(By.TAG_NAME, "td")[0].text in tiny.names
        segments = driver.find_elements(By.CSS_SELECTOR, "#timeline .seg")
        assert len(segments) >= 1 and segments[0].text.startswith(f"0–{MAX_FRAMES} s")
        assert "randomly initialised" in driver.find_element(By.ID, "warning").text
        driver.save_screenshot(os.environ.get("PAGE_SCREENSHOT", str(tmp_path / "page.png")))
    finally:
        driver.quit()
