"""The grammar of the strings a cluster file hands on to other files: names, hashes, shells, URLs.

Each check takes a string and returns None when it is good, else a short phrase saying what is
wrong; the Reader turns that into `file: key: problem (fix: …)`. Every pattern is matched whole
(`re.fullmatch`): `^…$` would let a trailing newline through into chpasswd, slurm.conf or
/etc/hosts. No string anywhere may hold a control character (`control_problem`).
"""

from __future__ import annotations

import re
import reprlib
import socket
import unicodedata
import urllib.parse

# C0 and C1 controls, DEL, Unicode line/paragraph separators, and the invisible format
# characters (bidi overrides, zero-width, BOM) that make a file read differently than it looks.
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")

LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
ACCOUNT_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
INTERFACE_RE = re.compile(r"[a-z0-9]{1,15}")
SHELL_RE = re.compile(r"(?:/[A-Za-z0-9._+-]+)+")
MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
SERIAL_RE = re.compile(r"[0-9a-f]{8,16}")
HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}")

MAX_FQDN = 253
MAX_SHELL = 255
MAX_URL = 2048

# Names Slurm reads as keywords in slurm.conf (NodeName=DEFAULT, Nodes=ALL, …) or that resolve
# to the machine itself; Slurm compares them without regard to case.
SLURM_WORDS = frozenset({"all", "default", "none", "localhost", "end", "future", "cloud"})

# Accounts the base image (or a package the roles install) already has: a cluster user of the
# same name would fail `useradd` after the download, or take over a daemon's identity.
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "_apt", "nobody", "nogroup", "systemd-network",
    "systemd-resolve", "systemd-timesync", "systemd-coredump", "systemd-journal", "messagebus", "sshd",
    "polkitd", "avahi", "dnsmasq", "tss", "rtkit", "lightdm", "pulse", "colord", "saned", "usbmux", "statd",
    "_rpc", "tcpdump", "dhcpcd", "uuidd", "munge", "slurm", "_chrony", "chrony", "gpsd", "ntpsec", "pi",
    "adm", "tty", "disk", "kmem", "dialout", "cdrom", "floppy", "audio", "dip", "video", "plugdev",
    "netdev", "sudo", "staff", "users", "input", "render", "gpio", "i2c", "spi", "shadow", "utmp",
    "operator", "voice", "src", "tape", "fax", "crontab", "ssh", "kvm", "sgx", "systemd-oom",
})

# The first UID/GID the cluster may use is above the image's own user (pi, 1000); above the
# range are the ones systemd and the kernel reserve (nobody is 65534).
ID_MIN = 1001
ID_MAX = 60000

_shown = reprlib.Repr()
_shown.maxstring = 48
_shown.maxother = 48
_shown.maxlist = _shown.maxtuple = _shown.maxdict = _shown.maxset = 4
_shown.maxlevel = 2


def shown(value: object) -> str:
    """A short, one-line, quoted prefix of a value for messages (never the whole of a huge one)."""
    return _shown.repr(value)


def control_problem(value: str) -> str | None:
    for offset, char in enumerate(value):
        if unicodedata.category(char) in _CONTROL_CATEGORIES:
            return f"holds the control character {char!r} at offset {offset}"
    return None


def label_problem(value: str, what: str) -> str | None:
    if len(value) > 63:
        return f"is {len(value)} characters long; a {what} is at most 63"
    if not LABEL_RE.fullmatch(value):
        return f"is not a {what} (a-z, 0-9 and '-', not at either end)"
    return None


def hostname_problem(value: str) -> str | None:
    problem = label_problem(value, "host name")
    if problem is None and value.lower() in SLURM_WORDS:
        return f"is a word Slurm or the resolver reads specially ({', '.join(sorted(SLURM_WORDS))})"
    if problem is None and (value.isdigit() or _reads_as_address(value)):
        return "reads as an IPv4 address (inet_aton takes '123' as 0.0.0.123, '0x1f' as 0.0.0.31), not a name"
    return problem


def _reads_as_address(value: str) -> bool:
    """Whether the resolver (inet_aton: decimal, octal or hex numbers) takes the name for an address."""
    try:
        socket.inet_aton(value)
    except OSError:
        return False
    return True


def partition_problem(value: str) -> str | None:
    if value.lower() in SLURM_WORDS:
        return f"is a word Slurm reads specially ({', '.join(sorted(SLURM_WORDS))})"
    return label_problem(value, "partition name")


