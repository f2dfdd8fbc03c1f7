"""How `status` and `apply` reach a node: OpenSSH as the first sudo user, or a local tree (tests).

We use OpenSSH itself, with one master connection per node (ControlMaster) so the probe and the
writes share one login, rather than ansible-core: the work on the node is one small agent script
(`node_agent.py`) and the diff and plan logic is ours, so an inventory and playbooks would add a
dependency without taking anything off our hands.

Host keys are pinned: `known_hosts` in the cluster's secrets folder learns a node's key at its first
contact (`StrictHostKeyChecking=accept-new`) and refuses a changed one; the node is then reported
with the reason, and the others proceed. `sudo -n` fails instead of asking for a password.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from builder.apply import node_agent

AGENT = Path(node_agent.__file__).read_text()
TIMEOUT = 600


class NodeUnavailable(Exception):
    """A node that cannot be probed or changed; the message says why, in one line."""


class Transport(Protocol):
    def agent(self, node: str, address: str, verb: str, request: Mapping[str, Any]) -> dict[str, Any]: ...


def _answer(node: str, stdout: str) -> dict[str, Any]:
    try:
        answer = json.loads(stdout)
    except json.JSONDecodeError:
        raise NodeUnavailable(f"{node}: the node agent gave no answer ({stdout.strip()[-200:] or 'nothing'})") \
            from None
    if not isinstance(answer, dict):
        raise NodeUnavailable(f"{node}: the node agent gave no answer")
    if "error" in answer:
        raise NodeUnavailable(f"{node}: {answer['error']}")
    return answer


def ssh_failure(node: str, address: str, returncode: int, stderr: str) -> str:
    """One line saying why ssh or sudo failed on `node` (from ssh's and sudo's own words)."""
    text = stderr.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        return (f"{node} ({address}): its SSH host key is not the one pinned in known_hosts: refused "
                f"(a re-flashed card makes a new key: remove its line from known_hosts if you did that)")
    if "a password is required" in text or "a terminal is required" in text:
        return f"{node} ({address}): sudo needs a password there (the apply user needs passwordless sudo)"
    if "Permission denied" in text:
        return f"{node} ({address}): SSH login refused (Permission denied): is your key in the cluster file?"
    if returncode == 255:
        last = text.splitlines()[-1] if text else "no answer"
        return f"{node} ({address}): unreachable: {last}"
    return f"{node} ({address}): exit {returncode}: {text[-300:]}"


@dataclass(frozen=True)
class SshTransport:
    user: str
    known_hosts: Path
    control_dir: Path            # the master connections' sockets: a private folder that lives as long as the run
    identity: Path | None = None
    port: int = 22

    def argv(self, address: str, remote: list[str]) -> list[str]:
        options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=accept-new",
                   "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                   "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                   "-o", "ControlPersist=60", "-p", str(self.port)]
        if self.identity is not None:
            options += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        # ssh hands the remote side one command line for its shell: each word quoted.
        return ["ssh", *options, f"{self.user}@{address}", "--", " ".join(shlex.quote(w) for w in remote)]

    def agent(self, node: str, address: str, verb: str, request: Mapping[str, Any]) -> dict[str, Any]:
        remote = ["sudo", "-n", "python3", "-c", AGENT, verb, "/"]
        proc = subprocess.run(self.argv(address, remote), input=json.dumps(request), capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
        if proc.returncode not in (0, 1) or not proc.stdout.strip():
            raise NodeUnavailable(ssh_failure(node, address, proc.returncode, proc.stderr))
        return _answer(node, proc.stdout)


@dataclass(frozen=True)
class LocalTransport:
    """Each node a directory on this machine (`roots[node]`): the agent runs here, as on a node."""

    roots: Mapping[str, Path]

    def agent(self, node: str, address: str, verb: str, request: Mapping[str, Any]) -> dict[str, Any]:
        if node not in self.roots:
            raise NodeUnavailable(f"{node} ({address}): unreachable: no such tree")
        proc = subprocess.run([sys.executable, "-c", AGENT, verb, str(self.roots[node])], input=json.dumps(request),
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        return _answer(node, proc.stdout)
