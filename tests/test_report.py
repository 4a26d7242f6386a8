"""The report: README.md and a self-contained report.html, rendered by a real browser."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from repro import claims
from repro.report import claims_table, readme_with_table

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]

# Appended to a copy of the report: counts the figures the browser actually decoded.
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.total = images.length;
});</script>"""


def test_markdown_report_has_every_claim_and_its_figures(quick_results):
    text = (quick_results / "README.md").read_text()
    for claim in claims.all_claims():
        assert f"## {claim.CLAIM_ID}" in text
        for name in claim.FIGURES:
            assert f"({claim.CLAIM_ID}/{name})" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (quick_results / link).is_file(), link


def test_html_report_is_self_contained(quick_results):
    page = (quick_results / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|[\w./-]+\.png)""", page)
    assert page.count("data:image/png;base64,") == sum(len(c.FIGURES) for c in claims.all_claims())


def test_html_report_renders_in_a_headless_browser(quick_results, tmp_path):
    if CHROMIUM is None:
        # CI installs the browser (`make browser`), so there a missing one is a failure.
        assert os.environ.get("CI") != "true", "Chromium missing under CI: `make browser` failed"
        pytest.skip("Chromium missing: install Debian's chromium package (make browser, as root)")
    probe = tmp_path / "probe.html"
    probe.write_text(
        (quick_results / "report.html").read_text().replace("</body>", PROBE + "</body>")
    )
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    total = sum(len(c.FIGURES) for c in claims.all_claims())
    assert f'data-decoded="{total}"' in dom and f'data-total="{total}"' in dom
    for claim in claims.all_claims():
        assert f'id="{claim.CLAIM_ID}"' in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            *profile,
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            (quick_results / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_claim_table_matches_the_registry_and_committed_verdicts():
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme, ROOT / "results") == readme, (
        "README.md's claim table is stale: run `make report`"
    )
    assert claims_table(ROOT / "results").count("\n") == len(claims.claim_ids()) + 1
