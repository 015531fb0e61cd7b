"""``musiq report`` of a several-model file (issue 21): every card shows every model's score,
the page ranks and filters by the model picked, a scatter of two models' scores; model names
are text only. The page's script runs under node with a stand-in DOM (report_stub.mjs)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from scipy import stats

from browser_check import BROWSER_DIR
from conftest import GOLDEN, ROOT
from musiq.multi_scorer import MultiScorer
from musiq.report import build_report, read_scores
from musiq.results.rows import MultiPrediction, Prediction

NAMES = ["chelsea_451x300_q75.jpg", "coffee_600x400_q90.jpg", "rocket_640x427_q85.jpg",
         "camera_512x512_gray_q90.jpg"]
DATA_OPEN = '<script type="application/json" id="data">'
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node not found")


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def embedded(page: str) -> str:
    start = page.index(DATA_OPEN) + len(DATA_OPEN)
    return page[start:page.lower().index("</script", start)]


def stub(page, picks: dict | None = None) -> dict:
    run = subprocess.run(["node", str(BROWSER_DIR / "report_stub.mjs"), str(page),
                          json.dumps(picks or {})], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))


@pytest.fixture(scope="module")
def several(scorer_1class, scorer_10class, tmp_path_factory):
    """A several-model JSONL of four golden images and a broken file, and the models."""
    root = tmp_path_factory.mktemp("multi_report")
    bad = root / "broken.jpg"
    bad.write_bytes(b"this is not a picture")
    panel = MultiScorer({"tech": scorer_1class, "aesthetic": scorer_10class})
    files = [str(GOLDEN / "images" / n) for n in NAMES] + [str(bad)]
    rows = list(panel.predict_many(files, workers=0))
    out = root / "scores.jsonl"
    write_jsonl(out, rows)
    return out, rows, files


def test_reads_every_models_scores(several, scorer_1class, scorer_10class):
    path, _, files = several
    rows = read_scores(path)
    assert [r.path for r in rows] == files and all(r.score is None for r in rows)
    assert rows[-1].error and all(m.error for m in rows[-1].models.values())
    for name, scorer in (("tech", scorer_1class), ("aesthetic", scorer_10class)):
        alone = list(scorer.predict_many(files[:-1], workers=0))  # its single-model run
        got = [r.models[name].score for r in rows[:-1]]
        assert got == pytest.approx([p.score for p in alone], rel=1e-6, abs=1e-6)
    assert rows[0].models["aesthetic"].distribution is not None
    assert list(rows[0].models) == ["tech", "aesthetic"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_reads_csv_and_parquet_from_the_writers(fmt, several, tmp_path):
    """The report reads several-model CSV and Parquet as the score command writes them."""
    from musiq.results.columns import ENCODING, ERRORS
    from musiq.results.parquet import ParquetWriter
    from musiq.results.several import ModelSet
    from musiq.results.several_writers import make_several_writer
    _, rows, files = several
    models = ModelSet(("tech", "aesthetic"), ("mos", "distribution"))
    out = tmp_path / f"s.{fmt}"
    if fmt == "parquet":
        w = ParquetWriter(str(out), models)
    else:
        f = open(out, "w", encoding=ENCODING, errors=ERRORS, newline="")
        w = make_several_writer(fmt, f, models)
    for r in rows:
        w.write(r)
    w.close()
    if fmt == "csv":
        f.close()
    back = read_scores(out)
    assert [r.path for r in back] == files
    for name in models.names:
        assert [r.models[name].score for r in back] == [r.models[name].score for r in rows]
    assert back[-1].error and all(m.error for m in back[-1].models.values())
    page = tmp_path / "r.html"
    r = cli("report", out, "-o", page)
    assert r.returncode == 0, r.stderr
    assert "aesthetic" in page.read_text()


@needs_node
def test_page_cards_selects_and_scatter(several, tmp_path):
    path, rows, _ = several
    r = cli("report", path, "-o", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr
    data = json.loads(embedded((tmp_path / "r.html").read_text(encoding="utf-8")))
    assert data["models"] == ["tech", "aesthetic"] and data["ranges"][1] == [1.0, 10.0]
    assert data["model_stats"][0]["failed"] == 1 and data["model_stats"][1]["scored"] == 4
    shown = stub(tmp_path / "r.html")
    assert shown["ready"] == "1" and shown["modelPick"] and shown["scatterShown"]
    assert shown["options"] == ["tech", "aesthetic"] and "ranked by tech" in shown["model"]
    ok = [row for row in rows if row.ok]
    by_path = {os.path.basename(row.source): row.scores for row in rows}
    cards = shown["cards"]
    assert [c["score"] for c in cards[:-1]] == pytest.approx(
        sorted((row.scores["tech"] for row in ok), reverse=True), rel=1e-9)  # best first
    for c in cards:  # every card: every model's score, as written in the file
        assert [m["model"] for m in c["models"]] == ["tech", "aesthetic"]
        want = by_path[c["name"]]
        got = [m["score"] for m in c["models"]]
        if c["name"] == "broken.jpg":
            assert got == [None, None] and want == {"tech": None, "aesthetic": None}
        else:
            assert got == pytest.approx([want["tech"], want["aesthetic"]], rel=1e-9)
    assert cards[-1]["name"] == "broken.jpg" and cards[-1]["score"] is None
    assert all(m["text"].endswith("failed") for m in cards[-1]["models"])
    assert shown["failures"] == 1 and shown["failureRows"][0][0].endswith("broken.jpg")

    sc = shown["scatter"]  # default: the first two models, every image scored by both
    assert sc["x"] == "tech" and sc["y"] == "aesthetic" and sc["labels"] == ["tech", "aesthetic"]
    assert sc["pairs"] == str(len(ok)) and sc["circles"] == len(ok)
    xs, ys = [row.scores["tech"] for row in ok], [row.scores["aesthetic"] for row in ok]
    assert float(sc["srcc"]) == pytest.approx(stats.spearmanr(xs, ys)[0], abs=1e-9)
    assert float(sc["plcc"]) == pytest.approx(stats.pearsonr(xs, ys)[0], abs=1e-9)


@needs_node
def test_picking_a_model_ranks_and_counts_by_it(several, tmp_path):
    path, rows, _ = several
    page = build_report(path, tmp_path / "r.html", progress=False)
    shown = stub(page, {"model": 1, "x": 1, "y": 0})
    want = sorted((row.scores["aesthetic"] for row in rows if row.ok), reverse=True)
    assert [c["score"] for c in shown["cards"][:-1]] == pytest.approx(want, rel=1e-9)
    assert "ranked by aesthetic" in shown["model"] and "scores 1 to 10" in shown["model"]
    assert shown["stats"]["scored"] == "4" and shown["stats"]["failed"] == "1"
    assert shown["scatter"]["x"] == "aesthetic" and shown["scatter"]["y"] == "tech"


def test_one_model_failing_keeps_the_others(tmp_path):
    rows = [MultiPrediction("a.jpg", {"k": Prediction("a.jpg", 50.0),
                                      "v": Prediction("a.jpg", None, "non-finite logits")}),
            MultiPrediction("b.jpg", {"k": Prediction("b.jpg", 60.0),
                                      "v": Prediction("b.jpg", 4.0)})]
    scores = tmp_path / "s.jsonl"
    write_jsonl(scores, rows)
    page = build_report(scores, tmp_path / "r.html", progress=False)
    data = json.loads(embedded(page.read_text(encoding="utf-8")))
    assert data["rows"][0]["scores"] == [50.0, None]
    assert data["rows"][0]["errors"] == [None, "non-finite logits"]
    assert data["model_stats"][0]["scored"] == 2 and data["model_stats"][1]["scored"] == 1
    if shutil.which("node"):
        shown = stub(page)
        assert shown["failureRows"] == [["a.jpg", "v: non-finite logits"]]
        assert shown["scatter"]["pairs"] == "1"


def test_hostile_model_names_stay_text(tmp_path):
    names = ["</script><script>alert(1)</script>", "a{{JS}}<!--", "&amp;\"'\u2028"]
    rows = [MultiPrediction(f"{i}.jpg", {n: Prediction(f"{i}.jpg", float(i + k))
                                         for k, n in enumerate(names)}) for i in range(3)]
    scores = tmp_path / "s.jsonl"
    write_jsonl(scores, rows)
    page = build_report(scores, tmp_path / "r.html", progress=False).read_text(encoding="utf-8")
    text = embedded(page)
    assert not re.search("[<>&\u2028\u2029]", text)
    assert json.loads(text)["models"] == names
    js = (ROOT / "src/musiq/report/static/report.js").read_text(encoding="utf-8")
    assert "{{" not in page.replace(text, "").replace(js, "")
    if shutil.which("node"):
        shown = stub(tmp_path / "r.html")
        assert shown["options"] == names and shown["scatter"]["labels"] == names[:2]
        assert [m["model"] for m in shown["cards"][0]["models"]] == names


def test_one_model_file_has_no_model_controls(tmp_path):
    scores = tmp_path / "s.jsonl"
    scores.write_text(json.dumps({"path": "a.jpg", "score": 3.0, "error": None}) + "\n")
    page = build_report(scores, tmp_path / "r.html", progress=False)
    data = json.loads(embedded(page.read_text(encoding="utf-8")))
    assert "models" not in data and list(data["rows"][0]) == ["path", "score"]
    if shutil.which("node"):
        shown = stub(page)
        assert not shown["modelPick"] and not shown["scatterShown"]
        assert shown["cards"][0]["models"] is None


def test_bad_several_model_row_is_named(tmp_path):
    scores = tmp_path / "odd.jsonl"
    scores.write_text(json.dumps({"path": "a.jpg", "error": None,
                                  "models": {"k": {"score": "high"}}}) + "\n")
    r = cli("report", scores, "-o", tmp_path / "r.html")
    assert r.returncode == 2 and "odd.jsonl" in r.stderr and "score" in r.stderr
    assert "Traceback" not in r.stderr
