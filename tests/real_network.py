"""Real clients against the ESP32 camera app on embassy-net over a TAP device.

Run by tests/real_network.sh inside the network namespace it creates (the device at
192.168.69.2 on the TAP, this side of the link at 192.168.69.1 and, as a second
device, 192.168.69.3): every packet stays in that namespace. For each variant (the
app unlayered, then layered) it starts the host binary, runs the scenarios with real
clients (curl, wrk, slowhttptest, headless Chromium through chromedriver, Linux's own
TCP from Python) and stops it. Prints a table, or with --json one JSON object per
figure in the showcase's shape; with --check exits 1 when a checked goal is missed.

Timing is measured, never asserted tightly: every wait is bounded in count and time,
and the goals leave room for a loaded machine.
"""
import argparse
import errno
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

DEVICE = "192.168.69.2"
HOST_A = "192.168.69.1"  # this side of the TAP: device A (and the probes)
HOST_B = "192.168.69.3"  # a second address on the same link: device B
# More devices. The device's neighbour (ARP) cache holds 8 addresses (smoltcp's
# default): a client beyond them waits for an ARP round, rate-limited to one a second,
# so every client of this script comes from one of 7 addresses. Four connections per
# address stay within a device's share of sockets (the limit layer's per_peer, 6).
DEVICES = ["192.168.69.6", "192.168.69.7"] * 4  # fill every socket, 4 per address
PROBES = ["192.168.69.4", "192.168.69.5"] * 4  # count listening sockets
SLOW_READER = "192.168.69.8"
PORT = 80
SOCKETS = 8  # the ESP32-S3 profile the binary runs with
LINGER_MS = 2000  # the timewait layer's linger (TimeWaitLayer::new())
STALL_MS = 5000  # the reaper's write-stall deadline (ReaperConfig::http())
BOUND_S = 20.0  # longest wait for a held socket; past it the figure is "held"
# Each server the app can be served by (camera-tap --server), unlayered and layered.
# The default run is picoserve's pair; --variant picks others.
VARIANTS = {
    "picoserve": ["--unlayered"],
    "picoserve_layered": [],
    "hand_written": ["--server", "hand-written", "--unlayered"],
    "hand_written_layered": ["--server", "hand-written"],
    "edge_http": ["--server", "edge-http", "--unlayered"],
    "edge_http_layered": ["--server", "edge-http"],
}
DEFAULT_VARIANTS = ["picoserve", "picoserve_layered"]


def is_layered(variant):
    """Goals are the layered variants' to meet."""
    return variant.endswith("_layered")

# Goals of every layered variant, (operator, value); --check fails on a miss.
GOALS = {
    ("correctness", "exact_responses"): ("=", 40),
    ("throughput", "errors"): ("=", 0),
    ("cancels", "cut_mid_transfer"): ("=", 30),
    ("cancels", "warn_lines"): ("=", 0),
    ("cancels", "cancels_counted"): ("=", 30),
    ("slowloris", "legit_ok_ratio"): (">=", 0.99),
    ("slowloris", "first_ok_ms"): ("<=", 2000),
    ("slowloris", "warn_lines"): ("=", 0),
    ("second_device", "b_ok_runs"): ("=", 10),
    ("second_device", "a_streams_given_up"): ("=", 0),
    ("second_device", "warn_lines"): ("=", 0),
    ("sse_over_cap", "served_after_retry"): ("=", 1),
    ("sse_over_cap", "given_up"): ("=", 0),
    ("silent_closer", "served"): ("=", SOCKETS),
    ("silent_closer", "ms_until_accepting"): ("<=", LINGER_MS + 1000),
    ("silent_closer", "warn_lines"): ("=", 0),
    ("slow_reader", "slot_free_ms"): ("<=", STALL_MS + LINGER_MS + 1000),
    ("slow_reader", "stall_reaps"): (">=", 1),
    ("slow_reader", "warn_lines"): ("=", 0),
}


