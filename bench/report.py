"""Prints bench/run.sh's tables (Markdown) from the TSV files lib.sh writes.

usage: report.py RESULTS PAIRS MEMORY

A pair's ratio is computed run by run (the i-th run of A over the i-th run of B, which were taken
back to back), so machine noise that shifts both alike cancels; the spread of those ratios is
shown next to their median.
"""

import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def main(results_path, pairs_path, memory_path):
    runs = defaultdict(list)
    for scenario, label, conns, rps, p50, p99, bad, err in load(results_path):
        runs[(scenario, label, conns)].append((float(rps), float(p50), float(p99), int(bad), int(err)))

    print("### Ratios (pairwise, same sitting)\n")
    print("| scenario | c | A | B | A rps | B rps | A/B throughput | A p50 / p99 ms | B p50 / p99 ms | pairs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scenario, a, b, conns, conns_b in load(pairs_path):
        ra, rb = runs.get((scenario, a, conns), []), runs.get((scenario, b, conns_b), [])
        if conns_b != conns:
            a, b = f"{a} c={conns}", f"{b} c={conns_b}"
        n = min(len(ra), len(rb))
        if n == 0:
            print(f"| {scenario} | {conns} | {a} | {b} | – | – | not measured | – | – | 0 |")
            continue
        ratios = [ra[i][0] / rb[i][0] for i in range(n)]
        ratio = f"**{statistics.median(ratios):.2f}**"
        if n > 1:
            ratio += f" ({min(ratios):.2f}–{max(ratios):.2f})"

        def med(rs, k):
            return statistics.median(r[k] for r in rs[:n])

        print(
            f"| {scenario} | {conns} | {a} | {b} | {med(ra, 0):.0f} | {med(rb, 0):.0f} | {ratio} "
            f"| {med(ra, 1):.2f} / {med(ra, 2):.2f} | {med(rb, 1):.2f} / {med(rb, 2):.2f} | {n} |"
        )

    print("\n### Every run\n")
    print("| scenario | label | c | rps | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario, label, conns, rps, p50, p99, bad, err in load(results_path):
        print(f"| {scenario} | {label} | {conns} | {rps} | {p50} | {p99} | {bad} | {err} |")

    memory = defaultdict(dict)
    for label, kind, kib in load(memory_path):
        memory[label][kind] = int(kib)
    if memory:
        print("\n### Memory (RSS, MiB)\n")
        print("| server | idle | peak (VmHWM, after the c=64 run) |")
        print("|---|---|---|")
        for label, kinds in memory.items():
            cells = [f"{kinds[k] / 1024:.1f}" if k in kinds else "–" for k in ("idle", "peak")]
            print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
