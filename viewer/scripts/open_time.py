#!/usr/bin/env python3
"""How long a report bundle takes to open in headless Chromium from file://: from the start of the
navigation until the overview's cluster cards are in the page (performance.now() in the page, polled
every 5 ms inside the page). Uses Debian's chromium and chromium-driver through the W3C WebDriver
protocol (standard library only).

    python3 viewer/scripts/open_time.py /abs/path/BUNDLE/index.html [--runs 5]
"""
import argparse
import json
import socket
import statistics
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["value"]


WAIT = """
const done = arguments[arguments.length - 1];
const t0 = performance.now();
(function poll() {
  if (document.querySelector('[data-testid=cluster-card]')) { done(performance.now()); return; }
  if (performance.now() - t0 > 30000) { done(-1); return; }
  setTimeout(poll, 5);
})();
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                call(base, "GET", "/status")
                break
            except OSError:
                time.sleep(0.05)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]}}}}
        session = call(base, "POST", "/session", caps)["sessionId"]
        s = f"/session/{session}"
        call(base, "POST", s + "/timeouts", {"script": 60000, "pageLoad": 60000})
        times = []
        for _ in range(a.runs + 1):
            call(base, "POST", s + "/url", {"url": "about:blank"})
            call(base, "POST", s + "/url", {"url": "file://" + a.index})
            t = call(base, "POST", s + "/execute/async", {"script": WAIT, "args": []})
            times.append(t)
        call(base, "DELETE", s)
        timed = times[1:]  # the first run warms the browser's caches
        print(f"open times (ms, navigation start to the cluster cards): {', '.join(f'{t:.0f}' for t in timed)}; "
              f"median {statistics.median(timed):.0f} ms (first, cold: {times[0]:.0f} ms)")
    finally:
        driver.kill()


if __name__ == "__main__":
    main()
