"""The devcloud demo's migration, drawn and reported, and the report opened in a real browser.

The seeded tenant migrates whole as ``make demo`` does it (examples/devcloud.yaml, the
devcloud's conversion hosts, vm-active stopped for its migration). Then ``graph`` renders the
plan with Graphviz, ``report --run latest`` writes the HTML report, and headless Chromium (the
Debian package, installed by the test itself) loads it from disk, serializes the DOM it built
and takes a screenshot. The DOM must hold the plan's summary counts, every address of the plan,
every step of the run and every workload's verified volumes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import openstack
import pytest

from tests.debian import ensure_debian
from tests.integration.conftest import Devcloud, run_cli
from tests.integration.demo_manifest import manifest_text
from tests.integration.destination import wipe_destination
from tests.views.html_dom import assert_self_contained, dom_of

pytestmark = pytest.mark.devcloud

#: Headless Chromium that talks to nothing: no background services, and any fetch would go
#: to a closed port on loopback (the report must not need one; the DOM proves it rendered).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_debian("chromium", "chromium")


@pytest.fixture(scope="module")
def demo(devcloud: Devcloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo's plan, applied: paths of the manifest, the plan and the reports. The
    destination is wiped before and after, for the modules that follow."""
    ensure_debian("dot", "graphviz")
    dst = openstack.connect(cloud="devcloud-dst")
    wipe_destination(dst, devcloud.destination_host.server_id)
    directory = tmp_path_factory.mktemp("demo-report")
    manifest = directory / "demo.yaml"
    manifest.write_text(manifest_text(devcloud, directory / "state", stop_source_servers=True))
    plan = directory / "demo.plan"
    done = run_cli("plan", "-m", str(manifest), "-o", str(plan))
    assert done.returncode == 0, done.stderr
    # Not a terminal: plain progress lines, here every 3 seconds.
    applied = run_cli(
        "apply", "-m", str(manifest), str(plan), env={"TENANTSHIFT_PROGRESS_INTERVAL": "3"}
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    html = directory / "report.html"
    made = run_cli("report", "-m", str(manifest), "--run", "latest", "-o", str(html))
    assert made.returncode == 0, made.stderr
    twin = run_cli("report", "-m", str(manifest), "--run", "latest", "--json")
    assert twin.returncode == 0, twin.stderr
    yield {
        "dir": directory,
        "manifest": manifest,
        "plan": plan,
        "html": html,
        "doc": json.loads(twin.stdout),
        "apply_output": applied.stdout,
    }
    wipe_destination(dst, devcloud.destination_host.server_id)


def test_the_apply_printed_plain_progress_at_a_steady_pace(demo: dict[str, Any]) -> None:
    output = demo["apply_output"]
    assert "\r" not in output and "\x1b[" not in output  # no redraws, no escape codes
    lines = [x for x in output.splitlines() if "] progress: resources " in x]
    seconds = sum(s["duration_seconds"] or 0 for s in [demo["doc"]["run"]])
    assert len(lines) >= seconds / 3 - 2, (len(lines), seconds)
    planned = demo["doc"]["plan"]["bytes_to_move"]
    assert planned == 7 * 2**30  # the four servers' disks and the volume, from the plan
    copying = [x for x in lines if "copying server." in x or "copying volume." in x]
    assert copying and all(" left" in x for x in copying)
    assert any(f"/{7.0:.1f} GiB (" in x for x in lines)


def test_the_demo_plan_draws_with_graphviz(demo: dict[str, Any]) -> None:
    svg = demo["dir"] / "plan.svg"
    done = run_cli("graph", str(demo["plan"]), "-o", str(svg))
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(svg.read_text())
    ns = {"s": "http://www.w3.org/2000/svg"}
    titles = {t.text for t in root.iterfind(".//s:g[@class='node']/s:title", ns)}
    labels = " ".join(t.text or "" for t in root.iterfind(".//s:text", ns))
    plan = json.loads(demo["plan"].read_text())
    migrates = [c for c in plan["changes"] if c["action"] == "migrate"]
    assert len(migrates) == 5  # four servers and the detached volume
    assert {c["address"] for c in plan["changes"]} <= titles
    assert labels.count("to move") == len(migrates)
    changes_only = run_cli("graph", str(demo["plan"]), "--changes-only")
    noops = [c["address"] for c in plan["changes"] if c["action"] == "no-op"]
    assert noops and not any(f'"{a}" [' in changes_only.stdout for a in noops)


def test_the_report_in_a_real_browser(demo: dict[str, Any], chromium: str) -> None:
    html, doc = demo["html"], demo["doc"]
    assert_self_contained(html.read_text())
    profile = demo["dir"] / "chromium-profile"
    dumped = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    dom = dom_of(dumped.stdout)
    plan = json.loads(demo["plan"].read_text())
    # The summary counts, as the browser shows them.
    for key, count in plan["summary"].items():
        assert dom.text_by_id[f"count-{key}"] == str(count), key
    assert dom.text_by_id["run-done"] == str(len(doc["run"]["steps"]))
    assert dom.text_by_id["run-failed"] == "0"
    # Every address of the plan has its row, every step of the run its timeline row.
    rows = {a["data-address"] for t, a in dom.tags if t == "tr" and a.get("data-address")}
    assert rows == {c["address"] for c in plan["changes"]}
    steps = {a["data-node"] for t, a in dom.tags if t == "tr" and a.get("data-node")}
    assert steps == {s["node"] for s in doc["run"]["steps"]}
    assert {s["status"] for s in doc["run"]["steps"]} == {"done"}
    # The graph drew every address; the workloads' copies are there and verified.
    nodes = {a.get("id") for t, a in dom.tags if t == "g" and a.get("class") == "node"}
    assert len(nodes) == len(plan["changes"]), "the inline SVG graph has every address"
    workloads = {a["data-workload"] for t, a in dom.tags if a.get("data-workload")}
    assert workloads == {c["address"] for c in plan["changes"] if c["action"] == "migrate"}
    volumes = [v for w in doc["run"]["workloads"] for v in w["volumes"]]
    assert len(volumes) == 6  # vm-bfv has two disks, the others one each, plus archive-vol
    assert all(v["verified"] and v["digest"] and v["bytes_sent"] > 0 for v in volumes)
    assert dumped.stdout.count(">verified<") == len(volumes)
    assert "nothing-left" in dom.text_by_id

    shot = demo["dir"] / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1280, 1600)
    assert len(png) > 50_000, "a page with tables and a graph, not a blank one"
