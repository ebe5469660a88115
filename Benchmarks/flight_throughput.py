#!/usr/bin/env python3
"""The Flight throughput workload of issue 13 (scripts/bench-flight throughput; docs/BENCHMARKS.md, "Flight
throughput").

    flight_throughput.py VALKEYFLIGHT FLIGHTBENCHMARK PAIRS

Starts `valkeyflight flight` (release) and pyarrow's in-memory FlightServerBase (Benchmarks/flight_pyarrow.py
server) on loopback, then in each of PAIRS rounds, the order of the two servers alternating:

- pyarrow's client (in this process, one FlightClient per server for the whole run) moves a 143 MB table (6M rows:
  int64, float64, a short utf8 column, 65,536-row batches): DoPut timed from `do_put` to the PutResult, DoGet
  from `do_get` to `read_all()`;
- our client library (FlightBenchmark doput / doget / doget-stream, a process per transfer, its own timing: doget
  keeps every batch until the end as `read_all` does, doget-stream drops each once decoded) and our CLI
  (`valkeyflight submit FILE --id …` and `valkeyflight get KEY -o FILE`, timed as whole processes, start-up and
  file reading included) move a 480 MB int64 + float64 file (30M rows, 65,536-row batches).

Each transfer records wall seconds and the CPU seconds (utime + stime) of the client and of the server while it
ran: servers and this process from /proc/PID/stat, child clients from wait4's rusage (the same counters, read
once the child exited). Each round also copies 480 MB once into fresh pages and once more into the same,
now resident, pages: what a receiver that keeps everything it gets can reach on this machine at best. Prints medians, CPU seconds per GB (10^9 bytes of the IPC stream) and ratios taken
inside each round, as a Markdown table. Environment: BENCH_DIR (data and `get -o` output; default /dev/shm if it
exists, else /tmp), BENCH_RAW (a file for every measurement, one JSON line each). Tool versions: pyarrow 26.0.1,
Python 3.11.
"""
import json
import os
import select
import statistics
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl

