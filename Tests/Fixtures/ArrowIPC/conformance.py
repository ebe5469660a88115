#!/usr/bin/env python3
"""Batch driver for the Swift conformance tests: one Python process for many files.

Usage: conformance.py JOBFILE
Each line of JOBFILE is a job, tab-separated:
    dump<TAB>PATH          -> prints the canonical dump of PATH (canonical_dump.py's format)
    compare<TAB>A<TAB>B    -> prints OK, or DIFF <reason> (compare.py's rules)
One output line per job, in order; a job that raises prints ERROR <message>.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import canonical_dump as cd  # noqa: E402
import compare  # noqa: E402


def run(job):
    kind, *paths = job.split("\t")
    if kind == "dump":
        return cd.dumps(cd.dump_obj(paths[0]))
    if kind == "compare":
        reason = compare.compare(paths[0], paths[1])
        return "OK" if reason is None else "DIFF " + reason
    raise ValueError("unknown job " + kind)


def main(argv):
    with open(argv[1]) as f:
        jobs = [line.rstrip("\n") for line in f if line.strip()]
    for job in jobs:
        try:
            line = run(job)
        except Exception as e:  # reported per job, the Swift test names the file
            line = "ERROR " + str(e).replace("\n", " ")
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
