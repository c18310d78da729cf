"""The `make chaos` table: one row per scenario from the JSON lines the chaos tests append to
CHAOS_RESULTS (tests/chaos/exactly_once.py), as Markdown for docs/operations.md.

    python -m tests.chaos.report .run/chaos-results.jsonl
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

COLUMNS = ("scenario", "payments", "lost", "doubled", "balance drift", "time", "notes")


def row(result: dict[str, Any]) -> list[str]:
    minutes, seconds = divmod(round(result["seconds"]), 60)
    return [
        result["scenario"],
        f"{result['payments']:,}",
        str(result["lost"]),
        str(result["doubled"]),
        result["balance_drift"],
        f"{minutes}m{seconds:02d}s",
        result.get("notes", ""),
    ]


def table(results: list[dict[str, Any]]) -> str:
    rows = [list(COLUMNS), *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".run/chaos-results.jsonl")
    if not path.exists():
        print(f"no chaos results in {path}: did any scenario get as far as its check?")
        return 1
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(table(results))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{len(results)} scenarios; machine: {os.cpu_count()} CPUs, load average now {load}")
    bad = [r["scenario"] for r in results if r["lost"] or r["doubled"] or Decimal(r["balance_drift"])]
    if bad:
        print(f"LOST, DOUBLED OR DRIFTED: {', '.join(bad)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
