#!/usr/bin/env python3
"""Throughput of RQ, arq and BullMQ on N trivial jobs against one running valkey-server (scripts/bench-pipeline).

    bench_queues.py run SYSTEM --url redis://127.0.0.1:PORT --jobs N [--workers W] [--concurrency C] [--timeout S]

prints one JSON line: {"system", "jobs", "seconds", "enqueue_seconds", "ok", "failed", "valkey_commands"}; exit status 0 only when all
N jobs completed with the right result within --timeout (otherwise the JSON says why, exit 1; 3 on timeout).

Every run: W worker processes (`bench_queues.py worker SYSTEM …`) start, import the library, connect and report
ready; then the clock starts, the driver enqueues all N jobs with the library's bulk/concurrent producer API, tells
the workers to go, and the clock stops when the last job has finished:
  rq      Queue.enqueue_many in pipelines of 1000; each worker process is one SimpleWorker (runs jobs in-process,
          no fork per job) in burst mode, one job at a time.
  arq     ArqRedis.enqueue_job with 32 calls in flight; each worker process is one arq Worker in burst mode with
          max_jobs=C and poll_delay=--arq-poll-delay (arq's default 0.5 s idles between polls of 100 job ids).
  bullmq  Queue.addBulk in chunks of 1000; each worker process is one bullmq Worker with concurrency=C (BullMQ has
          no burst mode: the driver watches the completed set and stops the workers once it holds N).
The end time is the latest "job finished" instant any worker reports (time.monotonic is system-wide on Linux).
The job (jobs.py) returns its argument, the job's index: RQ and arq pickle the call, BullMQ stores JSON data
{"value": i}; every library stores the return value (their defaults); check_results counts the stored results
and reads the first and last back (RQ, BullMQ).
The caller flushes the database and resets its command statistics before each run; "valkey_commands" in the report
is what the server executed until the workers stopped (enqueue, processing, heartbeats; commands inside Lua scripts
count), without the driver's own checks.
"""

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jobs  # noqa: E402  (the job functions, importable by name for RQ)

SYSTEMS = ("rq", "arq", "bullmq")
QUEUE = "bench"
CHUNK = 1000
ARQ_IN_FLIGHT = 32


class Timeout(Exception):
    pass


# --- worker side -------------------------------------------------------------------------------------------------


def worker_main(args):
    # Protocol lines go to the original stdout; anything the libraries print goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def say(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    if args.system == "rq":
        rq_worker(args, say)
    elif args.system == "arq":
        asyncio.run(arq_worker(args, say))
    else:
        asyncio.run(bullmq_worker(args, say))


def wait_for_go():
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit(0)  # the driver went away (EOF) or gave up


def rq_worker(args, say):
    from redis import Redis
    from rq import Queue, SimpleWorker

    connection = Redis.from_url(args.url)
    connection.ping()
    worker = SimpleWorker([Queue(QUEUE, connection=connection)], connection=connection)
    say({"ready": True})
    wait_for_go()
    worker.work(burst=True, logging_level="WARNING")
    # RQ keeps its job counts in Valkey (and drops the worker's key at exit): the driver counts the registries.
    say({"done": time.monotonic(), "ok": None, "failed": None})


async def arq_worker(args, say):
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    worker = Worker(functions=[func(jobs.arq_echo, name="echo")], redis_settings=RedisSettings.from_dsn(args.url),
                    queue_name=QUEUE, burst=True, max_jobs=args.concurrency, poll_delay=args.arq_poll_delay,
                    handle_signals=False)
    # Connect before reporting ready (main() would otherwise do it after "go").
    from arq.connections import create_pool
    worker._pool = await create_pool(worker.redis_settings, default_queue_name=QUEUE)
    await worker.pool.ping()
    say({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, wait_for_go)
    await worker.async_run()
    done = time.monotonic()
    ok, failed = worker.jobs_complete, worker.jobs_failed
    await worker.close()
    say({"done": done, "ok": ok, "failed": failed})


async def bullmq_worker(args, say):
    from bullmq import Worker

    import redis.asyncio

    probe = redis.asyncio.Redis.from_url(args.url)
    await probe.ping()
    await probe.aclose()
    state = {"ok": 0, "failed": 0, "last": None}

    def completed(job, result):
        state["ok"] += 1
        state["last"] = time.monotonic()

    def failed(job, error):
        state["failed"] += 1
        state["last"] = time.monotonic()

    say({"ready": True})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, wait_for_go)
    worker = Worker(QUEUE, jobs.bullmq_echo, {"connection": args.url, "concurrency": args.concurrency})
    worker.on("completed", completed)
    worker.on("failed", failed)
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop", or EOF
    await worker.close()
    say({"done": state["last"], "ok": state["ok"], "failed": state["failed"]})


