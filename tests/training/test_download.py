"""The downloader against a local HTTP server on 127.0.0.1 serving a generated catalogue."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from zsclip_train.cli import main
from zsclip_train.download import DownloadConfig, download_images
from zsclip_train.shards import iter_samples, list_shards

N_GOOD = 12


def jpeg_bytes(width: int, height: int, color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="JPEG", quality=90)
    return out.getvalue()


class Catalogue:
    """Routes -> (status, body, delay); counts requests per path."""

    def __init__(self) -> None:
        big = jpeg_bytes(600, 400)
        self.routes = {f"/good/{i}.jpg": (200, big if i == 0 else jpeg_bytes(120, 90, (i * 20, 100, 50)))
                       for i in range(N_GOOD)}
        self.routes.update({
            "/missing.jpg": (404, b"not found"),
            "/page.jpg": (200, b"<!doctype html><html><body>nope</body></html>"),
            "/truncated.jpg": (200, jpeg_bytes(200, 150)[:400]),
            "/huge.jpg": (200, b"\xff" * (1 << 20)),
            "/tiny.jpg": (200, jpeg_bytes(20, 20)),
            "/slow.jpg": (200, jpeg_bytes(100, 100)),
        })
        self.hits: Counter = Counter()
        self.good_delay = 0.0
        self.lock = threading.Lock()

    def expected_good(self) -> set:
        return {f"good{i}" for i in range(N_GOOD)}


@pytest.fixture()
def server():
    catalogue = Catalogue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            with catalogue.lock:
                catalogue.hits[self.path] += 1
            if self.path == "/slow.jpg":
                time.sleep(1.5)
            elif self.path.startswith("/good/"):
                time.sleep(catalogue.good_delay)
            status, body = catalogue.routes.get(self.path, (404, b"no"))
            try:
                self.send_response(status)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    catalogue.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield catalogue
    httpd.shutdown()
    httpd.server_close()


def write_images_json(path: Path, base: str) -> None:
    lines = [{"image": f"good{i}", "url": f"{base}/good/{i}.jpg"} for i in range(N_GOOD)]
    for name in ("missing", "page", "truncated", "huge", "tiny", "slow"):
        lines.append({"image": name, "url": f"{base}/{name}.jpg"})
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken json\n"
    path.write_text(text, encoding="utf-8")


def shard_ids(out_dir: Path) -> list:
    return [json.loads(files["json"])["image"] for shard in list_shards(out_dir) for _, files in iter_samples(shard)]


def config(tmp_path: Path, **kw) -> DownloadConfig:
    base = dict(images=tmp_path / "images.json", out_dir=tmp_path / "out", concurrency=4, timeout=0.5, retries=1,
                backoff=0.01, max_bytes=256 << 10, min_side=32, resize_side=64, shard_size=5)
    base.update(kw)
    return DownloadConfig(**base)


def test_downloader_keeps_exactly_the_good_images(server, tmp_path):
    write_images_json(tmp_path / "images.json", server.base)
    summary = download_images(config(tmp_path))
    ids = shard_ids(tmp_path / "out")
    assert sorted(ids) == sorted(server.expected_good())
    assert summary.count("ok") == N_GOOD
    assert summary.count("http_error") == 1 and summary.count("not_image") == 2
    assert summary.count("too_large") == 1 and summary.count("too_small") == 1
    assert summary.count("network_error") == 1 and summary.bad_records == 1
    assert server.hits["/slow.jpg"] == 2  # one retry after the timeout
    reasons = {json.loads(x)["image"]: json.loads(x)["reason"]
               for x in (tmp_path / "out" / "failures-0000.jsonl").read_text().splitlines()}
    assert reasons == {"missing": "http_error", "page": "not_image", "truncated": "not_image",
                       "huge": "too_large", "tiny": "too_small", "slow": "network_error"}
    # re-encoded: shorter side bounded, a valid JPEG
    for shard in list_shards(tmp_path / "out"):
        for _, files in iter_samples(shard):
            image = Image.open(io.BytesIO(files["jpg"]))
            assert image.format == "JPEG" and min(image.size) <= 64
    # a re-run fetches nothing but the transient failure
    before = Counter(server.hits)
    again = download_images(config(tmp_path))
    assert again.skipped == N_GOOD + 5 and again.count("network_error") == 1
    new_hits = server.hits - before
    assert set(new_hits) == {"/slow.jpg"}


def test_killed_download_resumes_without_refetching(server, tmp_path):
    write_images_json(tmp_path / "images.json", server.base)
    out = tmp_path / "out"
    server.good_delay = 0.15
    args = ["download", "--images", str(tmp_path / "images.json"), "--out", str(out), "--concurrency", "2",
            "--timeout", "0.5", "--retries", "0", "--min-side", "32", "--resize-side", "64", "--shard-size", "3"]
    code = "import sys; from zsclip_train.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while not list_shards(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # let a partial shard start too
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert list_shards(out), "the first run finished no shard before it was killed"
    first_hits = Counter(server.hits)

    server.good_delay = 0.0
    download_images(config(tmp_path, retries=0))
    ids = shard_ids(out)
    assert sorted(ids) == sorted(server.expected_good())  # each good image exactly once
    refetched = [p for p, n in server.hits.items() if p.startswith("/good/") and n > 1]
    assert len(refetched) <= 2, f"only in-flight requests (concurrency 2) may be repeated, got {refetched}"
    assert sum(first_hits[p] for p in first_hits if p.startswith("/good/")) >= 3


def test_cli_help_and_bad_input(tmp_path):
    runner = CliRunner()
    for command in ([], ["download"], ["prepare"], ["fit"]):
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["download", "--images", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "cannot read" in result.output
    result = runner.invoke(main, ["download", "--images", "x", "--out", "y", "--concurrency", "0"])
    assert result.exit_code == 2 and "Invalid value for '--concurrency'" in result.output


def test_cli_import_is_light():
    code = "import sys, zsclip_train.cli; assert 'torch' not in sys.modules and 'PIL' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_file_that_is_not_json_lines_is_an_error_not_an_empty_success(tmp_path: Path) -> None:
    wrong = tmp_path / "gt.json"
    wrong.write_text(json.dumps({"sample": {"a": 0, "b": 1}}, indent=1), encoding="utf-8")
    result = CliRunner().invoke(main, ["download", "--images", str(wrong), "--out", str(tmp_path / "shards"), "-q"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {wrong}: no line is")
