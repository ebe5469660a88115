#!/usr/bin/env python3
"""Prints scripts/bench-pipeline's results (TSV: round, system, jobs, seconds, enqueue seconds, Valkey commands,
error) as a
Markdown table of medians over the successful rounds, with ValkeyFlight's end-to-end jobs/s ÷ each system's.

    report.py RESULTS.tsv PY_WORKERS PY_CONCURRENCY"""

import statistics
import sys
from importlib import metadata


def version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def names(workers, concurrency):
    return {
        "valkeyflight": "ValkeyFlight `bench pipeline` (end to end)",
        "valkeyflight-coordinator": "ValkeyFlight `bench pipeline --coordinator-only`",
        "rq": f"RQ {version('rq')} (SimpleWorker, burst), {workers} processes",
        "arq": f"arq {version('arq')} (burst), {workers} processes × {concurrency}",
        "bullmq": f"BullMQ-Python {version('bullmq')}, {workers} processes × {concurrency}",
    }


def main(path, workers, concurrency):
    NAMES = names(workers, concurrency)
    rows = {}
    for line in open(path):
        round_, system, jobs, seconds, enqueue, commands, error = line.rstrip("\n").split("\t")
        entry = rows.setdefault(system, {"jobs": int(jobs), "seconds": [], "enqueue": [], "commands": [], "errors": []})
        if seconds and not error:
            entry["seconds"].append(float(seconds))
            if enqueue:
                entry["enqueue"].append(float(enqueue))
            if commands:
                entry["commands"].append(int(commands) / int(jobs))
        else:
            entry["errors"].append(f"round {round_}: {error or 'no result'}")

    def rate(entry):
        return entry["jobs"] / statistics.median(entry["seconds"]) if entry["seconds"] else None

    reference = rate(rows["valkeyflight"]) if "valkeyflight" in rows else None
    print("| system | N | seconds | jobs/s | ValkeyFlight ÷ system | Valkey commands/job | notes |")
    print("|---|---|---|---|---|---|---|")
    for system, entry in rows.items():
        jobs_per_second = rate(entry)
        runs = len(entry["seconds"]) + len(entry["errors"])
        notes = []
        if len(entry["seconds"]) > 1:
            notes.append(f"median of {len(entry['seconds'])}, "
                         f"{min(entry['seconds']):.2f}–{max(entry['seconds']):.2f} s")
        if entry["enqueue"]:
            notes.append(f"enqueue {statistics.median(entry['enqueue']):.2f} s")
        if entry["errors"]:
            notes.append(f"{len(entry['errors'])} of {runs} runs failed: " + "; ".join(entry["errors"]))
        if jobs_per_second is None:
            print(f"| {NAMES.get(system, system)} | {entry['jobs']} | – | – | – | – | {'; '.join(notes)} |")
            continue
        ratio = f"{reference / jobs_per_second:.2f}×" if reference else "–"
        commands = f"{statistics.median(entry['commands']):.1f}" if entry["commands"] else "–"
        print(f"| {NAMES.get(system, system)} | {entry['jobs']} | {statistics.median(entry['seconds']):.2f} "
              f"| {jobs_per_second:,.0f} | {ratio} | {commands} | {'; '.join(notes)} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
