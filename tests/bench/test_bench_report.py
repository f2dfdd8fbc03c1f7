"""The bench's report: the table a user reads and the JSON the README numbers come from.

The bench itself (minutes, root, network) runs with `make bench`, not here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from builder.bench import (
    COLUMNS,
    Goal,
    Measurement,
    RoleLayer,
    Workspace,
    format_goals,
    format_roles,
    format_table,
    machine_facts,
    markdown_report,
    results_document,
    role_layer_rows,
    write_scale_cluster,
)
from builder.build import plan_job
from builder.config import load_cluster
from builder.layers import layer_path, layer_record_path, role_layers
from builder.paths import repo_root

RESULTS = [
    Measurement("fetch", "cold", seconds=31.4159, cpu_seconds=40.02, rss_self_kib=60 * 1024, rss_children_kib=98_000),
    Measurement("fetch", "warm", seconds=0.0123, cpu_seconds=0.004, rss_self_kib=37_000, rss_children_kib=0),
    Measurement("role base", "cold, apt archive empty", seconds=254.6, cpu_seconds=301.7,
                rss_self_kib=45_000, rss_children_kib=310_000),
]


def _cells(table: str) -> list[list[str]]:
    """Read the table back by the column spans its rule line marks."""
    lines = table.splitlines()
    spans = [(m.start(), m.end()) for m in re.finditer("-+", lines[1])]
    assert len(spans) == len(COLUMNS)
    return [[line[start:end].strip() for start, end in spans] for line in [lines[0], *lines[2:]]]


def test_table_has_a_header_a_rule_and_one_row_per_step() -> None:
    table = format_table(RESULTS)
    assert len(table.splitlines()) == 2 + len(RESULTS)
    header, *rows = _cells(table)
    assert header == list(COLUMNS)
    assert [row[:2] for row in rows] == [[m.step, m.cache] for m in RESULTS]


def test_numbers_are_right_aligned_under_their_headers() -> None:
    lines = format_table(RESULTS).splitlines()
    end = lines[0].index("seconds") + len("seconds")
    assert all(row[end - 1] != " " and row[end] == " " for row in lines[2:])


def test_table_keeps_cache_hits_visible_and_shows_memory_in_mib() -> None:
    rows = _cells(format_table(RESULTS))[1:]
    assert [row[2:] for row in rows] == [
        ["31.4", "40.0", "60 MiB", "96 MiB"],
        ["0.01", "0.00", "36 MiB", "0 MiB"],  # a cache hit is not rounded away to 0.0
        ["255", "302", "44 MiB", "303 MiB"],
    ]


def test_results_document_is_json_with_the_machine_and_every_step() -> None:
    machine = {"nproc": 2, "memory_mib": 1024, "python": "3.11", "xz": "xz (XZ Utils) 5.4.1"}
    document = json.loads(json.dumps(results_document(RESULTS, machine, mode="full")))
    assert document["machine"] == machine
    assert document["mode"] == "full" and document["role"] == "compute"
    assert [(r["step"], r["cache"]) for r in document["results"]] == [(m.step, m.cache) for m in RESULTS]
    assert document["results"][0]["rss_self_mib"] == 60.0
    assert document["results"][1]["seconds"] == 0.01


def test_machine_facts_name_cores_memory_python_and_xz() -> None:
    facts = machine_facts()
    assert isinstance(facts["nproc"], int) and facts["nproc"] >= 1
    assert isinstance(facts["memory_mib"], int) and facts["memory_mib"] > 0
    assert str(facts["python"]).count(".") == 2
    assert str(facts["xz"]).startswith("xz (XZ Utils)")


GOALS = [
    Goal("cluster", "every role image, cold / one role image, cold", measured=181.0, reference=127.0, unit="s",
         limit=1.5),
    Goal("flash", "bytes written / mapped bytes", measured=1300.0, reference=1000.0, unit="MiB", limit=1.1),
]


def test_a_goal_is_a_ratio_of_two_measured_numbers_against_its_limit() -> None:
    assert round(GOALS[0].ratio, 3) == 1.425 and GOALS[0].met
    assert GOALS[1].ratio == 1.3 and not GOALS[1].met


def test_goals_table_prints_the_ratio_with_both_numbers_and_whether_it_is_met() -> None:
    lines = format_goals(GOALS).splitlines()
    assert lines[0].split()[:2] == ["goal", "ratio"]
    assert "1.43" in lines[2] and "≤ 1.5" in lines[2] and "181 s" in lines[2] and "127 s" in lines[2]
    assert lines[2].endswith("met") and lines[3].endswith("NOT MET")
    assert "1300 MiB" in lines[3] and "1000 MiB" in lines[3]


def test_readme_tables_come_from_the_results_document() -> None:
    machine = {"date": "2026-11-26 01:40:00 +0000", "commit": "abc1234", "nproc": 2, "memory_mib": 24000,
               "load_average": [2.5, 2.0, 1.5]}
    document = json.loads(json.dumps(results_document(RESULTS, machine, mode="full", goals=GOALS)))
    report = markdown_report(document)
    assert "commit abc1234, 2 cores" in report
    assert "| every role image, cold / one role image, cold | **1.43** | ≤ 1.5 | 181 s | 127 s |" in report
    assert "| role base | cold, apt archive empty | 255 | 44 / 303 MiB |" in report


def test_the_scale_inventory_is_a_valid_cluster_of_256_compute_nodes(tmp_path: Path) -> None:
    work = Workspace(tmp_path)
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    data["secrets_dir"] = str(tmp_path / "secrets")
    work.cluster_file.write_text(yaml.safe_dump(data))
    cluster = load_cluster(write_scale_cluster(work, 256), profiles_dir=repo_root() / "profiles")
    assert len(cluster.nodes_with_role("compute")) == 256
    assert set(cluster.roles) == {"controller", "auxiliary", "compute"}


def test_each_roles_layers_report_their_cold_time_and_size_and_the_role_image_its_size(tmp_path: Path) -> None:
    """Issue 15: the roles that grew show what each layer added, its cold build time (the record the
    layer's build left beside it) and the role image's size; a layer without a record says so."""
    work = Workspace(tmp_path)
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    data["secrets_dir"] = str(tmp_path / "secrets")
    work.cluster_file.write_text(yaml.safe_dump(data))
    cluster = load_cluster(work.cluster_file, profiles_dir=repo_root() / "profiles")
    base, cache = tmp_path / "base.img", tmp_path / "cache"
    layers = role_layers(base, plan_job(cluster, [("auxiliary", None)], secrets=False, cache=cache).plans[0])
    for n, layer in enumerate(layers):
        path = layer_path(cache, layer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (1 << 20) * (n + 1))
        if layer.profile != "common":
            layer_record_path(path).write_text(json.dumps({"seconds": 100.0 + n}))
    image = tmp_path / "out" / f"{cluster.name}-auxiliary.img"
    image.parent.mkdir()
    image.write_bytes(b"y" * (3 << 20))
    rows = role_layer_rows(cache, base, [str(image)], cluster)
    aux = [r for r in rows if r.role == "auxiliary"]
    assert [r.layer for r in aux] == [layer.profile for layer in layers]
    assert aux[0].layer == "common" and aux[0].cold_seconds is None and "slurm-client" in aux[0].new
    assert aux[-1].cold_seconds == 100.0 + len(layers) - 1 and aux[-1].image_mib == 3
    assert {r.role for r in rows} == set(cluster.roles)
    table = format_roles(aux)
    assert "cached" in table.splitlines()[2] and "3 MiB" in table
    document = json.loads(json.dumps(results_document(RESULTS, {}, mode="full", roles=[
        RoleLayer("compute", "compute", "slurmd openmpi-bin", 412.5, 900.0, 2100.0)])))
    report = markdown_report({**document, "machine": {"date": "d", "commit": "c", "nproc": 2, "memory_mib": 24000,
                                                      "load_average": [1.0]}})
    assert "| compute | compute | 412 | 900 MiB | 2100 MiB | slurmd openmpi-bin |" in report
