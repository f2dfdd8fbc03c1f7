"""The hostile inputs, by class (issue 11): each makes one mistake in an otherwise valid sandbox."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config.hostile_support import ED25519_A, RSA, SHA256_HASH, Case, Sandbox, valid

Make = Callable[[Sandbox], None]


def at(path: tuple[Any, ...], value: Any) -> Make:
    """Set one key of the cluster file (the last part of `path`) to `value`."""
    def make(box: Sandbox) -> None:
        target = box.data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return make


def both(*makes: Make) -> Make:
    def make(box: Sandbox) -> None:
        for m in makes:
            m(box)
    return make


def drop(path: tuple[Any, ...]) -> Make:
    def make(box: Sandbox) -> None:
        target = box.data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return make


def raw(text: str | bytes) -> Make:
    def make(box: Sandbox) -> None:
        box.cluster_text = text
    return make


def replaced(old: str, new: str) -> Make:
    """The valid cluster file as YAML text with one piece of text replaced (for what a dict cannot say)."""
    def make(box: Sandbox) -> None:
        text = yaml.safe_dump(box.data, sort_keys=False)
        assert old in text, old
        box.cluster_text = text.replace(old, new, 1)
    return make


def key_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- 1. strings that break the files they land in --------------------------------------------

STRING_FIELDS: list[tuple[tuple[Any, ...], str]] = [
    (("name",), "lab"),
    (("nodes", 0, "name"), "head"),
    (("nodes", 0, "role"), "controller"),
    (("nodes", 0, "model"), "pi4-8gb"),
    (("nodes", 2, "serial"), "10000000abcdef01"),
    (("nodes", 2, "mac"), "2c:cf:67:00:00:01"),
    (("network", "interface"), "eth0"),
    (("network", "domain"), "lab.example"),
    (("slurm", "partition"), "batch"),
    (("slurm", "controller"), "head"),
    (("time", "server"), "gps"),
    (("users", 0, "name"), "hpc"),
    (("users", 0, "groups", 0), "sudo"),
    (("users", 0, "shell"), "/bin/bash"),
    (("users", 0, "password_hash"), SHA256_HASH),
    (("users", 0, "ssh_keys", 0), ED25519_A),
    (("first_user",), "hpc"),
    (("base_image", "url"), "https://example.org/images/raspios.img.xz"),
    (("base_image", "signature_url"), "https://example.org/images/raspios.img.xz.sig"),
    (("base_image", "signing_key"), "https://example.org/key.gpg"),
    (("base_image", "fingerprint"), "54C3DD610D9D1B4AF82A37758738CD6B956F460C"),
    (("base_image", "sha256"), "ab" * 32),
]
CONTROLS = {
    "newline": "\n",
    "newline-injection": "\nroot:x",
    "nul": "\0",
    "cr": "\r",
    "escape": "\x1b[2J",
    "line-separator": "\u2028",
}


def _string_cases() -> list[Case]:
    cases = []
    for path, good in STRING_FIELDS:
        for label, control in CONTROLS.items():
            cases.append(Case(f"{key_path(path)}-{label}", at(path, good + control), key_path(path)))
    return cases


GRAMMAR: list[Case] = [
    Case("name-too-long", at(("name",), "a" * 64), "name"),
    Case("name-leading-dash", at(("name",), "-lab"), "name"),
    Case("name-slash", at(("name",), "lab/../x"), "name"),
    Case("name-number", raw(yaml.safe_dump(valid()).replace("name: lab", "name: 1234")), "name"),
    Case("node-label-64", at(("nodes", 3, "name"), "n" * 64), "nodes[3].name"),
    Case("node-leading-dash", at(("nodes", 3, "name"), "-node"), "nodes[3].name"),
    Case("node-trailing-dash", at(("nodes", 3, "name"), "node-"), "nodes[3].name"),
    Case("node-uppercase", at(("nodes", 3, "name"), "Node02"), "nodes[3].name"),
    Case("node-dot", at(("nodes", 3, "name"), "node.02"), "nodes[3].name"),
    Case("node-space", at(("nodes", 3, "name"), "node 02"), "nodes[3].name"),
    Case("node-unicode", at(("nodes", 3, "name"), "nöde"), "nodes[3].name"),
    Case("domain-label-64", at(("network", "domain"), "a" * 64 + ".lab"), "network.domain"),
    Case("domain-fqdn-254", at(("network", "domain"), ".".join(["a" * 60] * 4) + ".lab"), "network.domain"),
    Case("domain-empty-label", at(("network", "domain"), "lab..example"), "network.domain"),
    Case("domain-leading-dot", at(("network", "domain"), ".lab"), "network.domain"),
    Case("domain-dash-label", at(("network", "domain"), "-lab.example"), "network.domain"),
    Case("domain-underscore", at(("network", "domain"), "my_lab"), "network.domain"),
    Case("interface-long", at(("network", "interface"), "e" * 16), "network.interface"),
    Case("interface-slash", at(("network", "interface"), "eth0/x"), "network.interface"),
    Case("interface-dots", at(("network", "interface"), ".."), "network.interface"),
    Case("partition-slash", at(("slurm", "partition"), "a/b"), "slurm.partition"),
    Case("partition-space", at(("slurm", "partition"), "a b"), "slurm.partition"),
    Case("partition-long", at(("slurm", "partition"), "p" * 64), "slurm.partition"),
    Case("user-uppercase", at(("users", 1, "name"), "Ann"), "users[1].name"),
    Case("user-too-long", at(("users", 1, "name"), "a" * 33), "users[1].name"),
    Case("user-leading-digit", at(("users", 1, "name"), "1ann"), "users[1].name"),
    Case("user-colon", at(("users", 1, "name"), "ann:x"), "users[1].name"),
    Case("user-dollar", at(("users", 1, "name"), "ann$"), "users[1].name"),
    Case("group-space", at(("users", 0, "groups", 0), "sudo adm"), "users[0].groups[0]"),
    Case("group-comma", at(("users", 0, "groups", 0), "sudo,adm"), "users[0].groups[0]"),
    Case("group-uppercase", at(("users", 0, "groups", 0), "Sudo"), "users[0].groups[0]"),
    Case("group-empty", at(("users", 0, "groups", 0), ""), "users[0].groups[0]"),
    Case("group-too-long", at(("users", 0, "groups", 0), "g" * 33), "users[0].groups[0]"),
    Case("group-number", at(("users", 0, "groups", 0), 27), "users[0].groups[0]"),
    Case("shell-relative", at(("users", 0, "shell"), "bash"), "users[0].shell"),
    Case("shell-colon", at(("users", 0, "shell"), "/bin/bash:/x"), "users[0].shell"),
    Case("shell-space", at(("users", 0, "shell"), "/bin/ba sh"), "users[0].shell"),
    Case("shell-dotdot", at(("users", 0, "shell"), "/bin/../tmp/sh"), "users[0].shell"),
    Case("shell-directory", at(("users", 0, "shell"), "/bin/"), "users[0].shell"),
    Case("shell-root", at(("users", 0, "shell"), "/"), "users[0].shell"),
    Case("shell-long", at(("users", 0, "shell"), "/" + "s" * 300), "users[0].shell"),
    Case("hash-dollar-only", at(("users", 0, "password_hash"), "$"), "users[0].password_hash"),
    Case("hash-no-salt", at(("users", 0, "password_hash"), "$6$"), "users[0].password_hash"),
    Case("hash-unknown-id", at(("users", 0, "password_hash"), "$9$abcdefgh$" + "a" * 86), "users[0].password_hash"),
    Case("hash-colon", at(("users", 0, "password_hash"), "$6$abc:defg$" + "a" * 86), "users[0].password_hash"),
    Case("hash-space", at(("users", 0, "password_hash"), "$6$abcdefgh$" + "a" * 85 + " "), "users[0].password_hash"),
    Case("hash-short", at(("users", 0, "password_hash"), "$6$abcdefgh$" + "a" * 40), "users[0].password_hash"),
    Case("hash-bad-alphabet", at(("users", 0, "password_hash"), "$6$abcdefgh$" + "*" * 86), "users[0].password_hash"),
    Case("hash-md5", at(("users", 0, "password_hash"), "$1$abcdefgh$" + "a" * 22), "users[0].password_hash"),
    Case("hash-plaintext", at(("users", 0, "password_hash"), "$secret"), "users[0].password_hash"),
    Case("hash-two-lines", at(("users", 0, "password_hash"), SHA256_HASH + "\nroot:" + SHA256_HASH),
         "users[0].password_hash"),
    Case("hash-rounds-bad", at(("users", 0, "password_hash"), "$6$rounds=x$abcdefgh$" + "a" * 86),
         "users[0].password_hash"),
    Case("sshkey-empty", at(("users", 0, "ssh_keys", 0), ""), "users[0].ssh_keys[0]"),
    Case("sshkey-type-only", at(("users", 0, "ssh_keys", 0), "ssh-ed25519"), "users[0].ssh_keys[0]"),
    Case("sshkey-unknown-type", at(("users", 0, "ssh_keys", 0), "ssh-foo AAAAB3NzaC1yc2E"), "users[0].ssh_keys[0]"),
    Case("sshkey-bad-base64", at(("users", 0, "ssh_keys", 0), "ssh-ed25519 AAAA!!!!"), "users[0].ssh_keys[0]"),
    Case("sshkey-truncated-blob", at(("users", 0, "ssh_keys", 0), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA x"),
         "users[0].ssh_keys[0]"),
    Case("sshkey-type-mismatch", at(("users", 0, "ssh_keys", 0), "ssh-rsa" + ED25519_A[len("ssh-ed25519"):]),
         "users[0].ssh_keys[0]"),
    Case("sshkey-rsa-as-ed25519", at(("users", 0, "ssh_keys", 0), "ssh-ed25519" + RSA[len("ssh-rsa"):]),
         "users[0].ssh_keys[0]"),
    Case("sshkey-options", at(("users", 0, "ssh_keys", 0), 'command="/bin/sh" ' + ED25519_A), "users[0].ssh_keys[0]"),
    Case("sshkey-from-option", at(("users", 0, "ssh_keys", 0), 'from="*",no-pty ' + ED25519_A),
         "users[0].ssh_keys[0]"),
    Case("sshkey-two-keys", at(("users", 0, "ssh_keys", 0), ED25519_A + "\n" + RSA), "users[0].ssh_keys[0]"),
    Case("sshkey-private", at(("users", 0, "ssh_keys", 0), "-----BEGIN OPENSSH PRIVATE KEY-----"),
         "users[0].ssh_keys[0]"),
    Case("sshkey-trailing-bytes", at(("users", 0, "ssh_keys", 0),
                                      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyOV0G3ZU7ycDzZ11xoaaWgGkN7ogHiJeAqz9tw5"
                                      "UMFAAAA a@test"), "users[0].ssh_keys[0]"),
    Case("sshkey-number", at(("users", 0, "ssh_keys", 0), 12), "users[0].ssh_keys[0]"),
    Case("sshkey-long-comment", at(("users", 0, "ssh_keys", 0), ED25519_A + "x" * 5000), "users[0].ssh_keys[0]"),
    Case("mac-multicast", at(("nodes", 2, "mac"), "01:00:5e:00:00:01"), "nodes[2].mac"),
    Case("mac-zero", at(("nodes", 2, "mac"), "00:00:00:00:00:00"), "nodes[2].mac"),
    Case("mac-dashes", at(("nodes", 2, "mac"), "2c-cf-67-00-00-01"), "nodes[2].mac"),
    Case("serial-short", at(("nodes", 2, "serial"), "abc"), "nodes[2].serial"),
    Case("serial-long", at(("nodes", 2, "serial"), "a" * 17), "nodes[2].serial"),
    Case("serial-zero", at(("nodes", 2, "serial"), "00000000"), "nodes[2].serial"),
    Case("url-scheme-ftp", at(("base_image", "url"), "ftp://example.org/x.img.xz"), "base_image.url"),
    Case("url-javascript", at(("base_image", "signing_key"), "javascript:alert(1)"), "base_image.signing_key"),
    Case("url-bad-ipv6", at(("base_image", "url"), "http://[::1/x.img.xz"), "base_image.url"),
    Case("url-bad-ipv6-sig", at(("base_image", "signature_url"), "http://[::1/x.sig"), "base_image.signature_url"),
    Case("url-bad-port", at(("base_image", "signing_key"), "https://example.org:99999/key"), "base_image.signing_key"),
    Case("url-port-letters", at(("base_image", "signature_url"), "https://example.org:ab/x.sig"),
         "base_image.signature_url"),
    Case("url-no-host", at(("base_image", "signing_key"), "https:///key.gpg"), "base_image.signing_key"),
    Case("url-space", at(("base_image", "url"), "https://example.org/a b.img.xz"), "base_image.url"),
    Case("url-empty", at(("base_image", "signing_key"), ""), "base_image.signing_key"),
    Case("url-remote-file", at(("base_image", "signing_key"), "file://evil.example/key"), "base_image.signing_key"),
    Case("url-too-long", at(("base_image", "url"), "https://example.org/" + "a" * 5000 + ".img.xz"), "base_image.url"),
    Case("url-credentials", at(("base_image", "signing_key"), "https://user:pw@example.org/key"),
         "base_image.signing_key"),
    Case("sha256-url-bad-ipv6", both(drop(("base_image", "sha256")), at(("base_image", "sha256_url"), "http://[::1/s")),
         "base_image.sha256_url"),
    Case("sha256-url-scheme", both(drop(("base_image", "sha256")), at(("base_image", "sha256_url"), "gopher://x/s")),
         "base_image.sha256_url"),
    Case("fingerprint-short", at(("base_image", "fingerprint"), "54C3 DD61"), "base_image.fingerprint"),
    Case("fingerprint-nonhex", at(("base_image", "fingerprint"), "Z" * 40), "base_image.fingerprint"),
]


# --- 2. reading files ------------------------------------------------------------------------

def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node or giving a directory away needs root")


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _socket(path: Path) -> None:
    path.unlink(missing_ok=True)
    cwd = os.getcwd()
    os.chdir(path.parent)   # AF_UNIX paths are short: bind by the relative name
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
        sock.close()
    finally:
        os.chdir(cwd)


def _loop(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(path.name)


def cluster_fifo(box: Sandbox) -> None:
    _fifo(box.cluster)
    box.cluster_arg = str(box.cluster)


def cluster_socket(box: Sandbox) -> None:
    _socket(box.cluster)
    box.cluster_arg = str(box.cluster)


def cluster_loop(box: Sandbox) -> None:
    _loop(box.cluster)
    box.cluster_arg = str(box.cluster)


def cluster_directory(box: Sandbox) -> None:
    box.cluster.mkdir()
    box.cluster_arg = str(box.cluster)


def cluster_arg(value: str) -> Make:
    def make(box: Sandbox) -> None:
        box.cluster_arg = value
    return make


VALID_TEXT = yaml.safe_dump(valid(), sort_keys=False)
BOMB = ('a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
        + "name: *i\n")

FILES: list[Case] = [
    Case("cluster-fifo", cluster_fifo, "cluster.yaml", process=True),
    Case("cluster-dev-zero", cluster_arg("/dev/zero"), "/dev/zero", process=True),
    Case("cluster-dev-null", cluster_arg("/dev/null"), "/dev/null", process=True),
    Case("cluster-socket", cluster_socket, "cluster.yaml", process=True),
    Case("cluster-symlink-loop", cluster_loop, "cluster.yaml", process=True),
    Case("cluster-directory", cluster_directory, "cluster.yaml"),
    Case("cluster-missing", cluster_arg("/nonexistent/cluster.yaml"), "cluster.yaml"),
    Case("cluster-latin1", raw(VALID_TEXT.replace("name: lab", "name: l\xe4b").encode("latin-1")), "cluster.yaml"),
    Case("cluster-utf16", raw(VALID_TEXT.encode("utf-16")), "cluster.yaml"),
    Case("cluster-utf16-no-bom", raw(VALID_TEXT.encode("utf-16-le")), "cluster.yaml"),
    Case("cluster-nul-byte", raw(VALID_TEXT.replace("name: lab", "name: lab\0")), "cluster.yaml"),
    Case("cluster-control-byte", raw(VALID_TEXT.replace("name: lab", "name: l\x01ab")), "cluster.yaml"),
    Case("cluster-bell-in-quotes", raw(VALID_TEXT.replace("name: lab", 'name: "l\x07ab"')), "cluster.yaml"),
    Case("cluster-deep-lists", raw("name: " + "[" * 20000 + "]" * 20000 + "\n"), "cluster.yaml", process=True),
    Case("cluster-deep-maps", raw("name: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"), "cluster.yaml",
         process=True),
    Case("cluster-deep-block", raw("name:\n" + "".join(" " * i + "- \n" for i in range(1, 200))), "cluster.yaml",
         process=True),
    Case("cluster-alias-bomb", raw(BOMB), "cluster.yaml", process=True),
    Case("cluster-alias-bomb-in-users", raw(BOMB.replace("name: *i", "users: *i")), "cluster.yaml", process=True),
    Case("cluster-recursive-alias", raw("name: &a [*a]\n"), "cluster.yaml", process=True),
    Case("cluster-huge", raw(VALID_TEXT + "# " + "x" * (8 << 20) + "\n"), "cluster.yaml", process=True),
    Case("cluster-huge-value", raw(VALID_TEXT.replace("name: lab", "name: " + "a" * 200_000)), "name",
         process=True),
    Case("cluster-huge-int", raw(VALID_TEXT.replace("uid: 2000", "uid: 1" + "0" * 5000)), "cluster.yaml"),
    Case("cluster-duplicate-key", raw(VALID_TEXT.replace("name: lab\n", "name: lab\nname: other\n")), "name"),
    Case("cluster-duplicate-nested", raw(VALID_TEXT.replace("  subnet: 10.0.0.0/24\n",
                                                            "  subnet: 10.0.0.0/24\n  subnet: 10.9.0.0/24\n")),
         "subnet"),
    Case("cluster-list-top", raw("- a\n- b\n"), "cluster.yaml"),
    Case("cluster-python-tag", raw("name: !!python/object/apply:os.getcwd []\n"), "cluster.yaml"),
    Case("cluster-unhashable-key", raw("? [a, b]\n: x\n"), "cluster.yaml"),
    Case("cluster-tab-indent", raw("name: lab\nnetwork:\n\tsubnet: x\n"), "cluster.yaml"),
]


# --- 3. templates are code -------------------------------------------------------------------

ESCAPES = {
    "lipsum-globals": "{{ lipsum.__globals__['os'].getcwd() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__.os.getcwd() }}",
    "joiner-globals": "{{ joiner.__init__.__globals__.os.getcwd() }}",
    "namespace-globals": "{{ namespace.__init__.__globals__.os.getcwd() }}",
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "self-context": "{{ self._TemplateReference__context }}",
    "dict-mutation": "{% set x = settings.update({'a': 1}) %}x",
    "list-mutation": "{{ nodes.append(1) }}",
    "format-attr": "{{ '{0.__class__}'.format(1) }}",
    "huge-string": "{{ 'x' * 1000000000 }}",
    "huge-power": "{{ 10 ** 100000000 }}",
}


def profile_line(text: str) -> Make:
    def make(box: Sandbox) -> None:
        path = box.profiles / "compute.yaml"
        path.write_text(path.read_text() + f"\nconfig_txt: [{json_string(text)}]\n")
    return make


def profile_append(text: str) -> Make:
    def make(box: Sandbox) -> None:
        path = box.profiles / "compute.yaml"
        path.write_text(path.read_text() + "\n" + text + "\n")
    return make


def json_string(text: str) -> str:
    import json
    return json.dumps(text)


def overlay_file(rel: str, text: str | bytes) -> Make:
    def make(box: Sandbox) -> None:
        path = box.overlays / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return make


def overlay_node(rel: str, kind: str) -> Make:
    def make(box: Sandbox) -> None:
        path = box.overlays / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            _fifo(path)
        elif kind == "socket":
            _socket(path)
        elif kind == "loop":
            _loop(path)
        elif kind == "device":
            need_root()
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))   # /dev/zero's numbers
        elif kind == "to-fifo":
            _fifo(path.with_name("fifo"))
            path.symlink_to("fifo")
    return make


TEMPLATES: list[Case] = [
    *(Case(f"profile-{name}", profile_line(text), "profiles/compute.yaml", process=name.startswith("huge"))
      for name, text in ESCAPES.items()),
    *(Case(f"overlay-{name}", overlay_file("base/etc/motd.j2", text + "\n"), "base/etc/motd",
           process=name.startswith("huge")) for name, text in ESCAPES.items()),
    Case("overlay-name-escape", overlay_file("base/etc/{{ lipsum.__globals__.os.getcwd() }}.j2", "x"), "overlays/base"),
    Case("overlay-include-outside", overlay_file("base/etc/motd.j2", "{% include '../../../../etc/passwd' %}"),
         "base/etc/motd"),
    Case("overlay-include-absolute", overlay_file("base/etc/motd.j2", "{% include '/etc/passwd' %}"), "base/etc/motd"),
    Case("overlay-template-latin1", overlay_file("base/etc/motd.j2", "caf\xe9\n".encode("latin-1")), "base/etc/motd"),
    Case("overlay-template-huge", overlay_file("base/etc/motd.j2", "x" * (8 << 20)), "base/etc/motd", process=True),
    Case("overlay-fifo", overlay_node("base/etc/fifo", "fifo"), "base/etc/fifo", process=True),
    Case("overlay-fifo-template", overlay_node("base/etc/fifo.j2", "fifo"), "base/etc/fifo.j2", process=True),
    Case("overlay-socket", overlay_node("base/etc/sock", "socket"), "base/etc/sock", process=True),
    Case("overlay-device", overlay_node("base/etc/zero", "device"), "base/etc/zero", process=True),
    Case("overlay-symlink-loop", overlay_node("base/etc/loop", "loop"), "base/etc/loop", process=True),
    Case("overlay-symlink-to-fifo", overlay_node("base/etc/link", "to-fifo"), "base/etc/", process=True),
    Case("overlay-include-fifo", both(overlay_node("base/etc/x/fifo", "fifo"),
                                      overlay_file("base/etc/motd.j2", "{% include 'base/etc/x/fifo' %}")),
         "base/etc/", process=True),
    Case("manifest-fifo", overlay_node("users/manifest.yaml", "fifo"), "users/manifest.yaml", process=True),
    Case("manifest-alias-bomb", overlay_file("users/manifest.yaml", BOMB), "users/manifest.yaml", process=True),
    Case("manifest-latin1", overlay_file("users/manifest.yaml", b"files: {caf\xe9: {}}\n"), "users/manifest.yaml"),
    Case("manifest-each-escape",
         overlay_file("users/manifest.yaml", "each:\n  'home/{{ user.name }}': u in lipsum.__globals__.os.environ\n"),
         "users/"),
    Case("manifest-owner-newline", overlay_file("users/manifest.yaml",
                                                'files:\n  "home/*/.ssh/authorized_keys": {owner: "root\\nx"}\n'),
         "users/manifest.yaml"),
    Case("profile-fifo", lambda box: _fifo(box.profiles / "compute.yaml"), "profiles/compute.yaml", process=True),
    Case("profile-alias-bomb", lambda box: (box.profiles / "compute.yaml").write_text(BOMB.replace("name", "packages")),
         "profiles/compute.yaml", process=True),
    Case("profile-deep", lambda box: (box.profiles / "compute.yaml").write_text("settings: " + "[" * 20000),
         "profiles/compute.yaml", process=True),
    Case("profile-latin1", lambda box: (box.profiles / "compute.yaml").write_bytes(b"description: caf\xe9\n"),
         "profiles/compute.yaml"),
    Case("profile-huge", lambda box: (box.profiles / "compute.yaml").write_text("# " + "x" * (8 << 20)),
         "profiles/compute.yaml", process=True),
    Case("profile-setting-newline", profile_append('settings: {slurm_cgroup_plugin: "cgroup/v2\\nNodeName=evil"}'),
         "profiles/compute.yaml"),
    Case("profile-setting-nul", profile_append('settings: {slurm_cgroup_plugin: "cgroup/v2\\0"}'),
         "profiles/compute.yaml"),
    Case("profile-package-newline", lambda box: (box.profiles / "compute.yaml").write_text(
        'packages: ["slurmd\\n--allow-unauthenticated"]\n'), "profiles/compute.yaml"),
    Case("profile-unit-newline", lambda box: (box.profiles / "compute.yaml").write_text(
        'enable: ["slurmd.service\\n"]\n'), "profiles/compute.yaml"),
    Case("profile-cmdline-cr", lambda box: (box.profiles / "compute.yaml").write_text(
        'cmdline: ["quiet\\rinit=/bin/sh"]\n'), "profiles/compute.yaml"),
    Case("profile-remove-newline", lambda box: (box.profiles / "compute.yaml").write_text(
        'remove: ["/etc/x\\n"]\n'), "profiles/compute.yaml"),
    Case("profile-include-newline", lambda box: (box.profiles / "compute.yaml").write_text(
        'include: ["login\\n"]\n'), "profiles/compute.yaml"),
]


# --- 4. values that are each fine but wrong together ------------------------------------------

def add_node(**node: Any) -> Make:
    def make(box: Sandbox) -> None:
        box.data["nodes"].append({"role": "compute", "model": "pi4-8gb", **node})
    return make


TOGETHER: list[Case] = [
    Case("time-server-compute", at(("time", "server"), "node01"), "time.server"),
    Case("time-server-controller", at(("time", "server"), "head"), "time.server"),
    Case("duplicate-mac", at(("nodes", 3, "mac"), "2c:cf:67:00:00:01"), "nodes[3].mac"),
    Case("duplicate-mac-case", at(("nodes", 3, "mac"), "2C:CF:67:00:00:01"), "nodes[3].mac"),
    Case("duplicate-serial", at(("nodes", 3, "serial"), "10000000abcdef01"), "nodes[3].serial"),
    Case("serial-suffix-confusable", at(("nodes", 3, "serial"), "abcdef01"), "nodes[3].serial"),
    Case("serial-zeros-confusable", at(("nodes", 3, "serial"), "0000000c10c4a11"), "nodes[3].serial"),
    Case("node-default", at(("nodes", 3, "name"), "default"), "nodes[3].name"),
    Case("node-all", at(("nodes", 3, "name"), "all"), "nodes[3].name"),
    Case("node-localhost", at(("nodes", 3, "name"), "localhost"), "nodes[3].name"),
    Case("node-none", at(("nodes", 3, "name"), "none"), "nodes[3].name"),
    Case("partition-default", at(("slurm", "partition"), "default"), "slurm.partition"),
    Case("partition-DEFAULT", at(("slurm", "partition"), "DEFAULT"), "slurm.partition"),
    Case("partition-ALL", at(("slurm", "partition"), "ALL"), "slurm.partition"),
    *(Case(f"user-system-{name}", at(("users", 1, "name"), name), "users[1].name")
      for name in ("root", "daemon", "nobody", "munge", "slurm", "_chrony", "sshd", "systemd-network",
                   "messagebus", "gpsd", "pi", "bin", "www-data", "_apt")),
    Case("uid-999", at(("users", 1, "uid"), 999), "users[1].uid"),
    Case("uid-1000-image-user", at(("users", 1, "uid"), 1000), "users[1].uid"),
    Case("uid-60001", at(("users", 1, "uid"), 60001), "users[1].uid"),
    Case("uid-nobody", at(("users", 1, "uid"), 65534), "users[1].uid"),
    Case("uid-huge", at(("users", 1, "uid"), 2**32), "users[1].uid"),
    Case("gid-65535", at(("users", 1, "gid"), 65535), "users[1].gid"),
    Case("gid-0", at(("users", 1, "gid"), 0), "users[1].gid"),
    Case("gid-999", at(("users", 1, "gid"), 999), "users[1].gid"),
    Case("cpus-too-many", at(("nodes", 2, "cpus"), 64), "nodes[2].cpus"),
    Case("memory-too-much", at(("nodes", 2, "memory_mb"), 65536), "nodes[2].memory_mb"),
    Case("memory-pi4-1gb", both(at(("nodes", 2, "model"), "pi4-1gb"), at(("nodes", 2, "memory_mb"), 4000)),
         "nodes[2].memory_mb"),
    Case("two-controllers", add_node(name="head2", ip="10.0.0.11", role="controller"), "nodes[4].role"),
    Case("interface-in-file-name", at(("network", "interface"), "ETH0"), "network.interface"),
]


# --- 5. checked late or never ----------------------------------------------------------------

def secrets_at(make_dir: Callable[[Path], Path]) -> Make:
    def make(box: Sandbox) -> None:
        box.data["secrets_dir"] = str(make_dir(box.root / "home"))
    return make


def _file(home: Path) -> Path:
    (home / "secrets").write_text("x")
    return home / "secrets"


def _under_file(home: Path) -> Path:
    (home / "afile").write_text("x")
    return home / "afile" / "secrets"


def _shared(home: Path) -> Path:
    (home / "shared").mkdir(mode=0o755)
    os.chmod(home / "shared", 0o755)
    return home / "shared"


def _group(home: Path) -> Path:
    (home / "group").mkdir()
    os.chmod(home / "group", 0o770)
    return home / "group"


def _not_mine(home: Path) -> Path:
    need_root()
    (home / "theirs").mkdir(mode=0o700)
    os.chown(home / "theirs", 65534, 65534)
    return home / "theirs"


def _munge_dir(home: Path) -> Path:
    (home / "s").mkdir(mode=0o700)
    (home / "s" / "munge.key").mkdir()
    return home / "s"


def _munge_fifo(home: Path) -> Path:
    (home / "s").mkdir(mode=0o700)
    os.mkfifo(home / "s" / "munge.key", 0o600)
    return home / "s"


def _munge_public(home: Path) -> Path:
    (home / "s").mkdir(mode=0o700)
    (home / "s" / "munge.key").write_bytes(b"k" * 1024)
    os.chmod(home / "s" / "munge.key", 0o644)
    return home / "s"


def _munge_short(home: Path) -> Path:
    (home / "s").mkdir(mode=0o700)
    fd = os.open(home / "s" / "munge.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    return home / "s"


def env(name: str, value: str) -> Make:
    def make(box: Sandbox) -> None:
        box.env[name] = value
    return make


def fetch_sums(kind: str) -> Make:
    """`fetch` with the checksum list a local path: read before anything is downloaded or cached."""
    def make(box: Sandbox) -> None:
        box.command = "fetch"
        del box.data["base_image"]["sha256"]
        box.data["base_image"]["url"] = "image.img.xz"
        work = box.root / "work"
        if kind == "fifo":
            _fifo(work / "sums.sha256")
        elif kind == "huge":
            (work / "sums.sha256").write_bytes(b"0" * (4 << 20))
        elif kind == "directory":
            (work / "sums.sha256").mkdir()
        box.data["base_image"]["sha256_url"] = "/dev/zero" if kind == "dev-zero" else "sums.sha256"
    return make


LATE: list[Case] = [
    *(Case(f"fetch-sha256-list-{kind}", fetch_sums(kind), "base_image.sha256_url", process=True)
      for kind in ("fifo", "dev-zero", "huge", "directory")),
    Case("secrets-file", secrets_at(_file), "secrets_dir"),
    Case("secrets-under-file", secrets_at(_under_file), "secrets_dir"),
    Case("secrets-etc", at(("secrets_dir",), "/etc"), "secrets_dir"),
    Case("secrets-tmp", at(("secrets_dir",), "/tmp"), "secrets_dir"),
    Case("secrets-root", at(("secrets_dir",), "/"), "secrets_dir"),
    Case("secrets-empty", at(("secrets_dir",), ""), "secrets_dir"),
    Case("secrets-shared-0755", secrets_at(_shared), "secrets_dir"),
    Case("secrets-group-0770", secrets_at(_group), "secrets_dir"),
    Case("secrets-not-owned", secrets_at(_not_mine), "secrets_dir"),
    Case("secrets-munge-dir", secrets_at(_munge_dir), "munge.key"),
    Case("secrets-munge-fifo", secrets_at(_munge_fifo), "munge.key", process=True),
    Case("secrets-munge-public", secrets_at(_munge_public), "munge.key"),
    Case("secrets-munge-short", secrets_at(_munge_short), "munge.key"),
    Case("yaml11-serial", replaced("serial: 10000000abcdef01", "serial: 12345678"), "nodes[2].serial"),
    Case("yaml11-mac-sexagesimal", replaced("mac: 2c:cf:67:00:00:02", "mac: 10:20:30:40:50:01"), "nodes[3].mac"),
    Case("yaml11-octal-serial", replaced("serial: 10000000abcdef01", "serial: 00001234"), "nodes[2].serial"),
    Case("yaml11-name-bool", replaced("name: lab", "name: yes"), "name"),
    Case("yaml11-float-serial", replaced("serial: 10000000abcdef01", "serial: 1e10"), "nodes[2].serial"),
    Case("yaml-null-name", replaced("name: lab", "name: ~"), "name"),
    Case("yaml-date-domain", replaced("domain: lab.example", "domain: 2025-01-01"), "network.domain"),
    Case("uid-float", at(("users", 1, "uid"), 2000.5), "users[1].uid"),
    Case("uid-string", at(("users", 1, "uid"), "2000"), "users[1].uid"),
    Case("cpus-inf", replaced("name: node01", "name: node01\n  cpus: .inf"), "nodes[2].cpus"),
    Case("profiles-env-missing", env("CLUSTERBAKE_PROFILES", "/nonexistent/profiles"), "CLUSTERBAKE_PROFILES",
         code=2),
    Case("overlays-env-missing", env("CLUSTERBAKE_OVERLAYS", "/nonexistent/overlays"), "CLUSTERBAKE_OVERLAYS",
         code=2),
    Case("profiles-env-file", env("CLUSTERBAKE_PROFILES", "/etc/hostname"), "CLUSTERBAKE_PROFILES", code=2),
    Case("overlays-env-dev-null", env("CLUSTERBAKE_OVERLAYS", "/dev/null"), "CLUSTERBAKE_OVERLAYS", code=2),
]

# --- issue 15: the file server section, one mistake in an otherwise good one -------------------

def fileserver(**values: Any) -> Make:
    def make(box: Sandbox) -> None:
        box.data["fileserver"] = {"node": "gps", "exports": ["/home", "/scratch"], "clients": "10.0.0.0/24",
                                  **values}
    return make


FILESERVER: list[Case] = [
    *(Case(f"fileserver.{key}-{label}", fileserver(**{key: good + control}), f"fileserver.{key}")
      for key, good in (("node", "gps"), ("clients", "10.0.0.0/24")) for label, control in CONTROLS.items()),
    *(Case(f"fileserver.exports[1]-{label}", fileserver(exports=["/home", "/scratch" + control]),
           "fileserver.exports[1]") for label, control in CONTROLS.items()),
    Case("fileserver-node-uppercase", fileserver(node="GPS"), "fileserver.node"),
    Case("fileserver-node-number", fileserver(node=7), "fileserver.node"),
    Case("fileserver-node-unknown", fileserver(node="nas"), "fileserver.node"),
    Case("fileserver-clients-number", fileserver(clients=10), "fileserver.clients"),
    Case("fileserver-clients-host-bits", fileserver(clients="10.0.0.1/24"), "fileserver.clients"),
    Case("fileserver-clients-outside", fileserver(clients="0.0.0.0/0"), "fileserver.clients"),
    Case("fileserver-clients-list", fileserver(clients=["10.0.0.0/24"]), "fileserver.clients"),
    Case("fileserver-export-dotdot", fileserver(exports=["/home/../etc"]), "fileserver.exports[0]"),
    Case("fileserver-export-root", fileserver(exports=["/"]), "fileserver.exports[0]"),
    Case("fileserver-export-relative", fileserver(exports=["scratch"]), "fileserver.exports[0]"),
    Case("fileserver-export-space", fileserver(exports=["/my data"]), "fileserver.exports[0]"),
    Case("fileserver-export-comma", fileserver(exports=["/a,rw"]), "fileserver.exports[0]"),
    Case("fileserver-export-long", fileserver(exports=["/" + "d" * 300]), "fileserver.exports[0]"),
    Case("fileserver-export-system", fileserver(exports=["/usr/local"]), "fileserver.exports[0]"),
    Case("fileserver-export-twice", fileserver(exports=["/home", "/home"]), "fileserver.exports[1]"),
    Case("fileserver-export-mapping", fileserver(exports=[{"path": "/home"}]), "fileserver.exports[0]"),
    Case("fileserver-exports-string", fileserver(exports="/home"), "fileserver.exports"),
    Case("fileserver-exports-empty", fileserver(exports=[]), "fileserver.exports"),
    Case("fileserver-unknown-key", fileserver(options="rw,no_root_squash"), "fileserver.options"),
    Case("fileserver-not-mapping", at(("fileserver",), "gps"), "fileserver"),
]

# --- issue 15: Slurm accounting is a switch, true or false, nothing else ----------------------------

ACCOUNTING: list[Case] = [
    *(Case(f"slurm.accounting-{label}", at(("slurm", "accounting"), value), "slurm.accounting")
      for label, value in (("string-yes", "yes"), ("string-true", "true"), ("number", 1), ("null", None),
                           ("list", [True]), ("mapping", {"enabled": True}), ("newline", "true\nfalse"))),
    Case("slurm.accounting-misspelt", at(("slurm", "acounting"), True), "slurm.acounting"),
    Case("slurm.accounting-addon-missing", both(at(("slurm", "accounting"), True),
                                                lambda box: (box.profiles / "accounting.yaml").unlink()),
         "slurm.accounting"),
]

CASES: list[Case] = [*_string_cases(), *GRAMMAR, *FILES, *TEMPLATES, *TOGETHER, *LATE, *FILESERVER, *ACCOUNTING]
