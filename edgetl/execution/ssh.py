"""Measuring on a real device over SSH, with the system OpenSSH client.

Every remote step runs the ``ssh`` binary the engineer already uses, so ``~/.ssh/config`` (host aliases, ``User``,
``Port``, ``ProxyJump`` jump hosts, ``IdentityFile``), keys and a running ssh-agent work exactly as they do in a
terminal; ``ssh_config=`` passes ``-F FILE`` instead. edgetl never prompts for or stores a password: every call
runs with ``BatchMode=yes`` (keys or agent only), ``ConnectTimeout`` and ``ServerAliveInterval``, and every
command has a wall-clock timeout. Files travel as a tar stream over the ssh connection's stdin (``tar -x`` on the
device), so the device needs only ``sh``, ``tar``, ``mktemp`` and a ``python3`` with NumPy and the runtime.

A measurement works in a fresh ``mktemp -d`` directory under the address's workdir (default ``/tmp``) that is
removed on success, on failure and on Ctrl-C; the remote runner leads its own process group, and that group is
killed before the directory is removed (the runner also ends itself when its SSH connection closes).

Failures map to edgetl errors (exit code 3, each with a hint): ``DeviceUnreachableError`` (unknown host, closed
port, timeout), ``DeviceAuthError`` (no key accepted), ``DeviceHostKeyError`` (unknown or changed host key),
``DeviceDiskFullError`` (ENOSPC on the device), ``DeviceRuntimeUnavailableError`` (no python3, NumPy or runtime
on the device) and ``DeviceError`` (anything else, timeouts included). A malformed address is a ``ConfigError``
(exit 2). A runtime that crashes on a model is a ``failed`` row, not an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from edgetl.errors import (
    ConfigError,
    DeviceAuthError,
    DeviceDiskFullError,
    DeviceError,
    DeviceHostKeyError,
    DeviceRuntimeUnavailableError,
    DeviceUnreachableError,
)

log = logging.getLogger("edgetl.ssh")

RUNNER = Path(__file__).with_name("device_runner.py")
TEMP_PREFIX = "edgetl."
DEFAULT_WORKDIR = "/tmp"
RUNNER_BAD_PLAN, RUNNER_MISSING = 2, 4  # device_runner's exit codes: invalid plan; NumPy or a runtime missing


@dataclass(frozen=True)
class DeviceAddress:
    """Where a device is: ``ssh://[user@]host[:port][/workdir]``, plus the device's python and an optional key.

    ``host`` may be an alias from ``~/.ssh/config``; ``user`` and ``port`` then come from there when omitted.
    """

    host: str
    user: str | None = None
    port: int | None = None
    workdir: str = DEFAULT_WORKDIR
    python: str = "python3"
    identity_file: Path | None = None

    @classmethod
    def parse(cls, url: str, *, python: str | None = None, identity_file: str | Path | None = None) -> DeviceAddress:
        """``DeviceAddress.parse("ssh://pi@rpi5.local:2222/home/pi/edgetl")``; ``ConfigError`` when malformed."""
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise ConfigError(f"device address {url!r} is not ssh://[user@]host[:port][/workdir]",
                              hint="e.g. ssh://pi@192.168.1.20/home/pi/edgetl or ssh://my-jetson (a ~/.ssh/config alias)")
        if parts.password is not None or parts.query or parts.fragment:
            raise ConfigError(f"device address {url!r}: no password, query or fragment in an ssh:// address",
                              hint="edgetl uses keys or an agent only (BatchMode); put options in ~/.ssh/config")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"device address {url!r} has an invalid port") from exc
        host = parts.hostname
        if host.startswith("-") or (parts.username or "").startswith("-"):
            raise ConfigError(f"device address {url!r}: a host or user may not start with '-'")
        workdir = parts.path.rstrip("/") or DEFAULT_WORKDIR
        return cls(host=host, user=parts.username, port=port, workdir=workdir, python=python or "python3",
                   identity_file=Path(identity_file) if identity_file else None)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        workdir = "" if self.workdir == DEFAULT_WORKDIR else self.workdir
        return f"ssh://{self.user + '@' if self.user else ''}{host}{port}{workdir}"


@dataclass
class Completed:
    """A finished remote command."""

    returncode: int
    stdout: bytes
    stderr: str


# (stderr pattern, error class, message, hint); the first match wins. Hints name what the engineer can do.
_SSH_FAILURES: list[tuple[str, type[DeviceError], str, str]] = [
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED", DeviceHostKeyError,
     "the host key of {addr} has CHANGED since it was recorded in known_hosts",
     "if the device was reinstalled, remove the old key (ssh-keygen -R '{known}') and connect once with ssh to "
     "check and accept the new one; otherwise do not connect: someone may be intercepting"),
    (r"Host key verification failed|No \S+ host key is known", DeviceHostKeyError,
     "the host key of {addr} is not in known_hosts (and edgetl never accepts one unasked)",
     "connect once with `ssh {dest}` and check the fingerprint, or add it with ssh-keyscan"),
    (r"Permission denied \(|Too many authentication failures|no mutual signature", DeviceAuthError,
     "{addr} refused every key offered (authentication failed)",
     "edgetl uses keys or an agent only: check the identity file / agent (ssh-add -l) and that the public key "
     "is in the device's ~/.ssh/authorized_keys (ssh-copy-id {dest})"),
    (r"Connection refused", DeviceUnreachableError,
     "{addr}: connection refused (nothing listens on the SSH port)",
     "check the port and that sshd runs on the device (systemctl status ssh)"),
    (r"Could not resolve hostname|Name or service not known|nodename nor servname", DeviceUnreachableError,
     "{addr}: the host name does not resolve", "check the address or the Host alias in ~/.ssh/config"),
    (r"Connection timed out|Operation timed out|timed out during banner|No route to host|Network is unreachable|"
     r"Connection closed by|Connection reset by|kex_exchange_identification|Broken pipe|Timeout, server",
     DeviceUnreachableError, "{addr} is unreachable ({line})",
     "check the device is powered and on the network (ping it), the port, and any jump host"),
]
_ENOSPC = re.compile(r"No space left on device|Disk quota exceeded")


def _guarded(script: str) -> str:
    """``script`` in the background with stdin from /dev/null, plus a watcher that waits for the connection's
    stdin to close and then TERMs the session's process group (sshd made the shell a session leader: $$ is it).
    The watcher reads a copy (fd 3) of stdin: a background list's own stdin is /dev/null in a shell without job
    control."""
    return ("exec 3<&0\n{ " + script + "\n} </dev/null 3<&- & c=$!\n"
            "{ cat >/dev/null 2>&1; kill -TERM -$$ 2>/dev/null; } <&3 & w=$!\n"
            "exec 3<&-; wait $c; rc=$?; kill $w 2>/dev/null; exit $rc")


class SshDevice:
    """A device reached with the system ``ssh``: run commands, copy files in and out, work in a temp dir.

    Args:
        address: where the device is.
        connect_timeout_s: ``ConnectTimeout``: how long to wait for the TCP connect and the SSH handshake.
        command_timeout_s: the default wall-clock limit of each remote command (the measurement passes its own).
        ssh_config: a config file used instead of ``~/.ssh/config`` (``ssh -F``); None: the user's as usual.
        options: extra ``-o KEY=VALUE`` options, after edgetl's own.
    """

    def __init__(self, address: DeviceAddress, connect_timeout_s: float = 10.0, command_timeout_s: float = 600.0,
                 *, ssh_config: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.ssh_config = ssh_config
        self.options = dict(options or {})

    # ----------------------------------------------------------------------------------------- commands
    def ssh_argv(self, remote_command: str) -> list[str]:
        """The full ``ssh`` command line that runs ``remote_command`` (a shell string) on the device."""
        a = self.address
        argv = ["ssh", "-T"]
        if self.ssh_config is not None:
            argv += ["-F", str(self.ssh_config)]
        opts = {"BatchMode": "yes", "ConnectTimeout": str(max(1, round(self.connect_timeout_s))),
                "ServerAliveInterval": "5", "ServerAliveCountMax": "3", **self.options}
        if a.identity_file is not None:
            opts.setdefault("IdentitiesOnly", "yes")
            argv += ["-i", str(a.identity_file)]
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        if a.port is not None:
            argv += ["-p", str(a.port)]
        return [*argv, "--", a.destination, remote_command]

    def run(self, args: Sequence[str], *, timeout_s: float | None = None, check: bool = True) -> Completed:
        """Run ``args`` (an argv, quoted for the remote shell) on the device; ``DeviceError`` when it fails."""
        return self.shell(shlex.join(args), timeout_s=timeout_s, check=check)

    def shell(self, script: str, *, timeout_s: float | None = None, check: bool = True,
              feed: Any = None, guard: bool = True, what: str = "") -> Completed:
        """Run a shell ``script`` on the device (its login shell, POSIX: sh, bash, ash, zsh).

        ``feed(stdin)`` writes the command's input. Otherwise stdin stays open until the command ends and, with
        ``guard``, the command dies when it closes: without a pty, sshd leaves a command running when its client
        goes (Ctrl-C, a timeout, a dropped network), so a watcher kills the session's process group on EOF.
        """
        limit = self.command_timeout_s if timeout_s is None else timeout_s
        remote = _guarded(script) if guard and feed is None else script
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.ssh_argv(remote), stdin=subprocess.PIPE, stdout=out, stderr=err)
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                proc.kill()

            timer = threading.Timer(limit, expire)
            timer.start()
            try:
                if feed is not None and proc.stdin is not None:
                    with contextlib.suppress(BrokenPipeError):  # the remote side ended early: its stderr says why
                        feed(proc.stdin)
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
                code = proc.wait()
            except BaseException:  # Ctrl-C included: never leave the ssh client behind
                proc.kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
                if proc.stdin is not None and not proc.stdin.closed:
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
            out.seek(0)
            err.seek(0)
            done = Completed(code, out.read(), err.read().decode("utf-8", "replace"))
        if expired.is_set():
            raise DeviceError(f"{what or 'a command'} on {self.address} did not finish within {limit:g} s",
                              hint="raise the timeout, or check the device is not overloaded")
        if check and code != 0:
            raise self.error(done, what or f"`{script[:80]}`")
        return done

    def error(self, done: Completed, what: str) -> DeviceError:
        """The edgetl error for a failed command, from ssh's exit status and stderr."""
        a = self.address
        stderr = done.stderr
        fmt = {"addr": str(a), "dest": a.destination,
               "known": f"[{a.host}]:{a.port}" if a.port and a.port != 22 else a.host}
        if done.returncode == 255:
            for pattern, cls, message, hint in _SSH_FAILURES:
                match = re.search(pattern, stderr)
                if match:
                    line = next((ln.strip() for ln in stderr.splitlines() if match.group(0) in ln), "")
                    return cls(message.format(line=line, **fmt), hint=hint.format(**fmt))
        if _ENOSPC.search(stderr):
            return DeviceDiskFullError(f"{a}: no space left on the device during {what} ({a.workdir})",
                                       hint=f"free space on the device, or point the workdir at a filesystem "
                                            f"with room: ssh://{a.destination}/PATH")
        tail = " | ".join(ln.strip() for ln in stderr.strip().splitlines()[-3:])
        return DeviceError(f"{what} failed on {a} (exit status {done.returncode}): {tail or 'no output'}")

    # ------------------------------------------------------------------------------------------- files
    def put(self, local_paths: Sequence[Path] | Mapping[str, Path], remote_dir: str,
            *, timeout_s: float | None = None) -> None:
        """Copy files into ``remote_dir`` (created if missing), flat: a mapping names each remote file."""
        named = dict(local_paths) if isinstance(local_paths, Mapping) else {Path(p).name: Path(p) for p in local_paths}
        if isinstance(local_paths, Sequence) and len(named) != len(local_paths):
            raise ConfigError(f"two files to copy share a name: {[str(p) for p in local_paths]}")
        for name, path in named.items():
            if "/" in name or name in ("", ".", ".."):
                raise ConfigError(f"remote file name {name!r} must be a plain file name")
            if not Path(path).is_file():
                raise ConfigError(f"file to copy {path} does not exist")

        def feed(stdin: IO[bytes]) -> None:
            with tarfile.open(fileobj=stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name, path in named.items():
                    tar.add(str(path), arcname=name, recursive=False)

        d = shlex.quote(remote_dir)
        self.shell(f"mkdir -p {d} && tar -x -o -f - -C {d}", timeout_s=timeout_s, feed=feed,
                   what=f"copying {len(named)} file(s) to {remote_dir}")

    def get(self, remote_file: str, local_path: Path, *, timeout_s: float | None = None) -> Path:
        """Copy one remote file to ``local_path`` (written atomically)."""
        from edgetl.fsutil import atomic_path

        done = self.shell(f"cat {shlex.quote(remote_file)}", timeout_s=timeout_s, what=f"reading {remote_file}")
        with atomic_path(local_path) as tmp:
            tmp.write_bytes(done.stdout)
        return Path(local_path)

    # -------------------------------------------------------------------------------------- temp dir
    @contextlib.contextmanager
    def tempdir(self) -> Iterator[str]:
        """A fresh ``mktemp -d`` directory under the workdir, removed on success, failure and Ctrl-C.

        A process group whose id a command wrote to ``DIR/.pgid`` (the runner does) is killed first.
        """
        parent = shlex.quote(self.address.workdir)
        done = self.shell(f"mkdir -p {parent} && mktemp -d {parent}/{TEMP_PREFIX}XXXXXXXX",
                          what=f"making a temporary directory under {self.address.workdir}")
        remote = done.stdout.decode().strip()
        if not remote.startswith(f"{self.address.workdir}/{TEMP_PREFIX}") or "\n" in remote:
            raise DeviceError(f"mktemp on {self.address} returned an unexpected path {remote!r}")
        try:
            yield remote
        finally:
            self._remove(remote)

    def _remove(self, remote: str) -> None:
        d = shlex.quote(remote)
        # TERM the group, give it 2 s to go, then KILL whatever is left; then remove the directory.
        # (`kill -TERM -PGID`, not `kill -- -PGID`: dash's kill builtin takes no `--`)
        script = (f"if [ -f {d}/.pgid ]; then g=$(cat {d}/.pgid); case $g in ''|*[!0-9]*) ;; *) "
                  f"if kill -TERM -$g 2>/dev/null; then i=0; while kill -0 -$g 2>/dev/null && [ $i -lt 20 ];"
                  f" do sleep 0.1; i=$((i+1)); done; kill -KILL -$g 2>/dev/null; fi;; esac; fi; rm -rf -- {d}")
        try:
            self.shell(script, timeout_s=max(30.0, self.connect_timeout_s + 10), what=f"removing {remote}")
        except DeviceError as exc:  # never hide the error that got us here; say what is left behind
            log.warning("could not remove %s on %s: %s", remote, self.address, exc)


# ---------------------------------------------------------------------------------------- measuring
def measure_on_device(device: SshDevice, plan_rows: Sequence[Mapping[str, Any]],
                      files: Sequence[Path] | Mapping[str, Path], eval_arrays: Mapping[str, Any] | None = None,
                      labels: Any = None, *, eval_batch_size: int = 32, trim_to: str | None = None,
                      timeout_s: float | None = None,
                      on_missing_runtime: Literal["raise", "skip"] = "raise",
                      results_copy: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure ``plan_rows`` on the device with ``device_runner.py``; ``(device facts, result rows)``.

    Args:
        device: the device to measure on.
        plan_rows: rows of the runner's plan schema (see ``device_runner``); ``model`` names a file in ``files``.
        files: the model files (an OpenVINO ``.xml`` brings its ``.bin`` along); a mapping gives remote names.
        eval_arrays: input name -> array (N, ...) of evaluation inputs, shared by every row; None: latency only.
        labels: (N,) integer labels for the accuracy; requires ``eval_arrays``.
        eval_batch_size: batch size of the evaluation pass.
        trim_to: the padding mask input whose batches are cut to their longest sample (``EvalData.trim_to``).
        timeout_s: wall-clock limit of the whole run on the device (default: ``device.command_timeout_s``).
        on_missing_runtime: ``raise`` a ``DeviceRuntimeUnavailableError`` when the device lacks NumPy or a
            runtime a row needs; ``skip``: return those rows as ``skipped`` with the install hint as reason.
        results_copy: where to keep the device's raw results JSON, if anywhere.

    Returns:
        The device facts (hostname, CPU, cores, OS, python and library versions) and one dict per plan row, in
        plan order, each with ``measured_on: "device"``, ``device_address`` and ``device_hostname``.
    """
    import numpy as np

    named = dict(files) if isinstance(files, Mapping) else {Path(p).name: Path(p) for p in files}
    for name, path in list(named.items()):
        weights = Path(path).with_suffix(".bin")
        if name.endswith(".xml") and weights.is_file():
            named.setdefault(name[: -len(".xml")] + ".bin", weights)
    rows = [dict(r) for r in plan_rows]
    for i, row in enumerate(rows):
        if row.get("model") not in named:
            raise ConfigError(f"plan row {i} runs {row.get('model')!r}, which is not among the files to copy "
                              f"({', '.join(named) or 'none'})")
    if labels is not None and not eval_arrays:
        raise ConfigError("labels were given without evaluation inputs")
    a = device.address
    with tempfile.TemporaryDirectory(prefix="edgetl-ssh-") as local_tmp:
        local = Path(local_tmp)
        to_copy = {**named, RUNNER.name: RUNNER}
        if eval_arrays:
            spec: dict[str, Any] = {"inputs": {}, "batch_size": eval_batch_size,
                                    **({"trim_to": trim_to} if trim_to else {})}
            for j, (input_name, array) in enumerate(eval_arrays.items()):
                file_name = f"eval_input{j}.npy"
                np.save(local / file_name, np.asarray(array))
                to_copy[file_name] = local / file_name
                spec["inputs"][input_name] = file_name
            if labels is not None:
                np.save(local / "labels.npy", np.asarray(labels, dtype=np.int64))
                to_copy["labels.npy"] = local / "labels.npy"
                spec["labels"] = "labels.npy"
            for row in rows:
                row.setdefault("eval", spec)
        (local / "plan.json").write_text(json.dumps({"schema_version": 1, "rows": rows}, indent=1))
        to_copy["plan.json"] = local / "plan.json"
        with device.tempdir() as remote:
            device.put(to_copy, remote)
            r = shlex.quote(remote)
            script = (f"cd {r} && exec {shlex.quote(a.python)} {RUNNER.name} plan.json results.json "
                      f"--pgid-file .pgid --watch-stdin")
            # not guarded: the runner watches its own stdin and leads its own group (written to .pgid)
            done = device.shell(script, timeout_s=timeout_s, check=False, guard=False, what="the device runner")
            if done.returncode in (126, 127):
                raise DeviceRuntimeUnavailableError(
                    f"{a}: no Python interpreter {a.python!r} on the device ({done.stderr.strip()[-200:]})",
                    hint="install python3 on the device (with numpy and the runtime), or pass the interpreter's "
                         "path (DeviceAddress.parse(..., python='/path/to/venv/bin/python'))")
            if done.returncode == RUNNER_BAD_PLAN:
                bad = json.loads(device.get(f"{remote}/results.json", local / "results.json").read_text())
                raise ConfigError(f"the device runner rejected the plan: {bad.get('error', '?')}")
            if done.returncode not in (0, RUNNER_MISSING):
                error = device.error(done, "the device runner")
                if "SyntaxError" in done.stderr and error.hint is None:
                    error.hint = f"the runner needs Python >= 3.8 on the device; {a.python} is older"
                raise error
            results_file = device.get(f"{remote}/results.json", local / "results.json")
        results = json.loads(results_file.read_text())
        if results_copy is not None:
            from edgetl.fsutil import write_json

            write_json(results_copy, results)
    if results.get("schema_version") != 1:
        raise DeviceError(f"{a}: the device runner wrote results of schema {results.get('schema_version')!r}")
    facts = dict(results.get("device") or {})
    missing = results.get("missing") or {}
    if missing and on_missing_runtime == "raise":
        names = ", ".join(missing)
        commands = "; ".join(f"{a.python} -m {hint}" if hint.startswith("pip ") else hint
                             for hint in missing.values())
        raise DeviceRuntimeUnavailableError(
            f"{names} {'is' if len(missing) == 1 else 'are'} not installed on the device {a} "
            f"(python {facts.get('python', '?')} at {facts.get('python_executable', a.python)})",
            hint=f"on {a.destination}: {commands}")
    label = {"measured_on": "device", "device_address": str(a), "device_hostname": facts.get("hostname", "")}
    return facts, [{**row, **label} for row in results.get("rows", [])]

