"""``musiq score`` with several models, as a user runs it: every model's score in every
output format equals its own single-model run's; the files read back (musiq's reader,
pandas, DuckDB, polars) with a score column per model; bad files, a failing model,
``--resume`` and the ways of naming models."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import GOLDEN
from musiq.cli.main import main
from musiq.results.arrow import utf8_text
from musiq.results.read import file_models, read_predictions
from musiq.results.rows import MultiPrediction

#: Several-model scores equal the single-model run's (the same engine on the same tokens).
SAME = 1e-6
NAMES = ["ckpt_1class", "ckpt_10class", "ckpt_1class_single"]
GOOD = ["chelsea_20x30_q90.jpg", "astronaut_333x517_q85.jpg", "astronaut_512x512_q95.jpg"]


def cli(*args) -> tuple[int, str, str]:
    """``musiq ARGS`` in this process: exit code, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([os.fspath(a) if isinstance(a, Path) else str(a) for a in args])
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("several")
    for name in GOOD:
        shutil.copy(GOLDEN / "images" / name, d / name)
    shutil.copy(GOLDEN / "images" / "coffee_30x20_q90.jpg", d / "=calc.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return [str(d / "broken.jpg"), *(str(d / n) for n in GOOD), str(d / "=calc.jpg")]


@pytest.fixture(scope="module")
def ckpts(ckpt_1class, ckpt_10class, ckpt_1class_single) -> list[Path]:
    return [ckpt_1class, ckpt_10class, ckpt_1class_single]


@pytest.fixture(scope="module")
def alone(ckpts, images) -> dict[str, list[dict]]:
    """Each model's single-model run (JSON rows)."""
    out = {}
    for c in ckpts:
        rc, stdout, _ = cli("score", *images, "--model", c, "-f", "json", "-q")
        assert rc == 1
        out[c.stem] = json.loads(stdout)
    return out


@pytest.fixture(scope="module")
def alone_one_by_one(ckpts, images) -> dict[str, list[dict]]:
    """Each model's single-model run, one image per forward pass (``-b 1``): scores that do
    not depend on which other images a run holds (a resumed run scores fewer)."""
    return {c.stem: json.loads(cli("score", *images, "--model", c, "-f", "json", "-q",
                                   "-b", "1")[1]) for c in ckpts}


@pytest.fixture(scope="module")
def runs(ckpts, images, tmp_path_factory) -> dict:
    """One several-model run per output file, each with another standard output format."""
    d = tmp_path_factory.mktemp("runs")
    models = ",".join(map(str, ckpts))
    got: dict = {}
    for fmt, stdout_fmt in (("csv", "json"), ("jsonl", "table"), ("parquet", "csv")):
        rc, stdout, err = cli("score", *images, "--model", models, "-o", d / f"s.{fmt}",
                              "-f", stdout_fmt)
        assert rc == 1 and "1 of 5 image(s) failed" in err, err
        got[fmt], got[stdout_fmt + "_stdout"] = d / f"s.{fmt}", stdout
    return got


def _close(a: float | None, b: float | None) -> bool:
    return (a is None) == (b is None) and (a is None or abs(a - b) <= SAME)


def test_every_format_holds_each_models_single_run_score(runs, alone, images):
    as_json = json.loads(runs["json_stdout"])
    assert [r["path"] for r in as_json] == images
    for name, rows in alone.items():
        for row, single in zip(as_json, rows):
            assert list(row) == ["path", "error", "models"] and list(row["models"]) == NAMES
            assert _close(row["models"][name]["score"], single["score"]), (name, row["path"])
            if single.get("distribution"):
                assert max(abs(a - b) for a, b in zip(row["models"][name]["distribution"],
                                                      single["distribution"])) <= SAME
        for fmt in ("csv", "jsonl", "parquet"):
            back = read_predictions(runs[fmt])
            assert all(isinstance(r, MultiPrediction) for r in back)
            assert [r.source for r in back] == images, fmt
            for row, single in zip(back, rows):
                assert _close(row.models[name].score, single["score"]), (fmt, name)
    table = runs["table_stdout"].splitlines()
    assert table[0].startswith("models ckpt_1class, ckpt_10class (1 to 10), ckpt_1class_single")
    assert table[1].split() == ["path", *NAMES, "info"]
    assert len(table) == 2 + len(images)
    for n, line in enumerate(table[2:]):
        cells = line.split()[1:4]
        for name, cell in zip(NAMES, cells):
            single = alone[name][n]["score"]
            assert (cell == "-") if single is None else abs(float(cell) - single) <= SAME


def test_files_read_back_in_pandas_duckdb_polars(runs, images):
    duckdb, pd, pl = (pytest.importorskip(m) for m in ("duckdb", "pandas", "polars"))
    head = ["path", *NAMES]
    for fmt in ("csv", "parquet"):
        path = runs[fmt]
        reads = {"duckdb": duckdb.sql(f"SELECT * FROM '{path}'").df(),
                 "pandas": (pd.read_csv if fmt == "csv" else pd.read_parquet)(path),
                 "polars": (pl.read_csv if fmt == "csv" else pl.read_parquet)(path).to_pandas()}
        for tool, df in reads.items():
            cols = list(df.columns)
            assert cols[:4] == head and cols[-1 if fmt == "csv" else -4] == "error", (fmt, tool)
            assert {"ckpt_10class_std", "ckpt_1class_error"} <= set(cols), (fmt, tool)
            assert ("ckpt_10class_p10" in cols) == (fmt == "csv"), (fmt, tool)
            assert ("ckpt_10class_logits" in cols) == (fmt == "parquet"), (fmt, tool)
            assert pd.isna(df["ckpt_1class"][0]) and df["error"][0], (fmt, tool)
            assert df["ckpt_10class"][1] > 0, (fmt, tool)
            assert pd.isna(df["error"][1]) or df["error"][1] == "", (fmt, tool)
    want = json.loads(runs["json_stdout"])
    for tool, df in {"duckdb": duckdb.sql(
            f"SELECT path, models.ckpt_10class.score AS s FROM '{runs['jsonl']}'").df(),
            "pandas": pd.read_json(runs["jsonl"], lines=True),
            "polars": pl.read_ndjson(runs["jsonl"]).to_pandas()}.items():
        assert len(df) == len(images), tool
        if tool == "duckdb":
            assert list(df["s"][1:]) == [w["models"]["ckpt_10class"]["score"] for w in want[1:]]
        else:
            assert list(df.columns) == ["path", "error", "models"], tool


def test_a_bad_file_is_one_row_with_its_error_for_every_model(runs):
    rows = read_predictions(runs["csv"])
    bad = rows[0]
    assert bad.error and "JPEG" in bad.error and bad.failure == bad.error
    assert all(p.error == bad.error and p.score is None for p in bad.models.values())
    assert all(r.ok and r.error is None for r in rows[1:])
    text = runs["csv"].read_text(errors="surrogateescape").splitlines()
    assert text[0].split(",")[:4] == ["path", *NAMES] and text[0].endswith(",error")
    assert all(line.count(bad.error) == 4 for line in text[1:2])  # 3 models and the row


def test_read_back_exactly_and_a_cut_last_row_is_left_out(runs, tmp_path):
    from_json = read_predictions(runs["jsonl"])
    for fmt in ("csv", "parquet"):
        for a, b in zip(read_predictions(runs[fmt]), from_json):
            assert a.error == b.error and a.failure == b.failure and a.scores == b.scores
    for fmt in ("csv", "jsonl", "parquet"):
        models = file_models(runs[fmt])
        assert models is not None and list(models.names) == NAMES
        assert models.kinds == ("mos", "distribution", "mos")
    for fmt in ("csv", "jsonl"):
        cut = tmp_path / f"cut.{fmt}"
        text = runs[fmt].read_bytes()
        cut.write_bytes(text[:-25])
        assert len(read_predictions(cut)) == len(from_json) - 1


def test_one_model_failing_leaves_the_others(ckpts, images, alone, tmp_path):
    # The multi-scale models make too many tokens for the 512 px image; the single-scale
    # one does not.
    out = tmp_path / "s.jsonl"
    rc, _, err = cli("score", *images, "--model", ",".join(map(str, ckpts)), "-o", out,
                     "--max-tokens", "400")
    assert rc == 1
    row = read_predictions(out)[3]
    assert row.error is None and not row.ok
    assert row.models["ckpt_1class"].error and row.models["ckpt_1class_single"].error is None
    assert _close(row.models["ckpt_1class_single"].score, alone["ckpt_1class_single"][3]["score"])
    assert f"{row.source}: ckpt_1class: " in err and "2 of 5 image(s) failed" in err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_resume_with_the_same_models(fmt, ckpts, images, alone_one_by_one, tmp_path):
    out = tmp_path / f"s.{fmt}"
    first = ",".join(map(str, ckpts))
    assert cli("score", *images[1:3], "--model", first, "-o", out, "-b", "1")[0] == 0
    again = [ckpts[2], ckpts[0], ckpts[1]] if fmt == "csv" else ckpts  # another order: same set
    rc, _, err = cli("score", *images, "--model", ",".join(map(str, again)), "-o", out,
                     "--resume", "-b", "1")
    assert rc == 1 and "2 skipped" in err, err
    rows = read_predictions(out)
    assert sorted(r.source for r in rows) == sorted(images)
    assert all(list(r.models) == NAMES for r in rows)  # the file's own order
    by_path = {r.source: r for r in rows}
    for name, single in alone_one_by_one.items():
        for p, s in zip(images, single):
            got = by_path[p].models[name].score
            assert _close(got, s["score"]), (name, p)


@pytest.mark.parametrize("fmt,models", [("csv", "other set"), ("jsonl", "one model"),
                                        ("parquet", "other set")])
def test_resume_with_other_models_is_refused_untouched(fmt, models, runs, ckpts, images,
                                                       tmp_path):
    out = tmp_path / f"s.{fmt}"
    shutil.copy(runs[fmt], out)
    shutil.copy(f"{runs[fmt]}.meta.json", f"{out}.meta.json")
    before = out.read_bytes()
    spec = ",".join(map(str, ckpts[:2])) if models == "other set" else str(ckpts[0])
    rc, _, err = cli("score", *images, "--model", spec, "-o", out, "--resume")
    assert rc == 2 and "left untouched" in err and len(err.strip().splitlines()) == 1, err
    assert out.read_bytes() == before
    os.unlink(f"{out}.meta.json")  # without the record, the columns or rows tell
    rc, _, err = cli("score", *images, "--model", spec, "-o", out, "--resume")
    assert rc == 2 and out.read_bytes() == before, err


def test_several_models_on_a_one_model_file_is_refused(ckpts, images, tmp_path):
    out = tmp_path / "s.csv"
    assert cli("score", images[1], "--model", ckpts[0], "-o", out)[0] == 0
    before = out.read_bytes()
    rc, _, err = cli("score", *images[1:3], "--model", ckpts[0], "--model", ckpts[1], "-o",
                     out, "--resume")
    assert rc == 2 and "left untouched" in err and out.read_bytes() == before


def test_repeated_model_all_and_the_seed_form(ckpt_1class, ckpt_10class, images, tmp_path,
                                              monkeypatch):
    d = tmp_path / "official"
    d.mkdir()
    for name in ("koniq", "spaq", "paq2piq"):
        shutil.copy(ckpt_1class, d / f"{name}_ckpt.npz")
    shutil.copy(ckpt_10class, d / "ava_ckpt.npz")
    monkeypatch.setenv("MUSIQ_CHECKPOINT_DIR", str(d))
    rc, stdout, err = cli("score", images[1], "--model", "all", "--offline", "-f", "csv")
    assert rc == 0, err
    head = stdout.splitlines()[0].split(",")
    assert head[:5] == ["path", "koniq", "spaq", "paq2piq", "ava"] and "ava_std" in head
    rc, stdout, err = cli("score", images[1], "--model", "koniq", "--model", "ava",
                          "--offline", "-f", "json")
    assert rc == 0, err
    row = json.loads(stdout)[0]
    assert list(row["models"]) == ["koniq", "ava"]
    rc, stdout, err = cli("score", "--image", images[1], "--model", "koniq,ava", "--offline")
    assert rc == 0, err
    lines = stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["MUSIQ score (koniq)", "MUSIQ score (ava)"]
    assert abs(float(lines[1].split(": ")[1]) - row["models"]["ava"]["score"]) <= 1e-5


@pytest.mark.parametrize("spec,says", [
    ("koniq,koniq", "two models are named 'koniq'"),
    ("koniq,KONIQ", "two models are named"),
    ("{d}/a/m.npz,{d}/b/m.npz", "two models are named 'm'"),
    ("koniq,{d}/error.npz", "clash with the output column 'error'"),
])
def test_clashing_names_are_refused_before_any_work(spec, says, tmp_path, images):
    out = tmp_path / "s.csv"
    rc, _, err = cli("score", images[1], "--model", spec.format(d=tmp_path), "-o", out)
    assert rc == 2 and says in err, err
    assert not out.exists()  # nothing was opened, no checkpoint read


def test_codec_round_trip_guarded_and_non_utf8_names(tmp_path):
    """Rows written by every several-model writer read back exactly: formula-guarded
    names and errors, a name that is not UTF-8, a model's own failure, a file's failure."""
    from musiq.results.columns import ENCODING, ERRORS
    from musiq.results.parquet import ParquetWriter
    from musiq.results.rows import Prediction
    from musiq.results.several import ModelSet
    from musiq.results.several_writers import make_several_writer
    models = ModelSet(("q", "aes"), ("mos", "distribution"))
    odd = os.fsdecode(b"/x/caf\xe9.jpg")
    dist = [0.05] * 5 + [0.15] * 5

    def aes(src: str) -> Prediction:
        return Prediction(src, score=6.25, logits=[0.5] * 10, distribution=dist, std=1.5)

    rows = [MultiPrediction("=a.jpg", {"q": Prediction("=a.jpg", score=-1.5, logits=[-1.5]),
                                       "aes": aes("=a.jpg")}),
            MultiPrediction(odd, {"q": Prediction(odd, error="-too many tokens; 9 > 4"),
                                  "aes": aes(odd)}),
            MultiPrediction.failed("@b.jpg", models.names, "=not an image")]
    for fmt in ("csv", "jsonl", "json", "parquet"):
        path = tmp_path / f"r.{fmt}"
        if fmt == "parquet":
            w = ParquetWriter(str(path), models)
        else:
            f = open(path, "w", encoding=ENCODING, errors=ERRORS, newline="")
            w = make_several_writer(fmt, f, models)
        for r in rows:
            w.write(r)
        w.close()
        if fmt != "parquet":
            f.close()
        back = read_predictions(path)
        assert file_models(path) == models, fmt
        for a, b in zip(back, rows):
            want = utf8_text(b.source) if fmt == "parquet" else b.source
            assert (a.source, a.error, a.failure, a.scores) == (want, b.error, b.failure,
                                                                 b.scores), fmt
            for name in models.names:
                pa, pb = a.models[name], b.models[name]
                assert (pa.error, pa.std, pa.distribution) == (pb.error, pb.std,
                                                               pb.distribution), fmt
                assert pa.logits == (None if fmt == "csv" else pb.logits), fmt
    text = (tmp_path / "r.csv").read_text(errors="surrogateescape")
    assert "\n'=a.jpg," in text and "\n'@b.jpg," in text  # no spreadsheet runs them
