"""Benchmark: load and validate 10,000 generated resources (``python bench/load.py``).

Reports the best and median of several runs of :func:`nebula.manifests.load_path` (read, parse,
validate every resource, check references), the share of parsing alone, and the floor under
parsing: how long libyaml takes only to hand ruamel.yaml's event objects to Python.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import generate
from ruamel.yaml import events
from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]

from nebula import manifests
from nebula.manifests import parsing


def _events_only(text: str) -> None:
    parser = CParser(text)
    end = events.StreamEndEvent
    while type(parser.get_event()) is not end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        written = generate.generate(root, args.count)
        size = sum(p.stat().st_size for p in root.iterdir())
        texts = [path.read_text() for path in sorted(root.iterdir())]
        totals, parses, floors = [], [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            loaded = manifests.load_path(root)
            totals.append(time.perf_counter() - start)
            with manifests.collector_paused():
                start = time.perf_counter()
                for text in texts:
                    parsing.parse(text)
                parses.append(time.perf_counter() - start)
                start = time.perf_counter()
                for text in texts:
                    _events_only(text)
                floors.append(time.perf_counter() - start)
        if loaded.errors:
            raise SystemExit(f"generated manifests are invalid: {loaded.errors[0]}")
    print(f"{written} resources in {loaded.files} files ({size / 1e6:.1f} MB)")
    print(f"load + validate: best {min(totals):.3f} s, median {statistics.median(totals):.3f} s")
    print(f"  of which parsing: best {min(parses):.3f} s")
    print(f"  libyaml events alone (the floor): best {min(floors):.3f} s")
    print(f"per resource: {min(totals) / written * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
