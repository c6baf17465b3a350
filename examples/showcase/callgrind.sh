#!/usr/bin/env bash
# Host instructions of the server side of the showcase's `jpeg_frames` scenario (50
# frames of 120 KiB on one keep-alive connection), per variant, counted by callgrind.
#
#   bash examples/showcase/callgrind.sh            # JSON lines, see below
#   bash examples/showcase/callgrind.sh --keep DIR # also keep callgrind.out.<variant>
#                                                  # in DIR, for callgrind_annotate
#
# What is counted: the showcase's CPU figure (`cpu_ns_per_frame`) is the thread CPU
# time of every poll of the server's connection futures (the HTTP code, the layers, the
# socket calls; not the stack's runner, not the clients, not the simulated link). Every
# such poll goes through one never-inlined function, `probes::poll_server`. For each
# variant the showcase runs once with `--serve-frames <variant>`: that variant alone
# serves the 50 frames to one client, in virtual time, polls metered. Callgrind starts
# with collection off (`--collect-atstart=no`) and `--toggle-collect` turns it on for
# the duration of each call of `poll_server` (the server's polls do not nest), so the
# total is exactly the instructions executed inside the server's polls, and everything
# they call; the clock reads around each poll fall outside it. The simulation is
# seeded and runs in virtual time, so the count is the same from run to run (on the
# same binary, toolchain and libc).
#
# Output: one JSON line per variant,
#   {"scenario":"jpeg_frames","variant":"raw","metric":"instructions_per_frame","value":1717899,"unit":"instructions"}
# then the two ratios of a layered server to the same server without layers (layered /
# raw, picoserve_layered / picoserve), with the goal set for them:
#   {"scenario":"jpeg_frames","variant":"layered","metric":"instructions_vs_unlayered","value":1.0183,"unit":"ratio","goal":1.010}
#
# Needs valgrind (callgrind) on the PATH; installs nothing. Builds the showcase first,
# in release mode as the README's figures are (PROFILE=dev measures the dev build that
# `cargo test --workspace` has already built: other figures, the same method);
# CARGO_TARGET_DIR is respected. Takes about 40 s after the build.
set -euo pipefail
cd "$(dirname "$0")/../.."

keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep="${2:?--keep needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

frames=50
profile="${PROFILE:-release}"
case "$profile" in
  release) cargo build -q --release --example showcase ;;
  dev) cargo build -q --example showcase ;;
  *) echo "callgrind.sh: PROFILE is release or dev" >&2; exit 2 ;;
esac
target_dir="${CARGO_TARGET_DIR:-target}"
showcase="$target_dir/$([ "$profile" = dev ] && echo debug || echo release)/examples/showcase"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A total
for variant in raw layered picoserve picoserve_layered; do
  out="$work/callgrind.out.$variant"
  # stdout is the showcase's own line (it fails when a frame is missing); stderr is
  # valgrind's, kept for a failure.
  if ! valgrind --tool=callgrind --collect-atstart=no \
      --toggle-collect='*probes::poll_server*' --callgrind-out-file="$out" \
      "$showcase" --serve-frames "$variant" >"$work/stdout" 2>"$work/stderr"; then
    cat "$work/stdout" "$work/stderr" >&2
    echo "callgrind.sh: the run of $variant failed" >&2
    exit 1
  fi
  total[$variant]=$(sed -n 's/^summary: *//p' "$out")
  # Nothing counted: the toggle matched no function (probes::poll_server renamed?).
  [ "${total[$variant]:-0}" -gt 0 ] 2>/dev/null ||
    { echo "callgrind.sh: no instructions counted inside probes::poll_server" >&2; exit 1; }
  [ -z "$keep" ] || { mkdir -p "$keep"; cp "$out" "$keep/"; }
  awk -v v="$variant" -v n="${total[$variant]}" -v f="$frames" 'BEGIN {
    printf "{\"scenario\":\"jpeg_frames\",\"variant\":\"%s\",\"metric\":\"instructions_per_frame\",\"value\":%.0f,\"unit\":\"instructions\"}\n", v, n / f }'
done

ratio() { # layered variant, unlayered variant, goal
  awk -v v="$1" -v a="${total[$1]}" -v b="${total[$2]}" -v g="$3" 'BEGIN {
    printf "{\"scenario\":\"jpeg_frames\",\"variant\":\"%s\",\"metric\":\"instructions_vs_unlayered\",\"value\":%.4f,\"unit\":\"ratio\",\"goal\":%s}\n", v, a / b, g }'
}
ratio layered raw 1.010
ratio picoserve_layered picoserve 1.05