# --- driver side -------------------------------------------------------------------------------------------------


class Workers:
    """The worker processes of one run, with deadline-bounded line reads."""

    def __init__(self, args):
        command = [sys.executable, os.path.abspath(__file__), "worker", args.system, "--url", args.url,
                   "--concurrency", str(args.concurrency), "--arq-poll-delay", str(args.arq_poll_delay)]
        self.procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(args.workers)]

    def read_all(self, deadline):
        """One JSON line from every worker, or Timeout / RuntimeError."""
        pending = {p.stdout.fileno(): p for p in self.procs}
        lines = {}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"{len(pending)} of {len(self.procs)} workers did not answer")
            readable, _, _ = select.select(list(pending), [], [], left)
            for fd in readable:
                proc = pending.pop(fd)
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"worker {proc.pid} exited with status {proc.wait()} before answering")
                lines[proc.pid] = json.loads(line)
        return [lines[p.pid] for p in self.procs]

    def send(self, word):
        for proc in self.procs:
            try:
                proc.stdin.write(word + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass

    def stop(self):
        for proc in self.procs:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        end = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def enqueue_rq(url, count):
    from redis import Redis
    from rq import Queue

    queue = Queue(QUEUE, connection=Redis.from_url(url))
    for start in range(0, count, CHUNK):
        queue.enqueue_many([Queue.prepare_data(jobs.echo, (i,)) for i in range(start, min(count, start + CHUNK))])


def enqueue_arq(url, count):
    from arq.connections import RedisSettings, create_pool

    async def run():
        pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE)
        next_index = iter(range(count))

        async def producer():
            for i in next_index:
                if await pool.enqueue_job("echo", i) is None:
                    raise RuntimeError(f"arq refused job {i}")

        await asyncio.gather(*(producer() for _ in range(ARQ_IN_FLIGHT)))
        await pool.aclose()

    asyncio.run(run())


def enqueue_bullmq(url, count):
    from bullmq import Queue

    async def run():
        queue = Queue(QUEUE, {"connection": url})
        for start in range(0, count, CHUNK):
            await queue.addBulk([{"name": "echo", "data": {"value": i}} for i in range(start, min(count, start + CHUNK))])
        await queue.close()

    asyncio.run(run())


def wait_bullmq_completed(url, count, deadline):
    """Waits until the completed and failed sets hold `count` jobs; returns how many commands that took (they are
    the driver's, not BullMQ's: they are subtracted from the command count). Only decides when to stop the workers:
    the end time is the last completion the workers saw, so the 50 ms period does not show in the result."""
    from redis import Redis

    connection = Redis.from_url(url)
    commands = 0
    while True:
        pipe = connection.pipeline(transaction=False)
        pipe.zcard(f"bull:{QUEUE}:completed")
        pipe.zcard(f"bull:{QUEUE}:failed")
        done = sum(pipe.execute())
        commands += 2
        if done >= count:
            return commands
        if time.monotonic() >= deadline:
            raise Timeout(f"only {done} of {count} BullMQ jobs finished")
        time.sleep(0.05)


def valkey_commands(url):
    """Commands the server executed since CONFIG RESETSTAT (scripts' inner calls included)."""
    from redis import Redis

    stats = Redis.from_url(url).info("commandstats")
    return sum(entry["calls"] for entry in stats.values())


def rq_counts(url):
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    queue = Queue(QUEUE, connection=Redis.from_url(url))
    return FinishedJobRegistry(queue=queue).count, FailedJobRegistry(queue=queue).count


