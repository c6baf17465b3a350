#!/usr/bin/env bash
# Real clients against the ESP32 camera app (examples/esp32/app) running on embassy-net
# 0.9 over a Linux TAP device: the host binary examples/esp32/tap, unlayered and
# layered, against curl, wrk, slowhttptest, headless Chromium and Linux's own TCP.
#
# Everything happens inside a network namespace this script creates and removes (also
# on failure): the TAP device, the binary (the device, 192.168.69.2) and every client
# (192.168.69.1, 192.168.69.3 as a second device, 192.168.69.4-8 as more devices).
# Nothing leaves the namespace.
# Needs root (or sudo) for the namespace, and the Debian packages curl, wrk,
# slowhttptest, chromium, chromium-driver and python3, which .ci/run installs.
#
# Usage: tests/real_network.sh [--json] [--check] [--record FILE] [--verbose] [--variant V]... [--scenario S]...
#   (no flag)   a table of every figure, picoserve unlayered vs layered
#   --json      one JSON object per figure (scenario, variant, metric, value, unit)
#   --check     exit 1 when a layered figure misses a goal that is checked
#   --record    also write the figures as JSON lines to FILE (for tests/agreement.py)
#   --variant   picoserve, hand_written, edge_http, each also with _layered (the app
#               served by picoserve, a hand-written loop or edge-http; repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "real_network: needs root (or passwordless sudo) to create a network namespace and a TAP device" >&2
    exit 1
  fi
fi
for tool in ip curl wrk slowhttptest chromium chromedriver python3; do
  command -v "$tool" >/dev/null || { echo "real_network: $tool is missing (see .ci/run for the packages)" >&2; exit 1; }
done

# The host binary: the firmware's app on embassy-net over a TAP device.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/examples/esp32/target}"
(cd examples/esp32 && cargo build -q --locked --release -p camera-tap)
binary="$CARGO_TARGET_DIR/release/camera-tap"
# The page and the frame the app serves, as its build rendered them.
out=$(ls -td "$CARGO_TARGET_DIR"/release/build/camera-app-*/out | head -1)
offset=$(sed -n 's/.*DC_QUANT_OFFSET: usize = \([0-9]*\);.*/\1/p' "$out/frame.rs")

ns="tcp-layers-real-$$"
work=$(mktemp -d)
cleanup() {
  # Every process of the namespace (the binary, browsers, clients) goes with it.
  for pid in $($SUDO ip netns pids "$ns" 2>/dev/null); do $SUDO kill -9 "$pid" 2>/dev/null || true; done
  $SUDO ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

$SUDO ip netns add "$ns"
in_ns() { $SUDO ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
in_ns ip tuntap add name tap0 mode tap
in_ns ip link set tap0 up
in_ns ip addr add 192.168.69.1/24 dev tap0
in_ns ip addr add 192.168.69.3/24 dev tap0
# More devices (192.168.69.4-8): the probes that count listening sockets, the clients
# that fill every socket, the slow reader.
for i in 4 5 6 7 8; do in_ns ip addr add "192.168.69.$i/24" dev tap0; done

# Bounded as a whole: a hung client cannot hold CI.
in_ns timeout 600 python3 tests/real_network.py --binary "$binary" \
  --page examples/esp32/app/src/page.html --frame "$out/frame.jpg" \
  --quantiser-offset "$offset" --workdir "$work" "$@"