def domain_problem(value: str) -> str | None:
    if len(value) > MAX_FQDN - 64:
        return f"is {len(value)} characters long; with a host name it must fit in {MAX_FQDN}"
    for label in value.split("."):
        if not LABEL_RE.fullmatch(label):
            return f"has the label {shown(label)}: labels are 1-63 of a-z, 0-9 and '-', not at either end"
    return None


def user_name_problem(value: str) -> str | None:
    problem = account_problem(value, "user name")
    if problem is None and value in SYSTEM_ACCOUNTS:
        return "is an account or group the image already has; choose another name for a cluster user"
    return problem


def account_problem(value: str, what: str) -> str | None:
    if not ACCOUNT_RE.fullmatch(value):
        return f"is not a {what} (1-32 of a-z, 0-9, '_' and '-', starting with a letter or '_')"
    return None


def shell_problem(value: str) -> str | None:
    if len(value) > MAX_SHELL or not SHELL_RE.fullmatch(value):
        return "is not an absolute path of letters, digits, '.', '_', '+', '-' (e.g. /bin/bash)"
    if any(part in (".", "..") for part in value.split("/")):
        return "has a '.' or '..' component; write the shell's real path"
    return None


# crypt(5): `$id$[param$]salt$hash`, all in the alphabet [./0-9A-Za-z].
_B64 = r"[./0-9A-Za-z]"
CRYPT_FORMATS: dict[str, re.Pattern[str]] = {
    "sha512crypt ($6$)": re.compile(rf"\$6\$(?:rounds=[1-9][0-9]{{3,8}}\$)?{_B64}{{1,16}}\${_B64}{{86}}"),
    "sha256crypt ($5$)": re.compile(rf"\$5\$(?:rounds=[1-9][0-9]{{3,8}}\$)?{_B64}{{1,16}}\${_B64}{{43}}"),
    "yescrypt ($y$)": re.compile(rf"\$y\${_B64}+\${_B64}{{1,86}}\${_B64}{{43}}"),
    "gost-yescrypt ($gy$)": re.compile(rf"\$gy\${_B64}+\${_B64}{{1,86}}\${_B64}{{43}}"),
    "bcrypt ($2b$)": re.compile(rf"\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\${_B64}{{53}}"),
}


def crypt_problem(value: str) -> str | None:
    if any(pattern.fullmatch(value) for pattern in CRYPT_FORMATS.values()):
        return None
    if value.startswith("$1$") or not value.startswith("$"):
        return "is an MD5 or DES crypt hash (or no hash at all); only strong hashes are accepted"
    return "is not a crypt(3) hash of the form $id$salt$hash (" + ", ".join(CRYPT_FORMATS) + ")"


def url_problem(value: str, *, paths: bool = True) -> str | None:
    """http(s)://host/…, file:///absolute/path or (with `paths`) a path relative to the cluster file."""
    if not value:
        return "is empty"
    if len(value) > MAX_URL:
        return f"is {len(value)} characters long; at most {MAX_URL}"
    if any(char.isspace() for char in value):
        return "holds white space; write it as %20"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            return "has no host name"
        if parts.username is not None or parts.password is not None:
            return "holds a user name or password; the base image must come from a public URL"
        if port == 0:
            return "has port 0"
        return None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return "names a remote host; file:// URLs must be local (file:///absolute/path)"
        return None if parts.path.startswith("/") else "is not file:///absolute/path"
    if scheme:
        return f"has the unsupported scheme '{parts.scheme}' (http, https, file or a path)"
    return None if paths else "is not an http(s) URL"


def mac_problem(value: str) -> str | None:
    if not MAC_RE.fullmatch(value):
        return "is not a MAC address like 2c:cf:67:00:00:01"
    first = int(value[:2], 16)
    if first & 1:
        return "is a multicast address, which no board has"
    if value == "00:00:00:00:00:00":
        return "is all zeros, which no board has"
    return None


def serial_problem(value: str) -> str | None:
    if not SERIAL_RE.fullmatch(value):
        return "is not a board serial (8 to 16 hex digits, as in /proc/cpuinfo)"
    if not value.strip("0"):
        return "is all zeros, which would match any board whose serial cannot be read"
    return None


def serials_confusable(one: str, other: str) -> bool:
    """Whether one board's serial could match both (the identity service accepts a short suffix form)."""
    return one.endswith(other) or other.endswith(one) or one.lstrip("0") == other.lstrip("0")
