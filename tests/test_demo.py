"""The demo on the pocket organism, and its report rendered by a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from emlens.directions import Direction
from emlens.organisms.pocket.demo import run_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(out, n=2, questions_per_domain=1, alphas=(2.0, 4.0), progress=False)
    return out, summary


def test_demo_writes_report_directions_and_numbers(demo):
    out, s = demo
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    r = s["rates"]
    # The organism's point, measured: em is misaligned outside medicine, chat is not.
    assert r["em"]["em_elsewhere"] > r["chat"]["em_elsewhere"]
    assert r["em"]["medical_misaligned"] > 0.5
    for name in ("em", "em_seed1", "em_rank1", "narrow"):
        d = Direction.load(out / "directions" / f"pocket_{name}_mean_diff.safetensors")
        assert d.vectors.shape == (s["model"]["n_layers"], s["model"]["d_model"])
        assert d.metadata["model"]["adapters"]  # provenance of the finetune it came from
    html = (out / "report.html").read_text()
    assert html.count('id="emlens-fig-') >= 9
    assert "EM outside medicine" in html and "random" in html
    assert any("report.html" in line for line in s["lines"])


def test_demo_reads_its_numbers_against_the_controls(demo):
    """Each headline is compared with its same-norm random control and the papers' effect;
    a best alpha is named only when steering raised EM above random."""
    out, s = demo
    said = {line.split(":", 1)[0]: line for line in s["lines"][7:]}
    assert {"EM", "narrow", "steering", "ablation", "directions"} <= set(said)
    st, ab = s["steering"], s["ablation"]
    assert (st["best_alpha"] is None) == (not st["moved"])
    if not st["moved"]:
        assert said["steering"].startswith("steering: no effect:")
    if ab["compare"]["vs_random"]["effect"] == "none":
        assert said["ablation"].startswith("ablation: no effect:")
    for row in st["per_alpha"]:
        assert row["n"] > 0 and row["random_n"] > 0 and row["difference_ci"] is not None
    html = (out / "report.html").read_text()
    assert "What the numbers show" in html and "the papers report" in html
    assert "alpha x |v|" in html and 'class="caption"' in html


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_every_figure_in_headless_chromium(demo, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("EMLENS_REQUIRE_BROWSER"):
            pytest.fail("EMLENS_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    out, _ = demo
    report = out / "report.html"
    n_figures = report.read_text().count('id="emlens-fig-')
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=15000", "--dump-dom", report.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    chunks = re.split(r'id="emlens-fig-\d+"', dom)[1:]
    assert len(chunks) == n_figures
    for i, chunk in enumerate(chunks):  # plotly replaced each div's content with its SVG plot
        assert "main-svg" in chunk.split('id="emlens-fig-')[0], f"figure {i} did not render"
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"error|uncaught|exception", line, re.I)]
    assert not errors, errors

