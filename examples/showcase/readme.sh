#!/usr/bin/env bash
# The showcase table of README.md, from a fresh run of the showcase.
#
#   bash examples/showcase/readme.sh           # rewrite the table in README.md (release build)
#   bash examples/showcase/readme.sh --check   # fail if a deterministic row differs (CI)
#
# The table is the block of `|` lines between `<!-- showcase:begin -->` and
# `<!-- showcase:end -->`; the prose around it is left as it is. Every figure runs in
# the simulated network's virtual time and is the same on every machine and in every
# build profile, except `cpu_ns_per_frame` (host CPU time), whose row `--check` skips.
# `--check` runs the dev build that `cargo test --workspace` has already built;
# PROFILE=release|dev overrides the profile of either mode.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=write
[ "${1:-}" = "--check" ] && mode=check
profile="${PROFILE:-$([ "$mode" = check ] && echo dev || echo release)}"
profile_flag=""
[ "$profile" = release ] && profile_flag="--release"

table=$(mktemp)
trap 'rm -f "$table"' EXIT
cargo run -q $profile_flag --example showcase > "$table"

python3 - "$mode" "$table" README.md <<'PY'
import sys

mode, table_path, readme_path = sys.argv[1:]
BEGIN, END = "<!-- showcase:begin -->", "<!-- showcase:end -->"
NONDETERMINISTIC = ("cpu_ns_per_frame",)

fresh = [l.rstrip("\n") for l in open(table_path) if l.startswith("|")]
if not fresh:
    sys.exit("readme.sh: the showcase printed no table")
readme = open(readme_path).read().split("\n")
try:
    begin, end = readme.index(BEGIN), readme.index(END)
except ValueError:
    sys.exit(f"readme.sh: {readme_path} has no {BEGIN} ... {END} block")
rows = [i for i in range(begin, end) if readme[i].startswith("|")]
if not rows or rows != list(range(rows[0], rows[-1] + 1)):
    sys.exit("readme.sh: the showcase block must hold one table of consecutive '|' lines")

def deterministic(line):
    cells = [c.strip() for c in line.split("|")]
    return not (len(cells) > 2 and cells[2].startswith(NONDETERMINISTIC))

if mode == "write":
    readme[rows[0] : rows[-1] + 1] = fresh
    open(readme_path, "w").write("\n".join(readme))
    print(f"readme.sh: {len(fresh)} table lines written to {readme_path}")
    sys.exit(0)

old = [readme[i] for i in rows if deterministic(readme[i])]
new = [l for l in fresh if deterministic(l)]
if old == new:
    print(f"readme.sh: the {len(new)} deterministic table lines of {readme_path} match a fresh run")
    sys.exit(0)
print(f"readme.sh: {readme_path}'s showcase table differs from a fresh run:")
for a, b in zip(old + [""] * len(new), new + [""] * len(old)):
    if a != b:
        print(f"  README: {a}\n  fresh:  {b}")
print("regenerate it with: bash examples/showcase/readme.sh")
sys.exit(1)
PY
