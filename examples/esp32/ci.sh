#!/usr/bin/env bash
# Builds the ESP32 firmware for the two RISC-V chips CI can build for (ESP32-C3 and
# ESP32-C6; the ESP32-S3 is Xtensa, whose toolchain cannot be installed on CI
# machines) and prints the code size the layers add:
#
#   text_bytes_c3=...  text_bytes_c3_no_layers=...  text_bytes_c6=...
#   text_bytes_layers=<C3 with layers minus C3 without>
#   text_bytes_c3_defmt=...  text_bytes_c3_defmt_no_layers=...
#   text_bytes_layers_defmt=<the same difference with defmt logging>
#
# The build without layers (feature no-layers) is the same firmware with an empty layer
# stack, so the difference is the layers' code alone. The defmt builds are the same
# firmware logging through defmt instead of log (feature defmt). After the figures, a
# table of the bytes the layers add per crate (size_breakdown.py); SIZE_BREAKDOWN=1
# also lists the symbols that differ most.
#
# Needs no Wi-Fi credentials: SSID and PASSWORD are optional at build time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here" # so .cargo/config.toml (linker flags per target) applies

rustup target add riscv32imc-unknown-none-elf riscv32imac-unknown-none-elf

export CARGO_TARGET_DIR="$here/target"
# Sizes of the code, not of debug info; and a smaller, faster build.
export CARGO_PROFILE_RELEASE_DEBUG=0
elf_name=tcp-layers-esp32-example

# build <target> <features> [cargo flags]: builds and prints the ELF's path.
build() {
    local target=$1 features=$2
    shift 2
    echo "--- cargo build --locked --release --target $target $* --features $features" >&2
    if ! cargo build --locked --release --target "$target" "$@" --features "$features" >&2; then
        echo "esp32 example: build failed for $target ($features)." >&2
        echo "If Cargo.lock is out of date after a change to the tcp-layers crates," >&2
        echo "refresh it with: (cd examples/esp32 && cargo update -p tcp-layers)" >&2
        return 1
    fi
    echo "$CARGO_TARGET_DIR/$target/release/$elf_name"
}

# text_bytes <elf>: size of the .text section (code run from flash), from the ELF
# section headers. binutils' size may not know RISC-V, so read the headers directly.
text_bytes() {
    python3 - "$1" <<'PY'
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
print(sum(h[5] for h in headers if name(h) == ".text"))
PY
}

# Measured right after each build: the two C3 builds share one output path, so each
# ELF is also kept in target/sizes/ for size_breakdown.py.
sizes="$CARGO_TARGET_DIR/sizes"
mkdir -p "$sizes"
c3_elf=$(build riscv32imc-unknown-none-elf esp32c3)
c3=$(text_bytes "$c3_elf")
cp "$c3_elf" "$sizes/c3-layers.elf"
c3_plain_elf=$(build riscv32imc-unknown-none-elf esp32c3,no-layers)
c3_plain=$(text_bytes "$c3_plain_elf")
cp "$c3_plain_elf" "$sizes/c3-no-layers.elf"
c6_elf=$(build riscv32imac-unknown-none-elf esp32c6)
c6=$(text_bytes "$c6_elf")
c3_defmt_elf=$(build riscv32imc-unknown-none-elf esp32c3,defmt --no-default-features)
c3_defmt=$(text_bytes "$c3_defmt_elf")
c3_defmt_plain_elf=$(build riscv32imc-unknown-none-elf esp32c3,defmt,no-layers --no-default-features)
c3_defmt_plain=$(text_bytes "$c3_defmt_plain_elf")

echo "text_bytes_c3=$c3"
echo "text_bytes_c3_no_layers=$c3_plain"
echo "text_bytes_c6=$c6"
echo "text_bytes_layers=$((c3 - c3_plain))"
echo "text_bytes_c3_defmt=$c3_defmt"
echo "text_bytes_c3_defmt_no_layers=$c3_defmt_plain"
echo "text_bytes_layers_defmt=$((c3_defmt - c3_defmt_plain))"

# Where the difference goes, per crate (needs llvm-nm); SIZE_BREAKDOWN=1: per symbol too.
detail=()
if [ "${SIZE_BREAKDOWN:-0}" = 1 ]; then
    detail=(--symbols)
fi
python3 "$here/size_breakdown.py" "${detail[@]}" "$sizes/c3-layers.elf" "$sizes/c3-no-layers.elf"
