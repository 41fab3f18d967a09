"""`python -m analysis report`: the page and what lies beside it, and the page in a headless browser."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pandas as pd
import pytest

import plot
from analysis.__main__ import main as analysis
from analysis.report import table_html
from helpers import ARGS, assert_one_line, write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags a sandboxed CI container needs, and none of the browser's own calls home.
BROWSER = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
TYPES = ["det n_s rel aux_s v_intrans aux_s v_intrans quest aux_s det n_s rel aux_s v_intrans v_intrans",
         "det n_p rel aux_p v_intrans aux_s v_intrans quest aux_s det n_p rel aux_p v_intrans v_intrans"]
# Written into a copy of the page after it loads: each image and whether it drew, every resource fetched.
PROBE = """<script>window.addEventListener("load", () => {
  const pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify({images: [...document.images].map(i => [i.getAttribute("src"),
    i.complete && i.naturalWidth > 0]), resources: performance.getEntriesByType("resource").map(r => r.name)});
  document.body.appendChild(pre);
});</script>"""


def sweep(root) -> str:
    """Two learning rates x 3 seeds of synthetic QF runs (rule shares, two sentence types, a weight
    statistic); one run with tables and a figure under its analysis/."""
    steps = np.arange(0, 3000, 100)
    for lr, learns in ((1e-3, [True, False, False]), (3e-4, [True, True, True])):
        for seed, learned in enumerate(learns):
            h = learned / (1 + np.exp(-(steps / 100 - 10 - 3 * seed)))
            events = [{"test_aux": v, "test_hierarchical": v, "test_linear": 0.98 - v, "test_other": 0.02,
                       f"test_aux_type/{TYPES[0]}": v, f"test_aux_type/{TYPES[1]}": v / 2,
                       "weights/l1": 1 + step / 1000, "iteration": int(step)} for step, v in zip(steps, h)]
            write_run(root / f"lr{lr}_seed{seed}", {**ARGS, "lr": lr, "seed": seed, "data_dir": str(root / "none")},
                      events)
    analysed = root / "lr0.001_seed0" / "analysis"
    table = pd.DataFrame({"step": [0, 100], "val_aux": [0.5, 0.9]})
    analysed.mkdir()
    table.to_csv(analysed / "checkpoints.csv", index=False)
    plot.save(plot.checkpoint_accuracies(table, ["val_aux"], "one run"), str(analysed / "checkpoints.png"))
    return str(root / "lr*")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("report")
    out = str(root / "report")
    assert analysis(["report", sweep(root), "--out", out, "--dpi", "40"]) == 0
    return out


def test_report_writes_the_page_and_everything_it_shows_beside_it(report):
    assert sorted(os.listdir(report)) == ["comparisons.csv", "conditions.csv", "index.html", "outcomes.png", "runs",
                                          "runs.csv", "trajectories.png"]
    page = open(os.path.join(report, "index.html")).read()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(re.findall("<img ", page)) == 2 + 6 + 1
    for link in links:  # relative, inside DIR, present: the page opens offline and moved as a folder
        assert "//" not in link and not os.path.isabs(link) and ".." not in link
        assert os.path.isfile(os.path.join(report, link)), link
    assert "<script" not in page and "url(" not in page
    assert "runs/lr0.001_seed0/checkpoints.png" in links and "<td>0.9</td>" in page  # a run's own analysis
    assert "lr=0.0003 does not detectably differ from lr=0.001, p = " in page
    assert "1.00 [1.00, 1.00]" in page  # every seed of lr=3e-4 hierarchical: the share with its interval
    assert "python -m analysis hmm" in page  # 6 runs with weight statistics, no map drawn yet


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_page_in_a_headless_browser(report, tmp_path):
    """Every image loads, nothing but the page's own files is fetched, the console stays empty."""
    probed = os.path.join(report, "_probe.html")
    with open(os.path.join(report, "index.html")) as f:
        open(probed, "w").write(f.read().replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        # Any host name resolves to nothing: a remote resource could only fail, never be fetched.
        done = subprocess.run([CHROMIUM, *BROWSER, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                               "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", "--dump-dom",
                               f"file://{probed}"], capture_output=True, text=True, timeout=120)
        shot = tmp_path / "report.png"
        subprocess.run([CHROMIUM, *BROWSER, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1280,2000", f"file://{os.path.join(report, 'index.html')}"],
                       capture_output=True, timeout=120)
    os.remove(probed)
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S).group(1).replace("&quot;", '"'))
    assert len(probe["images"]) == 9 and all(loaded for _, loaded in probe["images"]), probe["images"]
    assert all(url.startswith("file://") for url in probe["resources"]), probe["resources"]
    assert not [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_report_without_runs_writes_nothing(tmp_path, capsys):
    out = tmp_path / "report"
    assert analysis(["report", str(tmp_path / "none*"), "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, "no such run directory")
    assert not out.exists()


def test_tables_leave_missing_values_blank_whatever_their_type():
    table = pd.DataFrame({"bimodal": pd.array([True, None], dtype="boolean"), "dip_p": [0.1234, None],
                          "n_runs": [10, 3], "regime": ["unstable", None]})
    cells = re.findall(r"<td>(.*?)</td>", table_html(table))
    assert cells == ["True", "0.123", "10", "unstable", "", "", "3", ""]
