"""A real OpenSSH server on 127.0.0.1 standing in for an edge device.

``loopback`` starts Debian's ``/usr/sbin/sshd`` on a free port with a throwaway host key, logs in as a non-root
user (``edgetl-device``, created when missing) with a throwaway user key, and gives that user a Python venv with
NumPy and ONNX Runtime but no torch (built once under /tmp/edgetl-device-venv, reused by later runs). The client
side uses its own ``-F`` config, key and known_hosts in a temp dir: the engineer's ~/.ssh is never read.
Skips with the reason when not root, when sshd / ssh / ssh-keygen are missing, or when the venv cannot be built.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgetl.execution.ssh import DeviceAddress, SshDevice

DEVICE_USER = "edgetl-device"
SSHD = "/usr/sbin/sshd"
DEVICE_VENV = Path("/tmp/edgetl-device-venv")  # numpy + onnxruntime, no torch
BARE_VENV = Path("/tmp/edgetl-device-venv-bare")  # numpy only: the "runtime not installed" device


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device_python() -> str | None:
    """A python3 the device user can execute (root's pyenv under /root is not)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK) and not os.path.realpath(candidate).startswith("/root/"):
            return candidate
    return None


def _build_venv(path: Path, packages: list[str]) -> Path:
    """Make (once, under a lock) a venv with ``packages``; a ``.ready`` marker says it is complete."""
    python = path / "bin" / "python"
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".ready").is_file():
            return python
        base = _device_python()
        if base is None:
            pytest.skip("no python3 outside /root for the device user (need /usr/bin/python3)")
        shutil.rmtree(path, ignore_errors=True)
        steps = [[base, "-m", "venv", str(path)],
                 [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.skip(f"cannot build the device venv {path} ({' '.join(step[:4])}): {done.stderr[-300:]}")
        subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
        (path / ".ready").write_text(" ".join(packages))
    return python


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(DEVICE_USER)
    except KeyError:
        pass
    # "*" not "!": with UsePAM no, sshd refuses even key logins to a locked ("!") account
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", DEVICE_USER],
                   check=True, capture_output=True)
    return pwd.getpwnam(DEVICE_USER)


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True)
    return path


@dataclass
class Loopback:
    """The running sshd and everything a test needs to reach it."""

    root: Path  # temp dir: keys, configs, logs (readable by the device user)
    port: int
    user: str
    uid: int
    key: Path  # authorised
    wrong_key: Path  # not authorised
    ssh_config: Path
    workdir: str  # owned by the device user; measurements make their temp dirs here
    python: str  # the device venv's python (numpy + onnxruntime)
    bare_python: str  # numpy, no runtime
    sshd_log: Path

    def address(self, *, port: int | None = None, workdir: str | None = None, python: str | None = None,
                key: Path | None = None) -> DeviceAddress:
        url = f"ssh://{self.user}@127.0.0.1:{port or self.port}{workdir or self.workdir}"
        return DeviceAddress.parse(url, python=python or self.python, identity_file=key or self.key)

    def device(self, *, ssh_config: Path | None = None, connect_timeout_s: float = 5.0,
               command_timeout_s: float = 120.0, **address: object) -> SshDevice:
        return SshDevice(self.address(**address), connect_timeout_s, command_timeout_s,  # type: ignore[arg-type]
                         ssh_config=ssh_config or self.ssh_config)

    def client_config(self, known_hosts: Path) -> Path:
        """An ``ssh -F`` file using ``known_hosts``; nothing from ~/.ssh or /etc/ssh/ssh_config."""
        path = known_hosts.with_suffix(".config")
        path.write_text(f"Host *\n  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                        "  StrictHostKeyChecking yes\n  IdentityAgent none\n  PasswordAuthentication no\n"
                        "  KbdInteractiveAuthentication no\n")
        return path

    def processes(self) -> list[str]:
        """The device user's processes ("PID CMD"), sshd's own session processes included."""
        done = subprocess.run(["pgrep", "-a", "-u", str(self.uid)], capture_output=True, text=True)
        return done.stdout.splitlines()

    def wait_no_processes(self, timeout_s: float = 10.0) -> list[str]:
        """Poll until the device user has no process (sshd's session children take a moment to exit)."""
        deadline = time.monotonic() + timeout_s
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def workdir_entries(self) -> list[str]:
        return sorted(os.listdir(self.workdir))


def _start_sshd(root: Path, port: int) -> subprocess.Popen[bytes]:
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", f"AllowUsers {DEVICE_USER}",
        "PermitRootLogin no", "X11Forwarding no", "AllowTcpForwarding no", "PrintMotd no", "LogLevel VERBOSE",
        "MaxStartups 100:30:200", "",
    ]))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    log = open(root / "sshd.log", "ab")  # noqa: SIM115  (closed with the server)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"sshd did not start on port {port}: {(root / 'sshd.log').read_text()[-500:]}")


@pytest.fixture(scope="session")
def loopback() -> Iterator[Loopback]:
    with loopback_server() as box:
        yield box


@contextlib.contextmanager
def loopback_server() -> Iterator[Loopback]:
    """The server of the ``loopback`` fixture, for scripts too (``measure_loopback_ratio.py``)."""
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd needs root (to run sshd and log in as a separate device user)")
    for tool in (SSHD, "ssh", "ssh-keygen", "pgrep"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: apt-get install -y openssh-server openssh-client procps")
    user = _ensure_user()
    python = _build_venv(DEVICE_VENV, ["numpy", "onnxruntime"])
    bare_python = _build_venv(BARE_VENV, ["numpy"])
    root = Path(tempfile.mkdtemp(prefix="edgetl-sshd-"))
    root.chmod(0o755)  # sshd reads authorized_keys as the device user
    try:
        _keygen(root / "host_key")
        key, wrong_key = _keygen(root / "client_key"), _keygen(root / "wrong_key")
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        (root / "authorized_keys").chmod(0o644)
        workdir = root / "device-work"
        workdir.mkdir()
        os.chown(workdir, user.pw_uid, user.pw_gid)
        proc = None
        for _ in range(3):  # another process may take the free port before sshd binds it
            port = free_port()
            with contextlib.suppress(RuntimeError):
                proc = _start_sshd(root, port)
                break
        if proc is None:
            pytest.fail(f"sshd would not start: {(root / 'sshd.log').read_text()[-500:]}")
        host_pub = (root / "host_key.pub").read_text().split()
        known_hosts = root / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        box = Loopback(root=root, port=port, user=DEVICE_USER, uid=user.pw_uid, key=key, wrong_key=wrong_key,
                       ssh_config=Path(), workdir=str(workdir), python=str(python), bare_python=str(bare_python),
                       sshd_log=root / "sshd.log")
        box.ssh_config = box.client_config(known_hosts)
        try:
            yield box
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(root, ignore_errors=True)