def check_results(system, url, count):
    """Spot-checks that finished jobs carry their argument back (first, middle and last)."""
    from redis import Redis

    connection = Redis.from_url(url)
    if system == "rq":
        from rq import Queue
        from rq.registry import FinishedJobRegistry

        queue = Queue(QUEUE, connection=connection)
        registry = FinishedJobRegistry(queue=queue)
        finished = registry.get_job_ids()
        if len(finished) != count:
            raise RuntimeError(f"RQ finished registry holds {len(finished)} jobs, expected {count}")
        for job_id in (finished[0], finished[-1]):
            job = queue.fetch_job(job_id)
            if job.return_value() != job.args[0]:
                raise RuntimeError(f"RQ job {job_id} returned {job.return_value()!r} for {job.args[0]!r}")
    elif system == "arq":
        keys = sum(1 for _ in connection.scan_iter(match="arq:result:*", count=1000))
        if keys != count:
            raise RuntimeError(f"arq stored {keys} results, expected {count}")
    else:
        completed = connection.zcard(f"bull:{QUEUE}:completed")
        if completed != count:
            raise RuntimeError(f"BullMQ completed set holds {completed} jobs, expected {count}")
        job_ids = connection.zrange(f"bull:{QUEUE}:completed", 0, 0) + connection.zrange(f"bull:{QUEUE}:completed", -1, -1)
        for job_id in job_ids:
            fields = connection.hmget(f"bull:{QUEUE}:{job_id.decode()}", "data", "returnvalue")
            if json.loads(fields[1]) != json.loads(fields[0]):
                raise RuntimeError(f"BullMQ job {job_id!r} returned {fields[1]!r} for {fields[0]!r}")


def driver_main(args):
    deadline = time.monotonic() + args.timeout
    report = {"system": args.system, "jobs": args.jobs, "workers": args.workers, "concurrency": args.concurrency}
    workers = Workers(args)
    status = 1
    try:
        workers.read_all(deadline)
        started = time.monotonic()
        {"rq": enqueue_rq, "arq": enqueue_arq, "bullmq": enqueue_bullmq}[args.system](args.url, args.jobs)
        enqueued = time.monotonic()
        if time.monotonic() >= deadline:
            raise Timeout("enqueueing alone took the whole time limit")
        workers.send("go")
        probe_commands = 0
        if args.system == "bullmq":
            probe_commands = wait_bullmq_completed(args.url, args.jobs, deadline)
            workers.send("stop")
        answers = workers.read_all(deadline)
        report["valkey_commands"] = valkey_commands(args.url) - probe_commands
        finished = max(a["done"] for a in answers if a["done"] is not None)
        if args.system == "rq":
            ok, failed = rq_counts(args.url)
        else:
            ok, failed = sum(a["ok"] for a in answers), sum(a["failed"] for a in answers)
        report.update(seconds=finished - started, enqueue_seconds=enqueued - started, ok=ok, failed=failed)
        if report["ok"] != args.jobs or report["failed"]:
            raise RuntimeError(f"{report['ok']} jobs completed and {report['failed']} failed, expected {args.jobs} completed")
        check_results(args.system, args.url, args.jobs)
        status = 0
    except Timeout as error:
        report["error"] = f"timeout after {args.timeout:g} s: {error}"
        status = 3
    except Exception as error:  # reported as a failed run, never silently
        report["error"] = f"{type(error).__name__}: {error}"
    finally:
        workers.stop()
    print(json.dumps(report), flush=True)
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "worker"):
        p = sub.add_parser(name)
        p.add_argument("system", choices=SYSTEMS)
        p.add_argument("--url", required=True, help="redis://HOST:PORT of the server (unix:///path also works)")
        p.add_argument("--concurrency", type=int, default=8, help="jobs in flight per arq/BullMQ worker process")
        p.add_argument("--arq-poll-delay", type=float, default=0.01, help="arq Worker poll_delay in seconds")
        if name == "run":
            p.add_argument("--jobs", type=int, default=10000)
            p.add_argument("--workers", type=int, default=2, help="worker processes")
            p.add_argument("--timeout", type=float, default=290, help="seconds before the run is abandoned")
    args = parser.parse_args()
    if args.command == "worker":
        worker_main(args)
        return 0
    if args.jobs <= 0 or args.workers <= 0 or args.concurrency <= 0 or args.timeout <= 0:
        parser.error("--jobs, --workers, --concurrency and --timeout must be positive")
    return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
