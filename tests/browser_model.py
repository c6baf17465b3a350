"""What headless Chromium does with a device's connections: the measurements behind
the simulated browser of tcp-layers-sim (`sim/src/client.rs`).

A small HTTP/1.1 server of this file plays a device with no limits and answers as
each measurement needs (slow images, an event stream that ends, a 503, a reset); a
page on it, driven through chromedriver, does what a camera page does. The server
sees every connection and request, so the figures are the browser's behaviour as a
device sees it:

- `peak_connections`: connections open at once while 12 images load (each answered
  after 300 ms); `requests_per_connection`: the images' requests over the connections
  they used (keep-alive reuse); `peak_connections_beside_a_stream`: the same while the
  page's EventSource is open (the stream takes one of the host's connections);
- `retried_on_reused_reset`: how often a request is sent again after the server
  reset the reused keep-alive connection it came on, before any byte of the answer
  (`fetch_ok_after_reset`: whether the page's fetch then succeeded);
- `event_source_retry_ms`: the time from a stream's end (200, one event, then the
  server closes) to the EventSource's next request, with no `retry:` field;
  `event_source_retry_field_ms`: the same after `retry: 1000`;
  `event_source_retry_after_reset_ms`: after a reset before any answer;
  `event_source_requests_after_503`: requests after a 503 answer (0: it gave up).

Run by `tests/real_network.py` (scenario `browser_model`, inside the namespace), or
alone on 127.0.0.1: `python3 tests/browser_model.py` (needs chromium and
chromedriver). The simulated browser's constants must equal these figures: with
`--check`, the script compares them with `sim/src/client.rs`.
"""
import json
import os
import re
import socket
import socketserver
import statistics
import sys
import tempfile
import threading
import time

IMAGES = 12
IMAGE_DELAY_S = 0.3
# A 1x1 GIF: the page's images load, whatever their number.
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b")

PAGE = b"""<!doctype html><meta charset="utf-8"><title>browser model</title>
<script>
window.model = {};
function later(ms) { return new Promise(r => setTimeout(r, ms)); }
async function keepAliveReset() {
  await fetch('/ka/a', {cache: 'no-store'});
  await later(200);
  try { const r = await fetch('/ka/b', {cache: 'no-store'}); return r.status; }
  catch (e) { return 0; }
}
function images(prefix) {
  return Promise.all(Array.from({length: %d}, (_, i) => new Promise(done => {
    const img = new Image();
    img.onload = img.onerror = done;
    img.src = prefix + i;
  })));
}
async function imagesBesideAStream() {
  const source = new EventSource('/es/live');
  await new Promise(open => { source.onopen = open; });
  await images('/img-beside-stream/');
  source.close();
}
function stream(path, ms) {
  return new Promise(done => {
    const source = new EventSource(path);
    setTimeout(() => { const state = source.readyState; source.close(); done(state); }, ms);
  });
}
async function measure() {
  model.fetchStatus = await keepAliveReset();
  await images('/img/');
  await imagesBesideAStream();
  const states = await Promise.all([
    stream('/es/plain', 4500), stream('/es/retry', 4500),
    stream('/es/503', 4500), stream('/es/reset', 4500)]);
  model.stateAfter503 = states[2];
  return model;
}
</script>
""" % IMAGES


