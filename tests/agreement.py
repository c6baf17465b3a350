"""Do the simulation and the real network agree? One verdict per scenario and variant.

Reads two files of figures, one JSON object per line in the showcase's shape
(`scenario`, `variant`, `metric`, `value`, `unit`):

- the real network's, from `tests/real_network.sh --record FILE` (the camera app on
  embassy-net over a TAP device, real clients);
- the simulation's, from `examples/test-kit` (`cargo run --example figures`: the same
  app, unchanged, in the test kit, simulated clients).

For every scenario both files measured, and every variant both ran (`picoserve`: the
app unlayered, `picoserve_layered`: with its layer stack), the verdict is "every goal
of the scenario met", with the goals of `tests/real_network.py` (`GOALS`) applied to
both variants, unlayered included. It prints one table row per scenario and variant
and exits 1 when a verdict differs, when a goal's metric is missing on one side, or
when no scenario is shared.

Usage: python3 tests/agreement.py REAL.jsonl SIM.jsonl [--markdown]
"""
import argparse
import importlib.util
import json
import os
import sys


def load_goals():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "real_network.py")
    spec = importlib.util.spec_from_file_location("real_network", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GOALS


def load(path):
    figures = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                fig = json.loads(line)
                key = (fig["scenario"], fig["variant"], fig["metric"])
                figures[key] = fig["value"]
            except (ValueError, KeyError) as e:
                sys.exit(f"agreement: {path}:{number}: not a figure ({e})")
    return figures


def meets(goal, value):
    op, want = goal
    if value is None:
        return False
    return value == want if op == "=" else value <= want if op == "<=" else value >= want


def verdict(goals, figures, scenario, variant):
    """(met, the metrics judged, the metrics of a goal that were not measured)."""
    judged, missing, met = [], [], True
    for (s, metric), goal in goals.items():
        if s != scenario:
            continue
        key = (scenario, variant, metric)
        if key not in figures:
            missing.append(metric)
            continue
        judged.append(metric)
        met &= meets(goal, figures[key])
    return met, judged, missing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real")
    parser.add_argument("sim")
    parser.add_argument("--markdown", action="store_true", help="only the table, for the README")
    args = parser.parse_args()
    goals = load_goals()
    real, sim = load(args.real), load(args.sim)
    # In the order of GOALS, so the table reads as the real-network table does.
    order = list(dict.fromkeys(s for s, _ in goals))
    shared = {(s, v) for s, v, _ in real} & {(s, v) for s, v, _ in sim}
    pairs = sorted((p for p in shared if p[0] in order), key=lambda p: (order.index(p[0]), p[1]))
    if not pairs:
        sys.exit("agreement: no scenario with goals was measured on both sides")
    rows = [["scenario", "variant", "simulation", "real network", "agree"]]
    failures = []
    for scenario, variant in pairs:
        sim_met, _, sim_missing = verdict(goals, sim, scenario, variant)
        real_met, _, real_missing = verdict(goals, real, scenario, variant)
        show = lambda met: "goals met" if met else "missed"
        agree = sim_met == real_met and not sim_missing and not real_missing
        rows.append([scenario, variant, show(sim_met), show(real_met), "yes" if agree else "NO"])
        if sim_missing or real_missing:
            failures.append(f"{scenario}/{variant}: not measured: simulation {sim_missing}, "
                            f"real network {real_missing}")
        elif not agree:
            detail = [
                f"{m} sim={sim.get((scenario, variant, m))} real={real.get((scenario, variant, m))}"
                for (s, m) in goals if s == scenario
            ]
            failures.append(f"{scenario}/{variant}: the verdicts differ: " + ", ".join(detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if args.markdown:
        return
    for failure in failures:
        print(f"DISAGREE: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