def log(message):
    print(message, file=sys.stderr, flush=True)


class Server:
    """The host binary in one variant, its log in a file."""

    def __init__(self, binary, variant, workdir):
        self.log_path = os.path.join(workdir, f"{variant}.log")
        self.log_file = open(self.log_path, "w")
        args = [binary, "--tap", "tap0", "--address", f"{DEVICE}/24", "--log", os.environ.get("CAMERA_LOG", "info")]
        self.process = subprocess.Popen(
            args + VARIANTS[variant], stdout=self.log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"camera-tap exited at start:\n{self.log_text()}")
            if fetch_stats(timeout=0.5) is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"camera-tap did not answer /stats in 10 s:\n{self.log_text()}")

    def log_text(self):
        if not self.log_file.closed:
            self.log_file.flush()
        with open(self.log_path) as f:
            return f.read()

    def mark(self):
        """Where the log is now; `warn_lines(mark)` counts the lines after it."""
        return len(self.log_text().splitlines())

    def warn_lines(self, mark):
        lines = self.log_text().splitlines()[mark:]
        return [line for line in lines if line.startswith(("WARN", "ERROR"))]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


def fetch_stats(timeout=3.0):
    """The app's counters, or None when no socket answered."""
    try:
        with urllib.request.urlopen(f"http://{DEVICE}/stats", timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def stats_after(timeout_s=10.0):
    """The counters, waiting for a free socket if every one is taken."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = fetch_stats()
        if stats is not None:
            return stats
        time.sleep(0.2)
    return None


def delta(before, after, key):
    if before is None or after is None:
        return None
    get = lambda d: d["closed"][key[7:]] if key.startswith("closed.") else d[key]
    return get(after) - get(before)


def curl(*args, timeout=10):
    """Runs curl; returns (exit code, its -w output)."""
    result = subprocess.run(
        ["curl", "-s", *args], capture_output=True, text=True, timeout=timeout
    )
    return result.returncode, result.stdout


def accepting(count=SOCKETS, wait_s=0.5):
    """How many of `count` simultaneous connections the device accepts. embassy-net has
    no backlog: a SYN that finds no socket in accept() is reset at once, so this counts
    the sockets listening now. The probes come from addresses no other client uses (a
    device past its share would be reset at once, and its socket would answer a second
    probe); each closes with a FIN and sends nothing."""
    probes = []
    for address in PROBES[:count]:
        s = socket.socket()
        s.setblocking(False)
        s.bind((address, 0))
        s.connect_ex((DEVICE, PORT))
        probes.append(s)
    connected, pending = 0, list(probes)
    deadline = time.monotonic() + wait_s
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], pending, [], max(0.0, deadline - time.monotonic()))
        for s in writable:
            pending.remove(s)
            # A reset after the handshake (a layer refusing the connection) still
            # means a socket accepted it; only a SYN answered by a reset did not.
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != errno.ECONNREFUSED:
                connected += 1
    for s in probes:
        s.close()
    return connected


def ms_until_all_accept(since, bound_s=BOUND_S, period_s=0.2):
    """Milliseconds from `since` until every socket accepts again, or None past the bound."""
    while time.monotonic() - since < bound_s:
        if accepting() == SOCKETS:
            return round((time.monotonic() - since) * 1000, 1)
        time.sleep(period_s)
    return None


def settle():
    """Waits (bounded) until every socket accepts, so that what an earlier scenario
    left behind does not count against the next."""
    ms_until_all_accept(time.monotonic(), bound_s=10.0)


class Run:
    def __init__(self, args):
        self.args = args
        self.figures = []
        with open(args.page, "rb") as f:
            self.page = f.read()
        with open(args.frame, "rb") as f:
            self.frame = f.read()

    def figure(self, scenario, variant, metric, value, unit):
        self.figures.append(
            {"scenario": scenario, "variant": variant, "metric": metric, "value": value, "unit": unit}
        )
        if self.args.json:
            print(json.dumps(self.figures[-1]), flush=True)
        else:
            log(f"  {scenario}/{metric} = {value} {unit}")

    # --- scenarios -------------------------------------------------------------

    def correctness(self, server, variant):
        """`/` and `/frame.jpg` 20 times each, byte for byte (a frame differs from the
        rendered one only in the quantiser byte the app changes per frame)."""
        exact = 0
        body = os.path.join(self.args.workdir, "body")
        for _ in range(20):
            for path, expected in (("/", self.page), ("/frame.jpg", self.frame)):
                code, _ = curl("-m", "5", "-o", body, f"http://{DEVICE}{path}")
                got = open(body, "rb").read() if code == 0 else b""
                if path == "/frame.jpg" and len(got) == len(expected):
                    at = self.args.quantiser_offset
                    got = got[:at] + expected[at : at + 1] + got[at + 1 :]
                exact += got == expected
        self.figure("correctness", variant, "exact_responses", exact, "of 40")

    def throughput(self, server, variant):
        """wrk on /frame.jpg with 4 keep-alive connections."""
        out = subprocess.run(
            ["wrk", "-t1", "-c4", "-d5s", "--timeout", "5s", f"http://{DEVICE}/frame.jpg"],
            capture_output=True, text=True, timeout=30,
        ).stdout
        rate, errors = None, 0
        for line in out.splitlines():
            words = line.split()
            if line.startswith("Requests/sec:"):
                rate = float(words[1])
            elif line.strip().startswith("Socket errors:"):
                # Socket errors: connect 0, read 1, write 0, timeout 0
                errors += sum(int(w.strip(",")) for w in words[3::2])
            elif line.strip().startswith("Non-2xx"):
                errors += int(words[-1])
        self.figure("throughput", variant, "requests_per_s", rate, "requests/s")
        self.figure("throughput", variant, "errors", errors, "errors")

    def cancels(self, server, variant):
        """30 downloads cut mid-transfer by curl's own timeout (20 ms at 500 kB/s). A
        download that got no byte or all of them in time is not a cut and is tried
        again (at most 60 tries): a loaded machine may take longer to answer."""
        before, mark, cut = stats_after(), server.mark(), 0
        for _ in range(60):
            code, out = curl(
                "--limit-rate", "500k", "--max-time", "0.02", "-o", "/dev/null",
                "-w", "%{size_download}", f"http://{DEVICE}/frame.jpg",
            )
            cut += code == 28 and 0 < int(out or 0) < len(self.frame)
            if cut == 30:
                break
        time.sleep(1.0)  # the device sees the resets and ends the connections
        after = stats_after()
        self.figure("cancels", variant, "cut_mid_transfer", cut, "of 30")
        self.figure("cancels", variant, "warn_lines", len(server.warn_lines(mark)), "lines")
        # A cut download ends as a cancel (a reset or FIN mid-response) or, when curl's
        # buffer happened to be empty, as a plain reset: both are the peer's doing.
        counted = [delta(before, after, f"closed.{reason}")
                   for reason in ("client_cancelled", "peer_reset")]
        self.figure(
            "cancels", variant, "cancels_counted",
            None if None in counted else sum(counted), "count",
        )

    def slowloris(self, server, variant):
        """slowhttptest: 50 connections sending their heads slowly, while a legitimate
        `curl /` runs every 500 ms from the attack's first moment."""
        mark = server.mark()
        attack = subprocess.Popen(
            ["slowhttptest", "-H", "-c", "50", "-r", "100", "-i", "10", "-x", "10",
             "-l", "14", "-p", "3", "-u", f"http://{DEVICE}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        start, attempts, ok, first_ok = time.monotonic(), 0, 0, None
        try:
            time.sleep(0.3)  # slowhttptest has opened its connections
            while time.monotonic() - start < 12.0:
                tick = time.monotonic()
                code, out = curl("-m", "2", "-o", "/dev/null", "-w", "%{http_code}",
                                 "--interface", HOST_B, f"http://{DEVICE}/")
                attempts += 1
                if code == 0 and out == "200":
                    ok += 1
                    if first_ok is None:
                        first_ok = round((time.monotonic() - start) * 1000, 1)
                time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))
        finally:
            attack.terminate()
            try:
                attack.wait(10)
            except subprocess.TimeoutExpired:
                attack.kill()
        self.figure("slowloris", variant, "legit_ok_ratio", round(ok / attempts, 3), "ratio")
        self.figure("slowloris", variant, "legit_attempts", attempts, "count")
        self.figure("slowloris", variant, "first_ok_ms", first_ok, "ms")
        self.figure("slowloris", variant, "warn_lines", len(server.warn_lines(mark)), "lines")

    def second_device(self, server, variant, runs=10):
        """Device A: headless Chromium on the page with 6 tiles loading frames back to
        back and its EventSource opened during that burst. Device B, from an address of
        its own, loads `/` and `/frame.jpg` while A is busy. 10 runs, a fresh browser
        profile each."""
        before, mark = stats_after(), server.mark()
        b_ok, b_ms, a_events, a_given_up = 0, [], [], 0
        driver = ChromeDriver(self.args.workdir)
        try:
            for _ in range(runs):
                session = driver.session()
                try:
                    started = time.monotonic()
                    session.navigate(f"http://{DEVICE}/?tiles=6")
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
                    ok, spent = True, 0.0
                    for path, size in (("/", len(self.page)), ("/frame.jpg", len(self.frame))):
                        code, out = curl("-m", "5", "-o", "/dev/null", "--interface", HOST_B,
                                         "-w", "%{http_code} %{size_download} %{time_total}",
                                         f"http://{DEVICE}{path}")
                        fields = out.split()
                        ok &= code == 0 and fields[:2] == ["200", str(size)]
                        spent += float(fields[2]) if len(fields) == 3 else 0.0
                    if ok:
                        b_ok += 1
                        b_ms.append(spent * 1000)
                    time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))
                    seen = session.script("return window.camera || null") or {}
                    a_events.append(seen.get("events", 0))
                    a_given_up += bool(seen.get("eventsClosed"))
                finally:
                    session.close()
                time.sleep(0.5)  # A's connections end before the next run
        finally:
            driver.stop()
        after = stats_after()
        self.figure("second_device", variant, "b_ok_runs", b_ok, "of 10")
        self.figure("second_device", variant, "b_ms",
                    round(statistics.median(b_ms), 1) if b_ms else None, "ms")
        self.figure("second_device", variant, "a_stream_events", sum(a_events), "events")
        self.figure("second_device", variant, "a_streams_given_up", a_given_up, "of 10")
        self.figure("second_device", variant, "streams_refused",
                    delta(before, after, "streams_refused"), "count")
        self.figure("second_device", variant, "warn_lines", len(server.warn_lines(mark)), "lines")

    def silent_closer(self, server, variant):
        """Every socket serves a client that asks the device to close, reads the answer
        and the device's FIN, and then keeps its own socket open and silent."""
        settle()
        before, mark = stats_after(), server.mark()
        silent, refused = [], 0
        for address in DEVICES[:SOCKETS]:
            s = socket.socket()
            try:
                s.settimeout(5)
                s.bind((address, 0))
                s.connect((DEVICE, PORT))
                s.sendall(b"GET / HTTP/1.1\r\nHost: camera\r\nConnection: close\r\n\r\n")
                while s.recv(65536):
                    pass  # until the device's FIN
                silent.append(s)
            except OSError:
                refused += 1  # reset at connect or instead of an answer
                s.close()
        since = time.monotonic()
        back = ms_until_all_accept(since)
        for s in silent:
            s.close()
        after = stats_after()
        self.figure("silent_closer", variant, "served", SOCKETS - refused, f"of {SOCKETS}")
        self.figure("silent_closer", variant, "ms_until_accepting", back, "ms")
        self.figure("silent_closer", variant, "accept_errors",
                    delta(before, after, "accept_errors"), "count")
        self.figure("silent_closer", variant, "warn_lines", len(server.warn_lines(mark)), "lines")

    def slow_reader(self, server, variant):
        """A client with a small receive buffer asks for a frame and never reads."""
        settle()
        before, mark = stats_after(), server.mark()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((SLOW_READER, 0))
        s.settimeout(5)
        s.connect((DEVICE, PORT))
        s.sendall(b"GET /frame.jpg HTTP/1.1\r\nHost: camera\r\n\r\n")
        since = time.monotonic()
        freed = ms_until_all_accept(since)
        s.close()
        after = stats_after()
        self.figure("slow_reader", variant, "slot_free_ms", freed, "ms")
        self.figure("slow_reader", variant, "stall_reaps",
                    delta(before, after, "closed.reaped_stall"), "count")
        self.figure("slow_reader", variant, "warn_lines", len(server.warn_lines(mark)), "lines")

    def sse_over_cap(self, server, variant):
        """Two event streams from other devices hold the stream slots (the ESP32-S3
        profile has 2) for 3 s; a Chromium page opens a third. Refused, it must
        reconnect by itself and be served once a slot frees."""
        mark = server.mark()
        holders = [
            subprocess.Popen(
                ["curl", "-s", "-N", "-o", "/dev/null", "-m", "3", "--interface", address,
                 f"http://{DEVICE}/events"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for address in DEVICES[:2]
        ]
        time.sleep(0.5)  # both streams are open
        driver = ChromeDriver(self.args.workdir)
        try:
            session = driver.session()
            try:
                session.navigate(f"http://{DEVICE}/")
                time.sleep(11.0)  # the holders leave at 3 s; a retry comes within 5 s more
                seen = session.script("return window.camera || null") or {}
            finally:
                session.close()
        finally:
            driver.stop()
            for holder in holders:
                try:
                    holder.wait(5)
                except subprocess.TimeoutExpired:
                    holder.kill()
        self.figure("sse_over_cap", variant, "refused_first", int(seen.get("eventErrors", 0) > 0), "bool")
        self.figure("sse_over_cap", variant, "served_after_retry", int(seen.get("events", 0) > 0), "bool")
        self.figure("sse_over_cap", variant, "given_up", int(bool(seen.get("eventsClosed"))), "bool")
        self.figure("sse_over_cap", variant, "warn_lines", len(server.warn_lines(mark)), "lines")

    SCENARIOS = ["correctness", "throughput", "cancels", "slowloris", "second_device",
                 "sse_over_cap", "silent_closer", "slow_reader"]

    def run(self):
        for variant in self.variants():
            log(f"== {variant}")
            server = Server(self.args.binary, variant, self.args.workdir)
            try:
                for name in self.args.scenarios or self.SCENARIOS:
                    started = time.monotonic()
                    getattr(self, name)(server, variant)
                    log(f"  ({name}: {time.monotonic() - started:.1f} s)")
            finally:
                server.stop()
                if self.args.verbose:
                    log(server.log_text())

    def variants(self):
        return self.args.variants or DEFAULT_VARIANTS

    # --- report ----------------------------------------------------------------

    def verdicts(self):
        """(figure key, values per variant, goal, met per layered variant) for every
        figure of the table."""
        rows = {}
        for f in self.figures:
            key = (f["scenario"], f["metric"])
            rows.setdefault(key, {"unit": f["unit"]})[f["variant"]] = f["value"]
        out = []
        for key, row in rows.items():
            goal = GOALS.get(key)
            met = {}
            for variant in self.variants():
                if goal is None or not is_layered(variant) or variant not in row:
                    continue
                op, want = goal
                got = row[variant]
                met[variant] = got is not None and (
                    got == want if op == "=" else got <= want if op == "<=" else got >= want
                )
            out.append((key, row, goal, met))
        return out

    def table(self):
        variants = self.variants()
        head = ["scenario", "metric", "unit", *variants, "goal (layered)", "meets"]
        lines = [head]
        for (scenario, metric), row, goal, met in self.verdicts():
            show = lambda v: "held" if v is None else str(v)
            cells = [show(row[v]) if v in row else "not run" for v in variants]
            goal_text = "" if goal is None else f"{goal[0]} {goal[1]}"
            meets = " / ".join("yes" if ok else "NO" for ok in met.values())
            lines.append([scenario, metric, row["unit"], *cells, goal_text, meets])
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        for i, line in enumerate(lines):
            print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |")
            if i == 0:
                print("|" + "|".join("-" * (w + 2) for w in widths) + "|")

    def check(self):
        missed = [
            (key, variant, row.get(variant), goal)
            for key, row, goal, met in self.verdicts()
            if goal is not None
            for variant, ok in met.items()
            if not ok
        ]
        for (scenario, metric), variant, got, goal in missed:
            log(f"MISSED: {variant} {scenario}/{metric} = {got}, goal {goal[0]} {goal[1]}")
        measured = {(f["scenario"], f["metric"], f["variant"]) for f in self.figures}
        missing = [
            (scenario, metric, variant)
            for scenario, metric in GOALS
            if scenario in (self.args.scenarios or self.SCENARIOS)
            for variant in self.variants()
            if is_layered(variant) and (scenario, metric, variant) not in measured
        ]
        for scenario, metric, variant in missing:
            log(f"MISSED: {variant} {scenario}/{metric} was not measured")
        return not missed and not missing


class ChromeDriver:
    """Headless Chromium through chromedriver's WebDriver protocol (HTTP and JSON), so
    nothing beyond the Debian packages is needed."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = 9515
        self.process = subprocess.Popen(
            ["chromedriver", f"--port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/status")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("chromedriver did not start")

    def request(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.load(response)["value"]

    def session(self):
        profile = os.path.join(self.workdir, f"chromium-{time.monotonic_ns()}")
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", f"--user-data-dir={profile}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "pageLoadStrategy": "none",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}}
        value = self.request("POST", "/session", caps, timeout=60)
        return Session(self, value["sessionId"])

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Session:
    def __init__(self, driver, session_id):
        self.driver, self.path = driver, f"/session/{session_id}"

    def navigate(self, url):
        self.driver.request("POST", self.path + "/url", {"url": url})

    def script(self, source):
        return self.driver.request("POST", self.path + "/execute/sync", {"script": source, "args": []})

    def close(self):
        try:
            self.driver.request("DELETE", self.path)
        except OSError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--page", required=True, help="the app's page.html, served at /")
    parser.add_argument("--frame", required=True, help="the rendered frame.jpg")
    parser.add_argument("--quantiser-offset", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print the server logs")
    parser.add_argument("--record", metavar="FILE",
                        help="also write every figure to FILE, one JSON object per line "
                             "(what tests/agreement.py compares with the simulation)")
    parser.add_argument("--variant", dest="variants", action="append", choices=list(VARIANTS),
                        help="run this variant (repeatable; default: picoserve and picoserve_layered)")
    parser.add_argument("--scenario", dest="scenarios", action="append",
                        choices=Run.SCENARIOS, help="run only this scenario (repeatable)")
    args = parser.parse_args()
    run = Run(args)
    run.run()
    if args.record:
        with open(args.record, "w") as f:
            for figure in run.figures:
                f.write(json.dumps(figure) + "\n")
    if not args.json:
        run.table()
    if args.check and not run.check():
        sys.exit(1)


if __name__ == "__main__":
    main()