class Recorder:
    """Every connection and request the server saw, with times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (time, connection id, path, number on its connection)
        self.open = 0
        self.in_flight = {}
        self.peak = {}
        self.next_id = 0

    def connection(self):
        with self.lock:
            self.next_id += 1
            self.open += 1
            return self.next_id

    def closed(self):
        with self.lock:
            self.open -= 1

    def request(self, conn, path, number):
        with self.lock:
            self.requests.append((time.monotonic(), conn, path, number))

    def busy(self, kind, delta):
        """Counts answers of `kind` in progress: each holds its connection."""
        with self.lock:
            self.in_flight[kind] = self.in_flight.get(kind, 0) + delta
            self.peak[kind] = max(self.peak.get(kind, 0), self.in_flight[kind])


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        rec = self.server.recorder
        conn = rec.connection()
        sock = self.request
        buf = b""
        number = 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ", 2)[1].decode()
                number += 1
                rec.request(conn, path, number)
                if not self.answer(sock, path, number):
                    return
        except OSError:
            return
        finally:
            rec.closed()

    def answer(self, sock, path, number):
        """Answers one request; False when the connection ends here."""
        rec = self.server.recorder
        if path == "/":
            send(sock, 200, "text/html", PAGE)
        elif path.startswith(("/img/", "/img-beside-stream/")):
            kind = path.rsplit("/", 1)[0]
            rec.busy(kind, +1)
            time.sleep(IMAGE_DELAY_S)
            rec.busy(kind, -1)
            send(sock, 200, "image/gif", GIF)
        elif path == "/ka/a":
            send(sock, 200, "text/plain", b"a")
        elif path == "/ka/b":
            if number > 1:  # a reused keep-alive connection: reset it, no answer
                reset(sock)
                return False
            send(sock, 200, "text/plain", b"b")
        elif path in ("/es/plain", "/es/retry"):
            body = (b"retry: 1000\n" if path == "/es/retry" else b"") + b"data: x\n\n"
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-store\r\nConnection: close\r\n\r\n" + body)
            sock.shutdown(socket.SHUT_WR)
            return False
        elif path == "/es/live":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-store\r\n\r\n: open\n\n")
            # Until the page closes it (or 20 s, a bound for a page that hangs).
            sock.settimeout(20)
            try:
                sock.recv(1)
            except OSError:
                pass
            return False
        elif path == "/es/503":
            send(sock, 503, "text/plain", b"", close=True)
            return False
        elif path == "/es/reset":
            reset(sock)
            return False
        else:
            send(sock, 404, "text/plain", b"", close=True)
            return False
        return True


def send(sock, status, content_type, body, close=False):
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    sock.sendall(head.encode() + body)


def reset(sock):
    # SO_LINGER with a zero timeout: close() sends an RST.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def reconnect_ms(rec, path):
    """The longest gap between two requests of `path`: the reconnection time. The
    server answers (or resets) each at once, so a request's time is its end too; a
    request the browser sends again at once (a reused connection reset) is not a
    reconnect and makes no gap of its own."""
    times = sorted(t for t, _, p, _ in rec.requests if p == path)
    gaps = [b - a for a, b in zip(times, times[1:])]
    return round(max(gaps) * 1000.0, 1) if gaps else None


def measure(driver_factory, address="127.0.0.1"):
    """Runs the page in a fresh headless Chromium; returns [(metric, value, unit)]."""
    rec = Recorder()
    server = Server((address, 0), Handler)
    server.recorder = rec
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    driver = driver_factory()
    try:
        session = driver.session()
        try:
            session.navigate(f"http://{address}:{port}/")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not session.script("return !!window.measure"):
                time.sleep(0.1)
            session.driver.request("POST", session.path + "/timeouts", {"script": 30000})
            model = session.driver.request(
                "POST", session.path + "/execute/async",
                {"script": "measure().then(arguments[0])", "args": []}, timeout=40,
            ) or {}
        finally:
            session.close()
    finally:
        driver.stop()
        server.shutdown()
        server.server_close()
    image_conns = {c for _, c, p, _ in rec.requests if p.startswith("/img/")}
    images = [r for r in rec.requests if r[2].startswith("/img/")]
    b_requests = [r for r in rec.requests if r[2] == "/ka/b"]
    return [
        ("peak_connections", rec.peak.get("/img", 0), "connections"),
        ("peak_connections_beside_a_stream", rec.peak.get("/img-beside-stream", 0),
         "connections"),
        ("requests_per_connection",
         round(len(images) / len(image_conns), 2) if image_conns else None, "requests"),
        ("retried_on_reused_reset", max(0, len(b_requests) - 1), "count"),
        ("fetch_ok_after_reset", int(model.get("fetchStatus") == 200), "bool"),
        ("event_source_retry_ms", reconnect_ms(rec, "/es/plain"), "ms"),
        ("event_source_retry_field_ms", reconnect_ms(rec, "/es/retry"), "ms"),
        ("event_source_retry_after_reset_ms", reconnect_ms(rec, "/es/reset"), "ms"),
        ("event_source_requests_after_503",
         sum(1 for r in rec.requests if r[2] == "/es/503") - 1, "count"),
    ]


def sim_constants(root):
    """The simulated browser's constants, read from its source."""
    source = open(os.path.join(root, "sim", "src", "client.rs")).read()
    per_host = re.search(r"pub const CONNECTIONS_PER_HOST: usize = (\d+);", source)
    retry = re.search(r"pub const EVENT_SOURCE_RETRY: Duration = Duration::from_secs\((\d+)\);", source)
    if not per_host or not retry:
        sys.exit("browser_model: the simulated browser's constants were not found in sim/src/client.rs")
    return int(per_host.group(1)), int(retry.group(1)) * 1000


# What the simulated browser does, as goals for the measurement: (metric, op, value,
# tolerance). Times are the browser's timers, measured through a real network stack and
# a loaded machine: 20 % or 300 ms, whichever is more.
def goals(root):
    per_host, retry_ms = sim_constants(root)
    return [
        ("peak_connections", "=", per_host),
        ("peak_connections_beside_a_stream", "=", per_host - 1),
        ("requests_per_connection", "=", IMAGES / per_host),
        ("retried_on_reused_reset", "=", 1),
        ("fetch_ok_after_reset", "=", 1),
        ("event_source_retry_ms", "~", retry_ms),
        ("event_source_retry_field_ms", "~", 1000),
        ("event_source_retry_after_reset_ms", "~", retry_ms),
        ("event_source_requests_after_503", "=", 0),
    ]


def met(op, want, got):
    if got is None:
        return False
    if op == "~":
        return abs(got - want) <= max(300, want * 0.2)
    return got == want


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from real_network import ChromeDriver

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = tempfile.mkdtemp()
    figures = measure(lambda: ChromeDriver(workdir))
    want = {m: (op, v) for m, op, v in goals(root)}
    ok = True
    for metric, value, unit in figures:
        op, target = want[metric]
        good = met(op, target, value)
        ok &= good
        print(json.dumps({"scenario": "browser_model", "variant": "chromium", "metric": metric,
                          "value": value, "unit": unit, "simulated": target,
                          "agrees": good}))
    if "--check" in sys.argv and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
