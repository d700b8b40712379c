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


def wait_until_up(port: int, proc: subprocess.Popen, log) -> str:
    """The server's base URL once its page answers (the page needs no token)."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, open(log.name).read()
        try:
            if httpx.get(f"{base}/", timeout=2).status_code == 200:
                return base
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not come up"
        time.sleep(0.5)


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
    base = wait_until_up(port, proc, log)
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
    from model.apps.inference import Classifier
    from model.apps.serve.app import create_app
    from model.apps.serve.guard import ServeSettings
    from model.training.checkpoint import load_for_inference

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


# ---------------------------------------------------------------- a server that survives its clients

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a token, a one-place queue, 8 s per request, 2 s to send a body, at
    most 50,000 pixels a frame and 40,000 in flight (the 160x90 long clip and a 176x144 one),
    and 300 frames per clip (the long clip takes a minute; three times faster it still runs
    past the 8 s)."""
    tiny = tiny_model(tmp_path_factory)
    work = tmp_path_factory.mktemp("guarded")
    uploads = work / "uploads"
    uploads.mkdir()
    (uploads / "upload-left-by-a-crash.mp4").write_bytes(b"old")
    long_clip = str(work / "long.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i",
                    tiny.clip("bigbuckbunny.mp4"), "-t", "300", "-vf", "scale=160:-2", "-an",
                    "-c:v", "libx264", "-preset", "ultrafast", long_clip], check=True)
    port = free_port()
    log = open(work / "serve.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pipeline.py"), "serve", "--model", tiny.run_dir,
         "--pca-dir", tiny.pca_dir, "--max-frames", "300", "--workers", "1", "--port", str(port),
         "--temp-dir", str(uploads), "--token", TOKEN, "--timeout-s", "8", "--max-queue", "1",
         "--max-batch", "1", "--body-timeout-s", "2", "--max-pixels", "50000",
         "--max-pixels-in-flight", "40000"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    base = wait_until_up(port, proc, log)
    yield base, tiny, uploads, long_clip, proc.pid
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post(base: str, path: str, headers=AUTH, timeout: float = 60) -> httpx.Response:
    with open(path, "rb") as f:
        return httpx.post(f"{base}/classify", files={"video": (os.path.basename(path), f)},
                          headers=headers, timeout=timeout)


def test_token_is_required_except_for_the_page(guarded):
    base, tiny, uploads, _, _ = guarded
    assert not (uploads / "upload-left-by-a-crash.mp4").exists()  # swept at start
    assert httpx.get(f"{base}/").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.get(f"{base}/health", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert _post(base, tiny.clip("carphone_distorted.mp4"), headers).status_code == 401
    health = httpx.get(f"{base}/health", headers=AUTH).json()
    assert health["status"] == "ok" and "/" not in health["model"]  # no paths
    assert _post(base, tiny.clip("carphone_distorted.mp4")).status_code == 200


def test_frames_over_the_pixel_limit_are_refused_before_decoding(guarded):
    base, tiny, uploads, _, _ = guarded
    answer = _post(base, tiny.clip("bikes.mp4"))  # 640x272 = 174,080 pixels
    assert answer.status_code == 413 and "--max-pixels" in answer.json()["detail"]
    assert os.listdir(uploads) == []


def _wait_until_idle(base: str) -> None:
    deadline = time.monotonic() + 120
    while httpx.get(f"{base}/health", headers=AUTH).json()["pixels_in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _memory_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _encode(args: list[str], out: str) -> str:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, "-c:v", "libx264", "-preset",
                    "ultrafast", out], check=True)
    return out


