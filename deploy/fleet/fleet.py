"""A local litestream fleet: N replicas behind HAProxy, with Redis and Prometheus.

`Fleet` starts and stops the parts as detached processes and remembers them in a state
directory (`state.json`, the logs, Prometheus' data), so `up` and `down` may run from different
commands (`make fleet`, `make fleet-stop`) and the autoscaler (`deploy/fleet/autoscale.py`) and
the fleet test (`python -m loadtest.fleet`) drive the same fleet. The configuration is the
documented files beside this module: haproxy.cfg, prometheus.yml, redis.conf.

Replicas join HAProxy at run time over its runtime API once their /readyz is green, and leave
it by a drain that cuts no stream: `set server ... state drain` (no new stream goes there),
SIGTERM (litestream's own drain: /readyz 503, new handshakes 503, open streams go on for
LITESTREAM_DRAIN_GRACE_S), wait for the process to exit, then `del server`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_STATE_DIR = ROOT / ".fleet"
DEFAULT_BASE_PORT = 8780
BACKEND = "replicas"
# Dynamic servers do not read `default-server`, so every replica's check settings are here
# (haproxy.cfg explains them): out within ~1 s of turning unready, back after 2 good checks.
SERVER_OPTIONS = "check inter 500ms fall 2 rise 2"
READY_TIMEOUT_S = 300.0
PARTS = ("haproxy", "redis", "prometheus")  # the parts besides the replicas
LOG_START = "== fleet: started"  # the line before each process's output in its log


class FleetError(Exception):
    """A part did not start, or the fleet is not in the state a command needs."""


# ---------------------------------------------------------------- ports and state

@dataclass(frozen=True)
class Ports:
    """Every port of a fleet, from one base: base = the public port (HAProxy)."""

    base: int

    @property
    def public(self) -> int:
        return self.base

    @property
    def stats(self) -> int:
        return self.base + 1

    @property
    def prometheus(self) -> int:
        return self.base + 2

    @property
    def redis(self) -> int:
        return self.base + 3

    def replica(self, index: int) -> int:
        return self.base + 10 + index


@dataclass
class Replica:
    name: str
    index: int
    port: int
    pid: int


@dataclass
class State:
    base_port: int
    replica_args: list[str]
    pids: dict[str, int] = field(default_factory=dict)  # haproxy, redis, prometheus
    replicas: dict[str, Replica] = field(default_factory=dict)
    # Unused since replicas take the lowest free index (Fleet.start_replica); kept so that a
    # state file written before still loads.
    next_index: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> State:
        raw = json.loads(text)
        raw["replicas"] = {k: Replica(**v) for k, v in raw["replicas"].items()}
        return cls(**raw)


# ---------------------------------------------------------------- processes

def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a detached replica is reaped by
    init, or by whichever of our processes started it)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def stop_pid(pid: int, timeout_s: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """`sig`, then SIGKILL if the process is still there after `timeout_s`."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_exit(pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 5.0)