server_bin, bench_bin, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
workdir = os.environ.get("BENCH_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
raw = os.environ.get("BENCH_RAW", "")
python = sys.executable
peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flight_pyarrow.py")
ticks = os.sysconf("SC_CLK_TCK")


def log(text):
    print(f"bench-flight: {text}", file=sys.stderr, flush=True)


def make_data():
    """The two inputs, made once (same seed every time)."""
    small = os.path.join(workdir, "valkeyflight-bench-143mb.arrows")
    large = os.path.join(workdir, "valkeyflight-bench-480mb.arrows")
    rows_per_batch = 65536
    if not os.path.exists(small):
        rng = np.random.default_rng(13)
        words = np.array([f"w{i}" for i in range(1000)], dtype=object)
        schema = pa.schema([("id", pa.int64()), ("value", pa.float64()), ("label", pa.string())])
        with pa.ipc.new_stream(small + ".tmp", schema) as writer:
            for start in range(0, 6_000_000, rows_per_batch):
                n = min(rows_per_batch, 6_000_000 - start)
                writer.write_batch(pa.record_batch(
                    [pa.array(np.arange(start, start + n, dtype=np.int64)), pa.array(rng.random(n)),
                     pa.array(words[rng.integers(0, len(words), n)], type=pa.string())], schema=schema))
        os.rename(small + ".tmp", small)
        log(f"wrote {small}")
    if not os.path.exists(large):
        rng = np.random.default_rng(14)
        schema = pa.schema([("id", pa.int64()), ("value", pa.float64())])
        with pa.ipc.new_stream(large + ".tmp", schema) as writer:
            for start in range(0, 30_000_000, rows_per_batch):
                n = min(rows_per_batch, 30_000_000 - start)
                writer.write_batch(pa.record_batch(
                    [pa.array(np.arange(start, start + n, dtype=np.int64)), pa.array(rng.random(n))], schema=schema))
        os.rename(large + ".tmp", large)
        log(f"wrote {large}")
    return small, large


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # [0] is field 3 of proc(5)


def cpu(pid="self"):
    """utime + stime of every thread of a process, seconds."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / ticks


def faults(pid="self"):
    """Minor page faults of a process (pages the kernel mapped in, zeroed when new)."""
    return int(stat_fields(pid)[7])


def start_server(name, argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(f"/tmp/bench-flight-{name}.log", "w"), text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"bench-flight: {name} server did not start (see /tmp/bench-flight-{name}.log): {line!r}")
    return proc, line.split()[-1]


def run_child(argv):
    """Runs a client process; returns (wall seconds, CPU seconds from rusage, stdout)."""
    out = open(os.path.join(workdir, "bench-flight-child.out"), "w+")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    run_child.faults = usage.ru_minflt
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    out.seek(0)
    text = out.read()
    out.close()
    if proc.returncode != 0:
        sys.exit(f"bench-flight: {' '.join(argv)} failed ({proc.returncode}):\n{err}{text}")
    return wall, usage.ru_utime + usage.ru_stime, text


ceilings = []  # dicts: round, fresh, reused (GB/s of one copy of the 480 MB file's size)


def memory_ceiling(r, size):
    """This machine's bound for a receiver that keeps what it receives: one copy of `size` bytes into pages never
    touched before (the kernel faults in and zeroes each one), beside the same copy into pages already resident."""
    source = np.ones(size, dtype=np.uint8)
    target = np.empty(size, dtype=np.uint8)  # fresh pages: numpy's large allocations are mmap'd on demand
    t0 = time.perf_counter()
    np.copyto(target, source)
    t1 = time.perf_counter()
    np.copyto(target, source)
    t2 = time.perf_counter()
    ceilings.append({"round": r, "fresh": size / (t1 - t0) / 1e9, "reused": size / (t2 - t1) / 1e9})


def main():
    small, large = make_data()
    sizes = {"small": os.path.getsize(small), "large": os.path.getsize(large)}
    table = pa.ipc.open_stream(pa.memory_map(small)).read_all()
    batches = table.to_batches()
    log(f"143 MB table: {table.num_rows} rows in {len(batches)} batches, {sizes['small']} bytes of IPC stream; "
        f"480 MB file: {sizes['large']} bytes")
    servers = {}
    results = []  # dicts: round, op, client, server, seconds, client_cpu, server_cpu, bytes
    try:
        servers["ours"] = start_server("valkeyflight", [server_bin, "flight", "--listen", "127.0.0.1:0", "--ttl", "24h",
                                                        "--log-level", "warning"])
        servers["pyarrow"] = start_server("pyarrow", [python, peer, "server"])
        clients = {name: fl.FlightClient(loc) for name, (_, loc) in servers.items()}

        def put(name, key, reader_batches, schema):
            writer, reader = clients[name].do_put(fl.FlightDescriptor.for_path(*key.split("/")), schema)
            for b in reader_batches:
                writer.write_batch(b)
            writer.done_writing()
            result = reader.read()
            writer.close()
            return result

        def delete(name, key):
            list(clients[name].do_action(fl.Action("delete", key.encode())))

        large_batches = pa.ipc.open_stream(pa.memory_map(large)).read_all().to_batches()
        for name in servers:
            put(name, "bench/t143", batches, table.schema)
            put(name, "bench/t480", large_batches, large_batches[0].schema)
        del large_batches
        for name in servers:  # warm both connections and servers once
            clients[name].do_get(fl.Ticket(b"bench/t143")).read_all()

        def measure(r, op, client, server, size, body):
            pid = servers[server][0].pid
            s0, f0 = cpu(pid), faults(pid)
            record = body()
            record.update(round=r, op=op, client=client, server=server, bytes=size, server_cpu=cpu(pid) - s0,
                          server_faults=faults(pid) - f0)
            results.append(record)

        def pyarrow_put(r, server):
            def body():
                c0, f0 = cpu(), faults()
                t0 = time.perf_counter()
                put(server, f"bench/p{r}", batches, table.schema)
                seconds = time.perf_counter() - t0
                return {"seconds": seconds, "client_cpu": cpu() - c0, "client_faults": faults() - f0}
            measure(r, "doput", "pyarrow", server, sizes["small"], body)
            delete(server, f"bench/p{r}")

        def pyarrow_get(r, server):
            def body():
                c0, f0 = cpu(), faults()
                t0 = time.perf_counter()
                got = clients[server].do_get(fl.Ticket(b"bench/t143")).read_all()
                seconds = time.perf_counter() - t0
                assert got.num_rows == table.num_rows
                return {"seconds": seconds, "client_cpu": cpu() - c0, "client_faults": faults() - f0}
            measure(r, "doget", "pyarrow", server, sizes["small"], body)

        def library_put(r, server):
            def body():
                _, used, text = run_child([bench_bin, servers[server][1], "doput", large, f"bench/l{r}"])
                line = json.loads(text.strip().splitlines()[-1])
                return {"seconds": line["seconds"], "client_cpu": line["cpu"], "process_cpu": used,
                        "client_faults": line["page_faults"]}
            measure(r, "doput", "library", server, sizes["large"], body)

        def library_get(r, server, mode="doget", client="library"):
            def body():
                _, used, text = run_child([bench_bin, servers[server][1], mode, "bench/t480"])
                line = json.loads(text.strip().splitlines()[-1])
                return {"seconds": line["seconds"], "client_cpu": line["cpu"], "process_cpu": used,
                        "client_faults": line["page_faults"]}
            measure(r, "doget", client, server, sizes["large"], body)

        def library_stream(r, server):
            library_get(r, server, mode="doget-stream", client="library-stream")

        def cli_put(r, server):
            def body():
                wall, used, _ = run_child([server_bin, "submit", large, "--server", servers[server][1], "--queue",
                                           "bench", "--id", f"c{r}"])
                return {"seconds": wall, "client_cpu": used, "client_faults": run_child.faults}
            measure(r, "doput", "cli", server, sizes["large"], body)
            delete(server, f"bench/c{r}")

        def cli_get(r, server):
            out = os.path.join(workdir, "valkeyflight-bench-get.arrows")
            def body():
                wall, used, _ = run_child([server_bin, "get", "bench/t480", "--server", servers[server][1], "-o", out])
                return {"seconds": wall, "client_cpu": used, "client_faults": run_child.faults}
            measure(r, "doget", "cli", server, sizes["large"], body)
            os.unlink(out)

        steps = [pyarrow_put, pyarrow_get, library_put, library_get, library_stream, cli_put, cli_get]
        for r in range(pairs):
            memory_ceiling(r, sizes["large"])
            order = ["ours", "pyarrow"] if r % 2 == 0 else ["pyarrow", "ours"]
            log(f"pair {r + 1}/{pairs} ({order[0]} first); load average {os.getloadavg()[0]:.2f}")
            for step in steps:
                for server in order:
                    step(r, server)
        for c in clients.values():
            c.close()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    if raw:
        with open(raw, "w") as f:
            for record in results:
                f.write(json.dumps(record) + "\n")
    report(results)


def report(results):
    def pick(op, client, server):
        return {rec["round"]: rec for rec in results if (rec["op"], rec["client"], rec["server"]) == (op, client, server)}

    print(f"\nFlight throughput: median of {pairs} alternating pairs; load average at the end "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}. GB/s = 10^9 bytes of the IPC stream per wall second; "
          "CPU = utime + stime per GB moved; page faults = minor faults per 10^6 bytes (a 4 KiB page "
          "touched for the first time is one, so 244 per MB means every byte landed in fresh memory).\n")
    print("| transfer | → valkeyflight server | → pyarrow server | ours / pyarrow, median [min–max] | target |")
    print("|---|---|---|---|---|")
    rows = [("doput", "pyarrow", "DoPut, pyarrow client, 143 MB", 1.3),
            ("doget", "pyarrow", "DoGet, pyarrow client (`read_all`), 143 MB", 1.1),
            ("doput", "library", "DoPut, our library (FlightBenchmark), 480 MB", None),
            ("doget", "library", "DoGet, our library (batches decoded, validated, kept), 480 MB", None),
            ("doget", "library-stream", "DoGet, our library (each batch decoded, validated, dropped), 480 MB", None),
            ("doput", "cli", "`valkeyflight submit FILE`, 480 MB (whole process)", None),
            ("doget", "cli", "`valkeyflight get KEY -o FILE`, 480 MB (whole process)", None)]
    for op, client, label, target in rows:
        cells = []
        per_server = {}
        for server in ["ours", "pyarrow"]:
            recs = pick(op, client, server)
            if not recs:
                cells.append("–")
                continue
            per_server[server] = recs
            size = next(iter(recs.values()))["bytes"]
            gbps = size / statistics.median(x["seconds"] for x in recs.values()) / 1e9
            ccpu = statistics.median(x["client_cpu"] for x in recs.values()) / (size / 1e9)
            scpu = statistics.median(x["server_cpu"] for x in recs.values()) / (size / 1e9)
            wall = statistics.median(x["seconds"] for x in recs.values()) / (size / 1e9)
            cfault = statistics.median(x["client_faults"] for x in recs.values()) / (size / 1e6)
            sfault = statistics.median(x["server_faults"] for x in recs.values()) / (size / 1e6)
            cells.append(f"{gbps:.2f} GB/s (wall {wall:.2f} s/GB; CPU client {ccpu:.2f}, server {scpu:.2f} s/GB; "
                         f"page faults client {cfault:.0f}, server {sfault:.0f} per MB)")
        if len(per_server) == 2:
            ours, theirs = per_server["ours"], per_server["pyarrow"]
            ratios = [theirs[r]["seconds"] / ours[r]["seconds"] for r in ours if r in theirs]
            ratio = f"{statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}]"
        else:
            ratios, ratio = [], "–"
        if target is not None and ratios:
            goal = f"≥ {target}×: {'met' if statistics.median(ratios) >= target else '**missed**'}"
        elif client in ("library", "library-stream", "cli") and "ours" in per_server:
            need = 1.5 if client == "cli" else 3.0
            recs = per_server["ours"]
            size = next(iter(recs.values()))["bytes"]
            gbps = size / statistics.median(x["seconds"] for x in recs.values()) / 1e9
            goal = f"≥ {need} GB/s to ours: {'met' if gbps >= need else '**missed**'}"
        else:
            goal = "–"
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} | {goal} |")
    if ceilings:
        fresh = [c["fresh"] for c in ceilings]
        reused = [c["reused"] for c in ceilings]
        print(f"| this machine: one memcpy of 480 MB into fresh pages / into resident pages (numpy, the bound of "
              f"a receiver that keeps what it gets) | {statistics.median(fresh):.2f} GB/s "
              f"[{min(fresh):.2f}–{max(fresh):.2f}] | {statistics.median(reused):.2f} GB/s "
              f"[{min(reused):.2f}–{max(reused):.2f}] | – | – |")
    # The DoGet alternative of the issue: our server's CPU per GB against pyarrow's, pyarrow client.
    ours, theirs = pick("doget", "pyarrow", "ours"), pick("doget", "pyarrow", "pyarrow")
    if ours and theirs:
        pairs_ = [r for r in ours if r in theirs and theirs[r]["server_cpu"] > 0]
        cpu_ratio = [ours[r]["server_cpu"] / theirs[r]["server_cpu"] for r in pairs_]
        if cpu_ratio:
            # /proc/PID/stat counts in 10 ms ticks, coarse against the ~50 ms a server spends on one 143 MB DoGet:
            # the ratio of the totals over all pairs is the figure judged, the per-pair range is shown beside it.
            total = sum(ours[r]["server_cpu"] for r in pairs_) / sum(theirs[r]["server_cpu"] for r in pairs_)
            print(f"| DoGet, pyarrow client: our server's CPU / pyarrow server's CPU (total over the pairs) | – | – | "
                  f"{total:.2f} [per pair {min(cpu_ratio):.2f}–{max(cpu_ratio):.2f}] | "
                  f"≤ 0.6 (with DoGet ≥ 1.0×): {'met' if total <= 0.6 else '**missed**'} |")


if __name__ == "__main__":
    main()
