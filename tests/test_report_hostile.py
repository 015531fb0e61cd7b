"""``musiq report`` against hostile names, huge files and planted links (issue 18 items 9
and 11, issue 19 item 7): the page's embedded data never closes its element or re-enters
the template, 100k+ rows render, one bad path is one card without a picture, decoder memory
is bounded, every write replaces a link instead of following it."""
from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from browser_check import BROWSER_DIR
from conftest import GOLDEN, ROOT
from musiq.report import build_report
from musiq.report.template import script_json
from musiq.report.thumbs import PixelBudget, make_thumbnails

MUSIQ = [sys.executable, "-m", "musiq.cli.main"]
PHOTO = GOLDEN / "images" / "chelsea_451x300_q75.jpg"
DATA_OPEN = '<script type="application/json" id="data">'


def cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([*MUSIQ, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def write_csv(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "score", "error"])
        w.writerows(rows)


def embedded(page: str) -> str:
    """The data element's text as an HTML parser sees it: up to the first ``</script``."""
    start = page.index(DATA_OPEN) + len(DATA_OPEN)
    return page[start:page.lower().index("</script", start)]


def test_names_cannot_break_the_page(tmp_path):
    names = ["<!--<script>.jpg", "a{{JS}}.jpg", "b{{DATA}}{{CSS}}.jpg",
             "</script><script>alert(1)</script>.jpg", "&amp;<b>.jpg",
             "{{TITLE}}"]
    scores = tmp_path / "s.csv"
    write_csv(scores, [[n, f"{i + 1}.5", ""] for i, n in enumerate(names)])
    out = build_report(scores, tmp_path / "r.html", progress=False, title="t{{JS}}</title>")
    page = out.read_text(encoding="utf-8")
    text = embedded(page)
    assert not re.search("[<>&\u2028\u2029]", text)
    data = json.loads(text)
    assert [r["path"] for r in data["rows"]] == names
    assert data["title"] == "t{{JS}}</title>"
    js = (ROOT / "src/musiq/report/static/report.js").read_text(encoding="utf-8")
    rest = page.replace(text, "").replace(js, "").replace("<title>t{{JS}}", "")
    assert page.count(js) == 1 and "{{" not in rest
    assert "<title>t{{JS}}&lt;/title&gt;</title>" in page


def test_script_json_escapes_line_separators():
    value = {"p": "x\u2028y\u2029z</script><!--&"}
    text = script_json(value)
    assert not re.search("[<>&\u2028\u2029]", text) and json.loads(text) == value


@pytest.mark.skipif(shutil.which("node") is None, reason="node not found")
def test_many_rows_without_a_range_render(tmp_path):
    n = 150_000  # Math.min(...scores) overflowed the call stack from about 100k
    scores = tmp_path / "big.csv"
    write_csv(scores, [[f"d/i{i}.jpg", f"{(i * 7919) % 1000 / 10:.1f}", ""] for i in range(n)]
              + [["d/bad.jpg", "", "not an image"]])
    page = build_report(scores, tmp_path / "big.html", embed=True, progress=False)
    run = subprocess.run(["node", str(BROWSER_DIR / "report_stub.mjs"), str(page)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    shown = json.loads(run.stdout)
    assert shown["ready"] == "1" and shown["shown"] == f"{n + 1} of {n + 1} shown"
    assert sum(map(int, shown["counts"].split(","))) == n
    assert [c["score"] for c in shown["cards"][:2]] == [99.9, 99.9]
    assert shown["cards"][0]["name"].startswith("i") and shown["failures"] == 1


def test_one_unreachable_path_is_one_card(tmp_path):
    long_part = "x" * 300  # ENAMETOOLONG
    huge = "y/" * 500_000 + "z.jpg"  # a 1 MB path: never printed whole
    img = tmp_path / "ok.jpg"
    shutil.copy(PHOTO, img)
    scores = tmp_path / "s.jsonl"  # (a CSV field over 131,072 characters: the reader's part)
    scores.write_text("".join(json.dumps({"path": p, "score": s}) + "\n" for p, s in [
        (f"{long_part}/a.jpg", 3.0), (str(img), 4.0), (huge, 5.0), ("nul\0byte.jpg", 6.0)]))
    r = cli("report", scores, "-o", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr[:2000]
    assert len(r.stderr) < 2000
    data = json.loads(embedded((tmp_path / "r.html").read_text(encoding="utf-8")))
    thumbs = [row.get("thumb") for row in data["rows"]]
    assert thumbs[0] is None and thumbs[2] is None and thumbs[3] is None
    assert thumbs[1] == "r_thumbs/000001.jpg"
    assert Image.open(tmp_path / thumbs[1]).size == (192, 128)


def test_writes_replace_planted_links(tmp_path):
    img = tmp_path / "ok.jpg"
    shutil.copy(PHOTO, img)
    scores = tmp_path / "s.csv"
    write_csv(scores, [[str(img), "4.0", ""]])
    victims = {}
    for name in ("thumb_victim", "partial_victim", "page_victim"):
        victims[name] = tmp_path / name
        victims[name].write_text("keep me")
    (tmp_path / "r_thumbs").mkdir()
    (tmp_path / "r_thumbs" / "000000.jpg").symlink_to(victims["thumb_victim"])
    (tmp_path / "r.html.partial").symlink_to(victims["partial_victim"])
    (tmp_path / "r.html").symlink_to(victims["page_victim"])
    build_report(scores, tmp_path / "r.html", progress=False)
    assert all(v.read_text() == "keep me" for v in victims.values())
    assert not (tmp_path / "r.html").is_symlink() and "<html" in (tmp_path / "r.html").read_text()
    thumb = tmp_path / "r_thumbs" / "000000.jpg"
    assert not thumb.is_symlink() and Image.open(thumb).size == (192, 128)


def test_missing_output_folder_is_refused_before_work(tmp_path):
    scores = tmp_path / "s.csv"
    write_csv(scores, [["a.jpg", "1.0", ""]])
    missing = tmp_path / "nonexist"
    r = cli("report", scores, "-o", missing / "x.html")
    assert r.returncode == 2 and f"folder {missing} does not exist" in r.stderr
    assert not missing.exists()


def test_decoded_pixels_are_bounded_over_threads(tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"big{i}.png"
        Image.new("RGB", (1000, 800), (i * 40, 100, 200)).save(p, compress_level=1)
        paths.append(p)
    budget = PixelBudget(1_700_000)  # two 0.8 MP images at once, never three
    urls = make_thumbnails(paths, 64, folder=None, workers=6, progress=False, budget=budget)
    assert all(u and u.startswith("data:image/jpeg;base64,") for u in urls)
    assert budget.peak == 1_600_000 and budget.used == 0


def test_big_png_thumbnails_stay_in_memory_bound(tmp_path):
    # Four threads on 36 MP PNGs (108 MB decoded each) with a 40 MP budget: one at a time.
    src = tmp_path / "big0.png"
    Image.new("RGB", (6000, 6000), (90, 120, 200)).save(src, compress_level=1)
    for i in range(1, 4):
        os.link(src, tmp_path / f"big{i}.png")
    code = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from musiq.report.thumbs import PixelBudget, make_thumbnails
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        paths = sorted(Path({str(tmp_path)!r}).glob("big*.png"))
        urls = make_thumbnails(paths, 64, folder=None, workers=4, progress=False,
                               budget=PixelBudget(40_000_000))
        assert all(urls)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    grown_mb = int(r.stdout.strip())
    assert grown_mb < 260, grown_mb  # four at once: over 430 MB