def spawn(args: Sequence[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> int:
    """A detached process (its own session, so it outlives the command that started it and a
    Ctrl-C there), its output appended to `log`."""
    with open(log, "ab") as out:
        # Logs are appended (a replica's name, and so its log, is reused once it is gone):
        # this line marks where each process's output starts.
        out.write(f"{LOG_START} {time.strftime('%Y-%m-%dT%H:%M:%S')} "
                  f"{' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.Popen(list(args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, TimeoutError):
        return None


def http_text(url: str, timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return str(resp.read().decode("utf-8"))


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, pid: int | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if pid is not None and not alive(pid):
            text = log.read_text(errors="replace") if log and log.exists() else ""
            tail = text.rsplit(LOG_START, 1)[-1][-2000:]  # this process's output only
            raise FleetError(f"{what}: the process exited\n{tail}")
        if time.monotonic() > deadline:
            raise FleetError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.1)


# ---------------------------------------------------------------- HAProxy's runtime API

def haproxy_command(sock_path: Path, command: str, timeout_s: float = 5.0) -> str:
    """One runtime API command (non-interactive: HAProxy answers and closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(sock_path))
        sock.sendall(command.encode("ascii") + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_stat(csv_text: str) -> list[dict[str, str]]:
    """`show stat` CSV (its header line starts with '# ') into one dict per row."""
    lines = [line for line in csv_text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return []
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]


# ---------------------------------------------------------------- the fleet

class Fleet:
    """One fleet, remembered in `state_dir`. Methods that change it save the state at once."""

    def __init__(self, state_dir: Path, state: State) -> None:
        self.dir = state_dir
        self.state = state
        self.ports = Ports(state.base_port)
        # The autoscaler drains in threads while it may start replicas: one writer at a time.
        self._lock = threading.RLock()
        self._starting: set[int] = set()  # replica indices being started (start_replica)
        self._stopped = False  # the state file was removed by `down` (reload)

    # ------------------------------------------------ opening

    @classmethod
    def load(cls, state_dir: Path = DEFAULT_STATE_DIR) -> Fleet:
        path = state_dir / "state.json"
        if not path.exists():
            raise FleetError(f"no fleet in {state_dir} (start one with `make fleet`)")
        return cls(state_dir, State.from_json(path.read_text()))

    @classmethod
    def up(cls, replicas: int, *, base_port: int = DEFAULT_BASE_PORT,
           state_dir: Path = DEFAULT_STATE_DIR, replica_args: Sequence[str] = (),
           say: Callable[[str], None] = print) -> Fleet:
        """Start Redis, HAProxy and Prometheus, then `replicas` replicas; returns when HAProxy
        routes to every one of them."""
        if (state_dir / "state.json").exists():
            old = cls.load(state_dir)
            if old.running():
                raise FleetError(f"a fleet is already running from {state_dir} "
                                 "(stop it with `make fleet-stop`)")
        ports = Ports(base_port)
        for what, port in (("haproxy", ports.public), ("haproxy's stats", ports.stats),
                           ("prometheus", ports.prometheus), ("redis", ports.redis)):
            # HAProxy binds with SO_REUSEPORT and the start checks only that a port answers,
            # so a port already taken (another fleet, another checkout's) would seem to start.
            if not _port_free(port):
                raise FleetError(f"port {port} ({what}) is already in use: stop what holds "
                                 "it, or choose another --base-port")
        for tool in ("haproxy", "redis-server", "prometheus"):
            if shutil.which(tool) is None:
                raise FleetError(f"{tool} is not installed (deploy/fleet/install-deps.sh)")
        state_dir.mkdir(parents=True, exist_ok=True)
        fleet = cls(state_dir, State(base_port=base_port, replica_args=list(replica_args)))
        fleet.save()
        try:
            fleet._start_redis()
            fleet._start_haproxy()
            fleet._start_prometheus()
            say(f"redis, haproxy and prometheus up; starting {replicas} replicas")
            fleet.add_replicas(replicas)
        except BaseException:
            fleet.down(say=say)
            raise
        return fleet

    def on_disk(self) -> Fleet:
        """The fleet as its state file says now: another process (the autoscaler, `scale`)
        may have started or stopped replicas since this object was loaded, and stopping the
        fleet from a stale copy would leave the replicas it never saw running. This object
        when there is no state file, or it cannot be read."""
        try:
            return Fleet.load(self.dir)
        except (FleetError, OSError, ValueError, TypeError, KeyError):
            return self

    def reload(self) -> bool:
        """Take the state file's view of the fleet, for a process that outlives one command
        (the autoscaler): `scale` may have added or drained replicas since, and a copy kept
        in memory would write them out of the state at its next save, leaving them running
        where `make fleet-stop` never sees them. False once the fleet was stopped (`down`
        removed the state file); this object then never writes the file again, which would
        bring back a fleet that is gone."""
        try:
            state = Fleet.load(self.dir).state
        except FleetError:
            with self._lock:
                self._stopped = True
            return False
        except (OSError, ValueError, TypeError, KeyError):
            return True  # being rewritten: keep this copy for now
        with self._lock:
            self.state = state
        return True

    def save(self) -> None:
        with self._lock:
            if self._stopped:
                return
            tmp = self.dir / "state.json.tmp"
            tmp.write_text(self.state.to_json())
            tmp.replace(self.dir / "state.json")

    def running(self) -> bool:
        pids = list(self.state.pids.values()) + [r.pid for r in self.state.replicas.values()]
        return any(alive(pid) for pid in pids)

    # ------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """The public WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.ports.public}/v1/stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def socket_path(self) -> Path:
        return self.dir / "haproxy.sock"

    def replica_url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.state.replicas[name].port}{path}"

    # ------------------------------------------------ the outside parts

    def _start_redis(self) -> None:
        log = self.dir / "redis.log"
        pid = spawn(["redis-server", str(HERE / "redis.conf"), "--port", str(self.ports.redis),
                     "--dir", str(self.dir)], log)
        self.state.pids["redis"] = pid
        self.save()
        wait_until("redis", lambda: _tcp_open(self.ports.redis), 20, pid, log)

    def start_redis(self) -> None:
        """Start Redis again after `stop_redis` (same port, empty)."""
        if alive(self.state.pids.get("redis", 0) or -1):
            return
        self._start_redis()

    def stop_redis(self) -> None:
        pid = self.state.pids.get("redis")
        if pid is not None:
            stop_pid(pid, 10)

    def _start_haproxy(self) -> None:
        log = self.dir / "haproxy.log"
        env = dict(os.environ,
                   FLEET_BIND=f"127.0.0.1:{self.ports.public}",
                   FLEET_STATS=f"127.0.0.1:{self.ports.stats}",
                   FLEET_SOCKET=str(self.socket_path))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(HERE / "haproxy.cfg")],
                               env=env, capture_output=True, text=True)
        if check.returncode != 0:
            raise FleetError(f"haproxy.cfg: {check.stdout}{check.stderr}")
        # -db: stay in the foreground (the process is detached all the same), log to stderr.
        pid = spawn(["haproxy", "-db", "-f", str(HERE / "haproxy.cfg")], log, env=env)
        self.state.pids["haproxy"] = pid
        self.save()
        wait_until("haproxy", lambda: self.socket_path.exists()
                   and _tcp_open(self.ports.public), 20, pid, log)

    def _start_prometheus(self) -> None:
        log = self.dir / "prometheus.log"
        shutil.copyfile(HERE / "prometheus.yml", self.dir / "prometheus.yml")
        self._write_targets()
        pid = spawn(["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
                     "--storage.tsdb.retention.time=1d",
                     f"--web.listen-address=127.0.0.1:{self.ports.prometheus}"], log)
        self.state.pids["prometheus"] = pid
        self.save()
        wait_until("prometheus", lambda: http_status(f"{self.prometheus_url}/-/ready") == 200,
                   60, pid, log)

    def restart(self, part: str) -> None:
        """Start a part again whose process is gone (a crash, an OOM kill, `kill`): redis
        (empty: the replicas fill it again), prometheus (its data kept), or haproxy, which
        then gets every replica back (they were added at run time, not in haproxy.cfg): each
        is marked UP or DOWN by its own checks, as before."""
        if part not in PARTS:
            raise FleetError(f"no part {part!r} (one of {', '.join(PARTS)})")
        pid = self.state.pids.get(part)
        if pid is not None and alive(pid):
            raise FleetError(f"{part} is running (pid {pid})")
        if part == "redis":
            self._start_redis()
        elif part == "prometheus":
            self._start_prometheus()
        else:
            self.socket_path.unlink(missing_ok=True)  # the dead one's: "started" too early
            self._start_haproxy()
            for replica in list(self.state.replicas.values()):
                if alive(replica.pid):
                    self.join(replica)

    def _write_targets(self) -> None:
        """The file_sd target lists prometheus.yml names; written whole, then renamed."""
        with self._lock:
            replicas = [{"targets": [f"127.0.0.1:{r.port}"], "labels": {"replica": r.name}}
                        for r in self.state.replicas.values()]
            haproxy = [{"targets": [f"127.0.0.1:{self.ports.stats}"]}]
            for name, doc in (("replicas.json", replicas), ("haproxy.json", haproxy)):
                tmp = self.dir / (name + ".tmp")
                tmp.write_text(json.dumps(doc, indent=1))
                tmp.replace(self.dir / name)

    # ------------------------------------------------ replicas

    def replica_command(self, port: int) -> list[str]:
        # HAProxy connects from loopback and names the client (haproxy.cfg: forwardfor).
        args = [sys.executable, "-m", "litestream", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--trusted-proxies", "127.0.0.1"]
        if _has_shared_cache():
            args += ["--cache-url", self.redis_url]
        return args + list(self.state.replica_args)

    def start_replica(self) -> Replica:
        """Spawn one replica (not yet in HAProxy: `join` adds it once it is ready).

        It takes the lowest index that no replica holds and whose port is free: an index that
        only grew (r1, r2, ... r300 over a day of autoscaling) walked the replicas' ports far
        past the fleet's block, into other services' ports (9090 from the default base), and a
        port something else holds would only make the replica exit at start."""
        with self._lock:
            held = {r.index for r in self.state.replicas.values()} | self._starting
            index = next(i for i in itertools.count(1)
                         if i not in held and _port_free(self.ports.replica(i)))
            # Reserved until the replica is in the state: its port is not bound yet.
            self._starting.add(index)
        name = f"r{index}"
        port = self.ports.replica(index)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LITESTREAM_")}
        env["PYTHONPATH"] = str(ROOT)
        try:
            pid = spawn(self.replica_command(port), self.dir / f"{name}.log", env=env)
            with self._lock:
                replica = self.state.replicas[name] = Replica(name, index, port, pid)
        finally:
            with self._lock:
                self._starting.discard(index)
        self.save()
        self._write_targets()
        return replica

    def wait_ready(self, replica: Replica, timeout_s: float = READY_TIMEOUT_S) -> None:
        wait_until(f"replica {replica.name}",
                   lambda: http_status(self.replica_url(replica.name, "/readyz")) == 200,
                   timeout_s, replica.pid, self.dir / f"{replica.name}.log")

    def join(self, replica: Replica) -> None:
        """Put a ready replica into HAProxy's rotation (dynamic servers start in maintenance,
        with their checks off)."""
        server = f"{BACKEND}/{replica.name}"
        for command in (f"add server {server} 127.0.0.1:{replica.port} {SERVER_OPTIONS}",
                        f"enable health {server}", f"enable server {server}"):
            answer = haproxy_command(self.socket_path, command).strip()
            if answer and "New server registered" not in answer:
                raise FleetError(f"haproxy: {command}: {answer}")

    def add_replicas(self, count: int) -> list[Replica]:
        """Start `count` replicas at once, join each to HAProxy as it turns ready, and return
        when HAProxy has marked every one UP. A replica that exits at start or is not ready in
        time is stopped and forgotten (nothing of it is left in the state, HAProxy or
        Prometheus), the others still join, and then FleetError says what failed."""
        started = [self.start_replica() for _ in range(count)]
        joined: list[Replica] = []
        failed: list[str] = []
        for replica in started:
            try:
                self.wait_ready(replica)
                self.join(replica)
            except (FleetError, OSError) as exc:  # OSError: HAProxy's socket
                stop_pid(replica.pid, 5)
                self.forget(replica.name)
                failed.append(str(exc))
                continue
            joined.append(replica)
        names = {replica.name for replica in joined}
        wait_until("haproxy: every new replica UP",
                   lambda: all(self.server_states().get(n) == "UP" for n in names), 10)
        if failed:
            raise FleetError("\n".join(failed))
        return joined

    def drain(self, name: str, timeout_s: float | None = None) -> None:
        """Take a replica away without cutting a stream: HAProxy sends it nothing new, SIGTERM
        starts litestream's drain, the process exits when its streams are done (or its grace
        is over), then it leaves HAProxy and Prometheus."""
        replica = self.state.replicas[name]
        server = f"{BACKEND}/{name}"
        with contextlib.suppress(OSError):
            haproxy_command(self.socket_path, f"set server {server} state drain")
        stop_pid(replica.pid, timeout_s if timeout_s is not None else self.drain_timeout_s())
        self.forget(name)

    def kill(self, name: str) -> None:
        """SIGKILL a replica (a crash), leaving it in HAProxy for its checks to find."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.state.replicas[name].pid, signal.SIGKILL)
        wait_exit(self.state.replicas[name].pid, 5)

    def forget(self, name: str) -> None:
        """Remove a replica whose process is gone from HAProxy, Prometheus and the state."""
        server = f"{BACKEND}/{name}"
        with contextlib.suppress(OSError):
            haproxy_command(self.socket_path, f"set server {server} state maint")
            # del server needs the server's connections gone; HAProxy closes them shortly.
            deadline = time.monotonic() + 10
            while True:
                answer = haproxy_command(self.socket_path, f"del server {server}")
                # "No such server": it never joined (it failed to start), or it is gone.
                if ("Server deleted" in answer or "No such server" in answer
                        or time.monotonic() > deadline):
                    break
                time.sleep(0.2)
        with self._lock:
            self.state.replicas.pop(name, None)
        self.save()
        self._write_targets()

    def reap(self, names: Sequence[str] | None = None) -> list[str]:
        """Forget the replicas (of `names`, or all) whose process is gone: a crash, an OOM
        kill. A dead replica stays DOWN in HAProxy and in the state until then, where `scale`
        and the autoscaler would count it as serving and never start its replacement."""
        with self._lock:
            dead = [n for n in (self.state.replicas if names is None else names)
                    if n in self.state.replicas and not alive(self.state.replicas[n].pid)]
        for name in dead:
            self.forget(name)
        return dead

    def drain_timeout_s(self) -> float:
        """How long a drained replica may take: its grace (LITESTREAM_DRAIN_GRACE_S or the
        --drain-grace-s in replica_args, 30 s by default) and 15 s to close and exit."""
        args = self.state.replica_args
        grace = 30.0
        if "--drain-grace-s" in args:
            grace = float(args[args.index("--drain-grace-s") + 1])
        return grace + 15.0

    # ------------------------------------------------ looking

    def server_states(self) -> dict[str, str]:
        """HAProxy's view of each replica: UP, DOWN, DRAIN, MAINT (with check detail)."""
        rows = parse_stat(haproxy_command(self.socket_path, "show stat"))
        return {row["svname"]: row["status"].split(" ")[0] for row in rows
                if row.get("pxname") == BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")}

    def admin_states(self) -> dict[str, int]:
        """HAProxy's admin state of each replica: 0 in rotation (UP, or DOWN by its checks),
        8 drained by the runtime API, 1 in maintenance (other bits: other kinds of either)."""
        text = haproxy_command(self.socket_path, f"show servers state {BACKEND}")
        rows = [line.split() for line in text.splitlines()[1:]
                if line.strip() and not line.startswith("#")]
        return {row[3]: int(row[6]) for row in rows if len(row) > 6}

    def server_sessions(self) -> dict[str, int]:
        """Open connections (streams) HAProxy has on each replica right now."""
        rows = parse_stat(haproxy_command(self.socket_path, "show stat"))
        return {row["svname"]: int(row["scur"] or 0) for row in rows
                if row.get("pxname") == BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")}

    def prometheus_query(self, query: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        doc = json.loads(http_text(url, timeout_s=5))
        if doc.get("status") != "success":
            raise FleetError(f"prometheus: {doc}")
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def describe(self) -> str:
        states = {}
        with contextlib.suppress(OSError):
            states = self.server_states()

        def life(part: str) -> str:
            pid = self.state.pids.get(part)
            if pid is None:
                return ""
            return (f"  pid {pid}  alive" if alive(pid) else
                    f"  pid {pid}  GONE: python -m deploy.fleet restart {part}")

        lines = [f"public   {self.url}  (HTTP: {self.http_url})",
                 f"haproxy  http://127.0.0.1:{self.ports.stats}/stats  (metrics: /metrics)"
                 + life("haproxy"),
                 f"prometheus {self.prometheus_url}" + life("prometheus"),
                 f"redis    {self.redis_url}" + life("redis")]
        for r in self.state.replicas.values():
            state = "alive" if alive(r.pid) else "gone"
            lines.append(f"{r.name:8} http://127.0.0.1:{r.port}  pid {r.pid}  {state}  "
                         f"haproxy {states.get(r.name, '-')}")
        return "\n".join(lines)

    # ------------------------------------------------ stopping

    def down(self, say: Callable[[str], None] = print) -> None:
        """Drain every replica at once (no stream is cut), then stop the other parts."""
        names = list(self.state.replicas)
        if names:
            say(f"draining {', '.join(names)}")
            with contextlib.suppress(OSError):
                for name in names:
                    haproxy_command(self.socket_path, f"set server {BACKEND}/{name} state drain")
            for name in names:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.state.replicas[name].pid, signal.SIGTERM)
            for name in names:
                stop_pid(self.state.replicas[name].pid, self.drain_timeout_s())
                self.state.replicas.pop(name)
                self.save()
        for part in ("prometheus", "haproxy", "redis"):
            pid = self.state.pids.pop(part, None)
            if pid is not None:
                stop_pid(pid, 15)
                self.save()
        (self.dir / "state.json").unlink(missing_ok=True)
        say("fleet stopped")


def _has_shared_cache() -> bool:
    """Whether this litestream has the Redis sentence cache (--cache-url)."""
    from dataclasses import fields

    from litestream.config import Config
    return any(f.name == "cache_url" for f in fields(Config))


def _port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port (a bind without SO_REUSEPORT fails while
    anything does, HAProxy's SO_REUSEPORT listeners too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.contextmanager
def running_fleet(replicas: int, **kwargs: object) -> Iterator[Fleet]:
    """A fleet for the length of a `with` block (the fleet test, the autoscaler's demo)."""
    fleet = Fleet.up(replicas, **kwargs)  # type: ignore[arg-type]
    try:
        yield fleet
    finally:
        fleet.on_disk().down(say=lambda *_: None)
