#!/usr/bin/env bash
# Headless Chromium loads the host camera page and must see at least 5 frames, and the
# server's /stats must have counted them. Loopback only; stops by itself.
# Needs: chromium, curl (Debian packages). Usage: tests/host_camera_browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
cargo build -q --release --example host_camera
bin="$CARGO_TARGET_DIR/release/examples/host_camera"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin" --port "$port" --exit-after 90 --quiet >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/stats" >/dev/null && break; sleep 0.1; done

profile=$(mktemp -d)
dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --disable-quic \
  --user-data-dir="$profile" --virtual-time-budget=4000 --dump-dom "http://127.0.0.1:$port/" 2>/dev/null || true)
rm -rf "$profile"
frames_seen=$(printf '%s' "$dom" | sed -n 's/.*<span id="count">\([0-9]*\)<\/span>.*/\1/p' | head -1)
stats=$(curl -sf "http://127.0.0.1:$port/stats")
frames_served=$(printf '%s' "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["frames"])')
echo "browser loaded ${frames_seen:-0} frames; server /stats counted $frames_served frames"
echo "stats: $stats"
[ "${frames_seen:-0}" -ge 5 ] || { echo "FAIL: fewer than 5 frames in the page"; cat "$log"; exit 1; }
[ "$frames_served" -ge "$frames_seen" ] || { echo "FAIL: /stats counted fewer frames than the page shows"; exit 1; }
echo "ok"
