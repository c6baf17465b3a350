#!/usr/bin/env python3
"""Where the flash of the layers goes: the .text symbols of two firmware ELFs (with
and without the layers), summed per crate, and with --symbols the symbols that differ
most.

    python3 size_breakdown.py [--symbols] WITH.elf WITHOUT.elf [TOP]

ci.sh keeps the two ESP32-C3 ELFs it measures in target/sizes/ and runs this after
every build (with --symbols when SIZE_BREAKDOWN=1). Needs llvm-nm (`rustup component
add llvm-tools`, or the distribution's llvm package).

Read the per-crate sums with care: with fat LTO a layer's code is often inlined into
its caller, so part of it is counted under picoserve, futures_util, embassy_executor
or the example's own task. The total is exact; the removal of one layer's line from
src/layers.rs and a rebuild gives that layer's exact share.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

# Flash-mapped instruction addresses of the ESP32-C3 and ESP32-C6 (.text).
TEXT = range(0x4200_0000, 0x4280_0000)

# Legacy Rust mangling escapes that llvm-nm leaves in demangled names.
ESCAPES = [
    ("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","), ("$RF$", "&"),
    ("$BP$", "*"), ("$u7b$", "{"), ("$u7d$", "}"), ("$u27$", "'"), ("$u5b$", "["),
    ("$u5d$", "]"), ("$u3b$", ";"), ("$LP$", "("), ("$RP$", ")"), ("..", "::"),
]


def llvm_nm():
    """llvm-nm from PATH, else from the toolchain's llvm-tools component."""
    found = shutil.which("llvm-nm")
    if found:
        return found
    sysroot = subprocess.run(
        ["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True
    ).stdout.strip()
    candidates = glob.glob(os.path.join(sysroot, "lib", "rustlib", "*", "bin", "llvm-nm"))
    if not candidates:
        sys.exit("llvm-nm not found: rustup component add llvm-tools")
    return candidates[0]


def text_symbols(elf):
    """{name: bytes} of the functions in .text. Functions of one name (closures of
    generic code, instances of one generic function) are summed: which instance of
    one build matches which of the other cannot be told from the name."""
    out = subprocess.run(
        [llvm_nm(), "--print-size", "--demangle", elf],
        capture_output=True, text=True, check=True,
    ).stdout
    symbols = {}
    for line in out.splitlines():
        fields = line.split(None, 3)
        if len(fields) < 4 or fields[2] not in "tTwW":
            continue
        if int(fields[0], 16) not in TEXT:
            continue
        name = fields[3]
        for escape, char in ESCAPES:
            name = name.replace(escape, char)
        name = re.sub(r"::h[0-9a-f]{16}( \(\.\d+\))?$", "", name)
        symbols[name] = symbols.get(name, 0) + int(fields[1], 16)
    return symbols


def crate_of(name):
    """The crate a symbol's path starts with (`<Type as Trait>`: the type's crate; the
    drop glue of a type: the type's crate)."""
    name = re.sub(r"^core::ptr::drop_in_place<", "", name)
    match = re.match(r"[_<&]*(?:mut )?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return match.group(1) if match else "(no crate path)"


def main():
    args = sys.argv[1:]
    symbols = "--symbols" in args
    args = [a for a in args if a != "--symbols"]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    with_layers, without = text_symbols(args[0]), text_symbols(args[1])
    top = int(args[2]) if len(args) == 3 else 25

    total_with, total_without = sum(with_layers.values()), sum(without.values())
    print(f"symbols in .text: {total_with} B with layers, {total_without} B without, "
          f"difference {total_with - total_without} B")

    per_crate_with, per_crate_without = Counter(), Counter()
    for name, size in with_layers.items():
        per_crate_with[crate_of(name)] += size
    for name, size in without.items():
        per_crate_without[crate_of(name)] += size
    print(f"\nbytes added per crate:\n{'difference':>10} {'with':>8} {'without':>8}  crate")
    crates = set(per_crate_with) | set(per_crate_without)
    for crate in sorted(crates, key=lambda c: per_crate_without[c] - per_crate_with[c]):
        diff = per_crate_with[crate] - per_crate_without[crate]
        if diff:
            print(f"{diff:10} {per_crate_with[crate]:8} {per_crate_without[crate]:8}  {crate}")

    if not symbols:
        return
    rows = []
    for name in set(with_layers) | set(without):
        diff = with_layers.get(name, 0) - without.get(name, 0)
        if diff:
            rows.append((diff, with_layers.get(name, 0), without.get(name, 0), name))
    rows.sort(key=lambda row: -abs(row[0]))
    print(f"\nthe {top} symbols that differ most:")
    print(f"{'difference':>10} {'with':>8} {'without':>8}  symbol")
    for diff, size_with, size_without, name in rows[:top]:
        print(f"{diff:10} {size_with:8} {size_without:8}  {name[:160]}")


if __name__ == "__main__":
    main()