def test_oversized_and_growing_clips_are_refused_without_allocating_their_frames(guarded, tmp_path):
    """One 8000x8000 frame is 96 MB in YUV and 192 MB as RGB: four such clips at once, refused
    from their headers, and meanwhile two whose frames grow to that mid-stream (one after the
    other: this server's queue holds one), raise its peak memory by less than one such frame."""
    base, _, uploads, _, pid = guarded
    huge = _encode(["-f", "lavfi", "-i", "color=c=red:s=8000x8000:r=1:d=2"], str(tmp_path / "huge.mp4"))
    small = _encode(["-f", "lavfi", "-i", "testsrc=s=160x120:r=5:d=1", "-bsf:v", "h264_mp4toannexb"],
                    str(tmp_path / "small.ts"))
    grown = _encode(["-f", "lavfi", "-i", "color=c=red:s=8000x8000:r=5:d=1", "-output_ts_offset", "1"],
                    str(tmp_path / "grown.ts"))
    growing = tmp_path / "growing.ts"  # 160x120 for a second, then 8000x8000
    growing.write_bytes(open(small, "rb").read() + open(grown, "rb").read())
    _wait_until_idle(base)  # the one-place queue must be free for the growing clips
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    start = _memory_kb(pid, "VmRSS")
    with ThreadPoolExecutor(5) as pool:
        growing_answers = pool.submit(lambda: [_post(base, str(growing)) for _ in range(2)])
        answers = list(pool.map(lambda p: _post(base, p), [huge] * 4)) + growing_answers.result()
    assert [a.status_code for a in answers[:4]] == [413] * 4, [a.text for a in answers]
    assert "8000x8000" in answers[0].json()["detail"]
    # The growing clip is refused from the headers when the probe reads as far as its growth
    # (413), else by the decoder (422): either way, naming the limit.
    assert all(a.status_code in (413, 422) and "limit of 50000" in a.json()["detail"]
               for a in answers[4:]), [a.text for a in answers]
    grew_mb = (_memory_kb(pid, "VmHWM") - start) / 1024
    assert grew_mb < 96, grew_mb  # measured: 65 MB (decoder tables of two growing clips)
    assert os.listdir(uploads) == []


def test_a_timed_out_request_stops_costing_compute_within_one_backbone_batch(guarded):
    """Measured as work, not time: after the 504, at most the backbone batch that was already
    running goes on for the cancelled request (its queued frames are dropped)."""
    base, tiny, _, long_clip, _ = guarded
    before = httpx.get(f"{base}/health", headers=AUTH).json()
    assert _post(base, long_clip).status_code == 504
    # The short clip queued right after is answered: the long one no longer holds the worker.
    answer = _post(base, tiny.clip("carphone_distorted.mp4"))
    assert answer.status_code == 200, answer.text
    after = httpx.get(f"{base}/health", headers=AUTH).json()
    assert after["cancelled"] == before["cancelled"] + 1
    late = after["frames_after_cancel"] - before["frames_after_cancel"]
    assert 0 <= late <= after["backbone_batch"], (late, after)


def test_a_slow_upload_is_cut_off_while_others_are_served(guarded):
    import socket
    from urllib.parse import urlparse

    base, tiny, _, _, _ = guarded
    port = urlparse(base).port
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                       b"Content-Length: 1000000\r\n\r\n--b\r\n")
        assert httpx.get(f"{base}/health", headers=AUTH).status_code == 200  # meanwhile
        slow.settimeout(15)
        reply = slow.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def test_a_full_queue_answers_503_with_retry_after(guarded):
    base, tiny, _, long_clip, _ = guarded
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(_post, base, long_clip)  # runs (and times out after 8 s)
        time.sleep(1.5)
        waiting = pool.submit(_post, base, tiny.clip("carphone_distorted.mp4"))  # queued
        time.sleep(0.5)
        refused = _post(base, tiny.clip("carphone_distorted.mp4"))
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert busy.result().status_code == 504
        assert waiting.result().status_code in (200, 504)


def test_a_clip_beyond_the_pixel_budget_gets_503_while_others_run(guarded, tmp_path):
    base, _, _, long_clip, _ = guarded
    clip = _encode(["-f", "lavfi", "-i", "testsrc=s=200x150:r=5:d=2"], str(tmp_path / "c.mp4"))
    _wait_until_idle(base)  # an earlier test's requests may still be in flight
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(_post, base, long_clip)  # 160x90 = 14,400 pixels, for 8 s
        deadline = time.monotonic() + 60
        while True:  # until the long clip runs (it may wait for the last clip's batch to end)
            health = httpx.get(f"{base}/health", headers=AUTH).json()
            if health["pixels_in_flight"] and not health["queued"]:
                break
            assert time.monotonic() < deadline and not busy.done()
            time.sleep(0.1)
        refused = _post(base, clip)  # 14,400 + 30,000 > 40,000
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "--max-pixels-in-flight" in refused.json()["detail"]
        assert busy.result().status_code == 504
    _wait_until_idle(base)  # the cancelled clip's last backbone batch ends, then its pixels are free
    assert _post(base, clip).status_code == 200  # alone it fits
    assert httpx.get(f"{base}/health", headers=AUTH).json()["pixels_in_flight"] == 0
