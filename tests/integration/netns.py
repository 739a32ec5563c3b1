"""Run docker-compose.yml's topology without Docker: one network namespace per service.

Every service gets its own namespace with its own address on a bridge (the bridge lives
in a namespace of its own, the "switch"), ``/etc/netns/<ns>/hosts`` so that service
names resolve (``ip netns exec`` bind-mounts it over /etc/hosts), and its compose
``command`` run under ``ip netns exec`` with its compose ``environment`` (``${VAR:-x}``
interpolated). A named volume becomes a directory of the test: its mount point in the
command and environment is replaced by that directory. The test process itself reaches
the services through one more veth pair into the switch.

Everything made here (processes, namespaces, links, hosts files) is removed by
``close()``, which the context manager calls also on failure; names carry this
process's pid, and ``sweep()`` removes what an earlier, killed run left behind.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

PREFIX = "phc"
NETNS_ETC = Path("/etc/netns")
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def available() -> str | None:
    """Why this machine cannot run the topology, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def interpolate(value: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        found = env.get(match["name"])
        if found:
            return found
        return match["default"] or ""

    return INTERPOLATION.sub(one, value)


def load_compose(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def service_command(spec: Mapping[str, Any]) -> list[str]:
    command = spec["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def service_environment(spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    raw = spec.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(str(v), env) for k, v in raw.items()}


def start_order(services: Mapping[str, Any]) -> list[str]:
    """Services with what they depend on first (compose's depends_on)."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise ValueError(f"depends_on cycle: {' -> '.join((*path, name))}")
        for dep in services[name].get("depends_on") or []:
            visit(dep, (*path, name))
        order.append(name)

    for name in services:
        visit(name, ())
    return order


@dataclass
class Service:
    name: str
    namespace: str
    address: str
    veth: str  # the switch's end of its link
    command: list[str]
    environment: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Topology:
    """The compose services in namespaces; see the module docstring."""

    compose: dict[str, Any]
    workdir: Path
    #: where the services' ``pageholder`` comes from (put first on their PATH)
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    subnet: int = 231  # 10.<subnet>.0.0/24
    services: dict[str, Service] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)
    made_namespaces: list[str] = field(default_factory=list)
    host_link: str = ""

    @property
    def tag(self) -> str:
        return f"{PREFIX}{os.getpid() % 100000}"

    def url(self, service: str, port: int) -> str:
        return f"http://{self.services[service].address}:{port}"

    # -- building ----------------------------------------------------------------------

    def build(self, env: Mapping[str, str]) -> None:
        tag = self.tag
        switch = f"{tag}-sw"
        self._netns(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        # the test's own way in: a veth from this namespace into the switch
        self.host_link = f"{tag}h"
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", "hostp", "netns", switch)
        _ip("-n", switch, "link", "set", "hostp", "master", "br0", "up")
        _ip("addr", "add", f"10.{self.subnet}.0.1/24", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        # The default topology: services in a profile (`ha`) start only when asked for.
        names = [n for n, spec in self.compose["services"].items() if not spec.get("profiles")]
        hosts = "127.0.0.1 localhost\n" + "".join(
            f"10.{self.subnet}.0.{10 + i} {name}\n" for i, name in enumerate(names)
        )
        for volume in self.compose.get("volumes") or {}:
            self.volumes[volume] = self.workdir / f"volume-{volume}"
            self.volumes[volume].mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            spec = self.compose["services"][name]
            namespace = f"{tag}-{name}"
            self._netns(namespace)
            (NETNS_ETC / namespace).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / namespace / "hosts").write_text(hosts)
            veth = f"{tag}p{i}"
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", veth, "netns", switch)
            _ip("-n", switch, "link", "set", veth, "master", "br0", "up")
            address = f"10.{self.subnet}.0.{10 + i}"
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            command, environment = self._mounted(
                spec, service_command(spec), service_environment(spec, env)
            )
            self.services[name] = Service(
                name, namespace, address, veth, command, environment, self.workdir / f"{name}.log"
            )

    def _mounted(
        self, spec: Mapping[str, Any], command: list[str], environment: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        for mount in spec.get("volumes") or []:
            volume, target = str(mount).split(":", 1)
            where = str(self.volumes[volume])
            command = [arg.replace(target, where) if target in arg else arg for arg in command]
            environment = {k: v.replace(target, where) for k, v in environment.items()}
            environment.setdefault("PAGEHOLDER_DATA_DIR", where)
        return command, environment

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.made_namespaces.append(name)

    # -- running -----------------------------------------------------------------------

    def start(self, name: str) -> Service:
        service = self.services[name]
        env = {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **service.environment,
        }
        with service.log.open("ab") as log:
            service.process = subprocess.Popen(
                ["ip", "netns", "exec", service.namespace, *service.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # its own process group: stop() reaches sh's children
            )
        return service

    def wait_healthy(self, name: str, port: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        service = self.services[name]
        while time.monotonic() < deadline:
            if service.process is not None and service.process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{service.output()}")
            try:
                with httpx.Client(trust_env=False, timeout=1) as client:
                    if client.get(f"{self.url(name, port)}/readyz").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} not healthy after {timeout_s} s:\n{service.output()}")

    def wait_exit(self, name: str, timeout_s: float) -> int:
        process = self.services[name].process
        assert process is not None
        return process.wait(timeout_s)

    def stop(self, name: str, timeout_s: float = 10) -> int | None:
        process = self.services[name].process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        _signal_group(process, signal.SIGTERM)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            return process.wait(timeout_s)

    def cut(self, name: str) -> None:
        """Take the service's link down at the switch: its packets go nowhere."""
        _ip("-n", f"{self.tag}-sw", "link", "set", self.services[name].veth, "down")

    def mend(self, name: str) -> None:
        _ip("-n", f"{self.tag}-sw", "link", "set", self.services[name].veth, "up")

    def close(self) -> None:
        for service in self.services.values():
            if service.process is not None and service.process.poll() is None:
                _signal_group(service.process, signal.SIGKILL)
                service.process.wait(10)
        if self.host_link:
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        for namespace in reversed(self.made_namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)

    def outputs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.output()}" for s in self.services.values())


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def sweep() -> None:
    """Remove namespaces and links that a killed earlier run of these tests left."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        if re.fullmatch(rf"{PREFIX}\d+-.+", name) and not name.startswith(
            f"{PREFIX}{os.getpid() % 100000}-"
        ):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for match in re.finditer(rf"^\d+: ({PREFIX}\d+h)@", links, re.M):
        subprocess.run(["ip", "link", "del", match[1]], capture_output=True)


@contextmanager
def topology(
    compose_file: Path, workdir: Path, env: Mapping[str, str], bin_dir: Path | None = None
) -> Iterator[Topology]:
    """The topology built, for the ``with`` block; ``bin_dir`` holds the ``pageholder``
    the services run (default: the one next to this interpreter)."""
    sweep()
    built = Topology(load_compose(compose_file), workdir)
    if bin_dir is not None:
        built.bin_dir = bin_dir
    try:
        built.build(env)
        yield built
    except BaseException:
        print(built.outputs())  # pytest shows it for a failed test
        raise
    finally:
        built.close()
