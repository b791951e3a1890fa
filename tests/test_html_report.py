"""``jopt compare --html``: one self-contained file with the table and the plots embedded, and
(when a Chromium is installed) the same file decoded by a real headless browser."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from jopt import JoptError
from jopt.cli import main as cli
from jopt.experiment import markdown_to_html_table, write_html_report

_DATA_IMG = re.compile(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
BROWSERS = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")


def _run_dir(root, name, losses, best):
    d = root / name
    d.mkdir()
    (d / "config.yaml").write_text(f"name: {name}\n")
    rows = [
        {"epoch": e + 1, "step": 10 * (e + 1), "train_loss": v, "val_loss": v + 0.1,
         "val_accuracy": 1 - v / 3, "time": 0.5 * (e + 1)}
        for e, v in enumerate(losses)
    ]  # fmt: skip
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"status": "completed", "epochs_run": len(losses), "best": best, "final": best}
    (d / "summary.json").write_text(json.dumps(summary))
    return str(d)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = _run_dir(root, "adam<a>", [1.0, 0.6, 0.4], {"val_loss": 0.5, "val_accuracy": 0.8667})
    b = _run_dir(root, "sgd", [1.2, 0.9, 0.8], {"val_loss": 0.9, "val_accuracy": 0.7333})
    out = root / "cmp"
    assert cli(["compare", a, b, "--out", str(out), "--html"]) == 0
    return out


def test_one_self_contained_file(report):
    text = (report / "compare.html").read_text(encoding="utf-8")
    # the table, with the same cells as compare.md (names escaped)
    assert "<table>" in text and "<th>val_accuracy</th>" in text
    assert "<td>adam&lt;a&gt;</td>" in text
    assert "<td>0.8667</td>" in text and "<td>0.7333</td>" in text
    assert "best epoch" in text
    # every plot compare wrote is embedded as a PNG data URI, byte for byte
    pngs = sorted(f for f in os.listdir(report) if f.endswith(".png"))
    assert "val_loss_vs_epoch.png" in pngs
    embedded = dict(_DATA_IMG.findall(text))
    assert sorted(embedded) == pngs
    for name in pngs:
        assert base64.b64decode(embedded[name]) == (report / name).read_bytes()
    # nothing is fetched from outside the file
    assert not re.search(r'(src|href)="(?!data:)', text)
    assert "<script" not in text


def test_without_flag_no_html(tmp_path):
    a = _run_dir(tmp_path, "a", [1.0, 0.5], {"val_loss": 0.5})
    assert cli(["compare", a, "--out", str(tmp_path / "cmp")]) == 0
    assert not (tmp_path / "cmp" / "compare.html").exists()


def test_table_conversion_and_refusals(tmp_path):
    html = markdown_to_html_table("| run | loss |\n|---|---|\n| a | 0.5000 |\n| b&c | – |")
    assert "<th>run</th><th>loss</th>" in html
    assert "<tr><td>a</td><td>0.5000</td></tr>" in html and "<td>b&amp;c</td>" in html
    with pytest.raises(JoptError, match="not a markdown table"):
        markdown_to_html_table("just text")
    bad = tmp_path / "x.png"
    bad.write_text("not a png")
    with pytest.raises(JoptError, match=r"x\.png: not a PNG file"):
        write_html_report(str(tmp_path / "r.html"), title="t", images=[str(bad)])
    missing = str(tmp_path / "missing.png")
    with pytest.raises(JoptError, match=r"cannot embed plot .*missing\.png"):
        write_html_report(str(tmp_path / "r.html"), title="t", images=[missing])


def _browser():
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium installed")
def test_opens_in_a_headless_browser(report, tmp_path):
    """Chromium loads the file from disk and decodes every embedded plot.

    A copy of the report gets a one-line script that writes, once the page has loaded, how
    many images decoded to a non-zero size; ``--dump-dom`` returns the DOM after load.
    """
    text = (report / "compare.html").read_text(encoding="utf-8")
    n_img = len(_DATA_IMG.findall(text))
    probe = (
        "<script>window.addEventListener('load', () => { document.body.dataset.decoded = "
        "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length; });</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run(
        [*cmd, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<table>" in dom and "adam&lt;a&gt;" in dom
    assert f'data-decoded="{n_img}"' in dom, dom[-500:]
