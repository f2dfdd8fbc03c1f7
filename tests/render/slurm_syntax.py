"""A strict reader of the slurm.conf lines clusterbake writes (no slurm binary on the build host).

It knows the keys we use and their value shapes, so a typo or a malformed node line fails here
rather than in slurmctld on a Pi. The real daemons read the file in the cluster test.
Hostlists (`node[01-06]`, `10.0.0.[101-106]`) are expanded the way Slurm does, written here
independently of the builder's own code: `conf.nodes` has one entry per node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INT = re.compile(r"^\d+$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
PLUGIN = re.compile(r"^[a-z_]+/[a-z0-9_]+$")
PATH = re.compile(r"^/[\w./-]+$")

GLOBAL_KEYS: dict[str, re.Pattern[str]] = {
    "ClusterName": re.compile(r"^[a-z0-9_-]{1,40}$"),
    "SlurmctldHost": re.compile(r"^[a-z0-9-]+\(\d+\.\d+\.\d+\.\d+\)$"),
    "AuthType": PLUGIN, "CredType": PLUGIN, "ProctrackType": PLUGIN, "SchedulerType": PLUGIN,
    "SelectType": PLUGIN, "JobAcctGatherType": PLUGIN, "MpiDefault": re.compile(r"^(none|pmix|pmi2)$"),
    "TaskPlugin": re.compile(r"^[a-z_]+/[a-z_]+(,[a-z_]+/[a-z_]+)*$"),
    "SelectTypeParameters": re.compile(r"^CR_(Core|CPU|Socket)(_Memory)?$"),
    "SlurmctldParameters": re.compile(r"^[a-z_]+(=[a-z0-9_]+)?(,[a-z_]+(=[a-z0-9_]+)?)*$"),
    "SlurmUser": NAME, "SlurmctldPort": INT, "SlurmdPort": INT,
    "StateSaveLocation": PATH, "SlurmdSpoolDir": PATH, "SlurmctldPidFile": PATH, "SlurmdPidFile": PATH,
    "SlurmctldLogFile": PATH, "SlurmdLogFile": PATH,
    "SlurmctldDebug": re.compile(r"^(quiet|fatal|error|info|verbose|debug[2-5]?)$"),
    "SlurmdDebug": re.compile(r"^(quiet|fatal|error|info|verbose|debug[2-5]?)$"),
    "ReturnToService": re.compile(r"^[012]$"), "SlurmctldTimeout": INT, "SlurmdTimeout": INT,
    "InactiveLimit": INT, "KillWait": INT, "MinJobAge": INT, "Waittime": INT, "DefMemPerCPU": INT,
}
HOSTLIST = re.compile(r"^(?P<prefix>[^\[\],]*)\[(?P<first>\d+)-(?P<last>\d+)\](?P<suffix>[^\[\],]*)$")
NODE_KEYS: dict[str, re.Pattern[str]] = {
    "NodeName": re.compile(r"^[a-z0-9][a-z0-9-]*(\[\d+-\d+\])?$"),
    "NodeAddr": re.compile(r"^\d+\.\d+\.\d+\.(\d+|\[\d+-\d+\])$"), "CPUs": INT, "RealMemory": INT,
    "State": re.compile(r"^(UNKNOWN|CLOUD|FUTURE)$"),
}
PARTITION_KEYS: dict[str, re.Pattern[str]] = {
    "PartitionName": NAME, "Nodes": re.compile(r"^[a-z0-9-]+(\[\d+-\d+\])?(,[a-z0-9-]+(\[\d+-\d+\])?)*$"),
    "Default": re.compile(r"^(YES|NO)$"),
    "MaxTime": re.compile(r"^(INFINITE|\d+|\d+:\d\d(:\d\d)?|\d+-\d\d?(:\d\d(:\d\d)?)?)$"),
    "State": re.compile(r"^(UP|DOWN|DRAIN|INACTIVE)$"),
}


def expand(hostlist: str) -> list[str]:
    """`c[08-10],gps` → c08, c09, c10, gps: every number as wide as the range's first."""
    names = []
    for part in hostlist.split(","):
        match = HOSTLIST.match(part)
        if match is None:
            assert "[" not in part and "]" not in part, f"not a hostlist: {part!r}"
            names.append(part)
            continue
        first, last = int(match["first"]), int(match["last"])
        assert first < last, f"empty or one-element range: {part!r}"
        width = len(match["first"])
        names += [f"{match['prefix']}{n:0{width}d}{match['suffix']}" for n in range(first, last + 1)]
    return names


@dataclass
class SlurmConf:
    settings: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    partitions: dict[str, dict[str, str]] = field(default_factory=dict)


def parse(text: str) -> SlurmConf:
    conf = SlurmConf()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pairs = [token.split("=", 1) for token in line.split()]
        assert all(len(p) == 2 and p[1] for p in pairs), f"line {number}: not Key=Value: {raw!r}"
        key = pairs[0][0]
        table = NODE_KEYS if key == "NodeName" else PARTITION_KEYS if key == "PartitionName" else GLOBAL_KEYS
        if table is GLOBAL_KEYS:
            assert len(pairs) == 1, f"line {number}: one setting per line: {raw!r}"
        values = {}
        for k, v in pairs:
            assert k in table, f"line {number}: unknown key {k!r}"
            assert table[k].match(v), f"line {number}: bad value {k}={v}"
            assert k not in values, f"line {number}: {k} twice"
            values[k] = v
        if key == "NodeName":
            names, addrs = expand(values["NodeName"]), expand(values["NodeAddr"])
            assert len(names) == len(addrs), f"line {number}: {len(names)} names but {len(addrs)} addresses"
            for name, addr in zip(names, addrs, strict=True):
                assert name not in conf.nodes, f"line {number}: node {name} defined twice"
                conf.nodes[name] = {**values, "NodeName": name, "NodeAddr": addr}
        elif key == "PartitionName":
            conf.partitions[values["PartitionName"]] = values
        else:
            assert key not in conf.settings, f"line {number}: {key} set twice"
            conf.settings[key] = pairs[0][1]
    for name, partition in conf.partitions.items():
        unknown = set(expand(partition["Nodes"])) - set(conf.nodes)
        assert not unknown, f"partition {name} names undefined nodes {unknown}"
    assert sum(p.get("Default") == "YES" for p in conf.partitions.values()) <= 1
    return conf
