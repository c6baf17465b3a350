#!/usr/bin/env bash
# The flash tcp-layers-ws adds to an ESP32-C3 (riscv32imc) firmware: builds the tiny
# binary of src/main.rs with the ESP32 firmware's release profile, with the WebSocket
# echo handler (feature ws) and with a raw byte echo instead, and prints
#
#   text_bytes_ws=<.text with ws minus .text without>
#   rodata_bytes_ws=<the same for .rodata (constants, jump tables)>
#
# and the section sizes of both builds. Usage: bash examples/ws-flash/size.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
target=riscv32imc-unknown-none-elf
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
elf="$CARGO_TARGET_DIR/$target/release/ws-flash"

# section <elf> <name>: the size of one section, from the ELF section headers.
section() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 1, "32-bit ELF expected"
shoff, = struct.unpack_from("<I", data, 0x20)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
headers = [struct.unpack_from("<10I", data, shoff + i * shentsize) for i in range(shnum)]
names = headers[shstrndx][4]
def name(h):
    start = names + h[0]
    return data[start:data.index(b"\0", start)].decode()
print(sum(h[5] for h in headers if name(h) == sys.argv[2]))
PY
}

cargo build -q --release --target "$target"
plain_text=$(section "$elf" .text)
plain_rodata=$(section "$elf" .rodata)
cargo build -q --release --target "$target" --features ws
ws_text=$(section "$elf" .text)
ws_rodata=$(section "$elf" .rodata)
echo "text_bytes_echo_raw=$plain_text rodata_bytes_echo_raw=$plain_rodata"
echo "text_bytes_echo_ws=$ws_text rodata_bytes_echo_ws=$ws_rodata"
echo "text_bytes_ws=$((ws_text - plain_text))"
echo "rodata_bytes_ws=$((ws_rodata - plain_rodata))"
