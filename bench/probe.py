"""Benchmark: what the node agent's hardware probe costs per heartbeat (``python bench/probe.py``).

Runs the real :func:`nebula.hardware.probe` on this machine N times after one warm-up call
(imports, first subprocess) and reports min / median / p95 / max milliseconds for the whole
probe and for each of its parts, which run at the same time. The issue's budget: under 200 ms
per heartbeat. Endpoints are the documented defaults (or DOCKER_HOST / OLLAMA_HOST when set).
"""

from __future__ import annotations

import argparse
import statistics

from nebula import hardware


def _row(name: str, seconds: list[float]) -> str:
    ms = sorted(value * 1000 for value in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{name:<12} {ms[0]:8.2f} {statistics.median(ms):8.2f} {p95:8.2f} {ms[-1]:8.2f}"
        f"   ({len(ms)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=200, help="probes to time (200)")
    args = parser.parse_args()

    first = hardware.probe()  # warm-up: imports, first subprocess, first sockets
    timings: dict[str, list[float]] = {}
    for _ in range(args.runs):
        found = hardware.probe()
        for name, seconds in found.timings.items():
            timings.setdefault(name, []).append(seconds)

    print(f"warm-up probe: {first.timings['total'] * 1000:.2f} ms")
    print(f"{'probe':<12} {'min':>8} {'median':>8} {'p95':>8} {'max':>8}   (ms)")
    for name in sorted(timings, key=lambda name: (name == "total", name)):
        print(_row(name, timings[name]))
    if found.problems:
        print("problems:", "; ".join(str(problem) for problem in found.problems))
    median = statistics.median(timings["total"]) * 1000
    verdict = "within" if median < 200 else "OVER"
    print(f"median {median:.2f} ms per heartbeat: {verdict} the 200 ms budget")


if __name__ == "__main__":
    main()
