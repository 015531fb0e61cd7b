"""The one codec for score files (musiq.results): what the writers write is what every
reader (--resume, the report, Arrow) reads back, and nothing that was written is dropped."""
from __future__ import annotations

import io
import json
import os

import pytest

from musiq.errors import MusiqError
from musiq.results.provenance import read_provenance
from musiq.results.columns import csv_header, json_keys
from musiq.results.csvfmt import parse_csv
from musiq.results.read import read_predictions
from musiq.results.rows import Prediction
from musiq.results.writers import CsvWriter, JsonLinesWriter

ODD = ["=x.jpg", "'q.jpg", "line\nbreak, quoted.jpg", "caf\udce9.jpg", "#hash.jpg",
       'old"photo.jpg', "a\u2028b\x85c.jpg"]


def _write(fmt: str, preds: list[Prediction], kind: str, path) -> None:
    buf = io.StringIO(newline="")
    w = CsvWriter(buf, kind) if fmt == "csv" else JsonLinesWriter(buf, kind)
    for p in preds:
        w.write(p)
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_report_reads_exactly_what_the_writer_wrote(fmt, tmp_path):
    preds = [Prediction(n, score=0.1 + i / 3, logits=[0.1 + i / 3]) for i, n in enumerate(ODD)]
    preds.append(Prediction("bad.jpg", error="-cannot decode"))
    out = tmp_path / f"s.{fmt}"
    _write(fmt, preds, "mos", out)
    got = read_predictions(out)
    assert [p.source for p in got] == [p.source for p in preds]
    assert [p.score for p in got] == [p.score for p in preds]  # float64 exactly, CSV too
    assert got[-1].error == "-cannot decode" and got[-1].score is None


def test_a_stray_quote_mid_file_keeps_every_row_and_a_cut_last_row_goes():
    text = ('path,score,error\na.jpg,1.5,\nimgs/old"photo.jpg,1.5,\nb.jpg,2.5,\n'
            'c.jpg,3.5,\nd.jpg,4.5,\ne.jpg,5.5,\nf.jpg,6.5,\n')
    parsed = parse_csv(text, "t.csv")
    assert [r.cells[0] for r in parsed.records] == [
        "a.jpg", 'imgs/old"photo.jpg', "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]
    assert parsed.kept == len(text)
    cut = parse_csv(text + '"g.jpg\nstill the na', "t.csv")
    assert len(cut.records) == 7 and cut.kept == len(text)
    # An opening quote that never closes, before whole rows, is refused, not truncated.
    with pytest.raises(MusiqError, match="t.csv"):
        parse_csv('path,score,error\n"a.jpg,1.5,\nb.jpg,2.5,\nc.jpg,3', "t.csv")
    with pytest.raises(MusiqError, match="t.csv"):
        parse_csv('path,score,error\n"a.jpg,1.5,\nb.jpg,2.5,\n', "t.csv")


def test_a_long_csv_field_is_read_not_a_traceback(tmp_path):
    out = tmp_path / "s.csv"
    long = "d/" + "x" * 200_000 + ".jpg"
    _write("csv", [Prediction(long, error="no such file")], "mos", out)
    from musiq.report import read_scores
    assert read_scores(out)[0].path == long


@pytest.mark.parametrize("bad", ["null", "[1]", '{"a": 1}', "3"])
def test_jsonl_path_that_is_not_text_is_named(bad, tmp_path):
    out = tmp_path / "s.jsonl"
    out.write_text('{"path": "a.jpg", "score": 1.0, "error": null}\n'
                   f'{{"path": {bad}, "score": 1.0, "error": null}}\n')
    with pytest.raises(MusiqError, match=r"s\.jsonl line 2.*path"):
        read_predictions(out)


def test_parquet_bad_metadata_and_paths_are_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    for name, meta in (("list", b"[1, 2]"), ("text", b"not json")):
        out = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"path": ["a.jpg"], "score": [1.0]},
                                metadata={b"musiq": meta}), out)
        with pytest.raises(MusiqError, match=f"{name}.parquet"):
            read_provenance(out)
    for name, col in (("null", pa.array([None], pa.string())), ("int", pa.array([7]))):
        out = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"path": col, "score": [1.0]}), out)
        with pytest.raises(MusiqError, match=f"{name}.parquet"):
            read_predictions(out)


def test_sidecar_score_range_that_is_not_a_pair_is_named(tmp_path):
    out = tmp_path / "s.csv"
    out.write_text("path,score,error\na.jpg,1.0,\n")
    (tmp_path / "s.csv.meta.json").write_text(json.dumps({"score_range": "0-100"}))
    with pytest.raises(MusiqError, match=r"s\.csv\.meta\.json.*score_range"):
        read_provenance(out)


def test_every_kind_has_every_key_and_imagenet_csv_names():
    video = ("frames", "spread", "frame_scores")  # issue 22: null for images
    assert json_keys("mos") == ("path", "score", "error", "logits", *video)
    assert json_keys("distribution")[-5:] == ("distribution", "std", *video)
    head = csv_header("imagenet")
    assert head[3:8] == [f"top{i}_class" for i in range(1, 6)]
    assert head[8:] == [f"top{i}_name" for i in range(1, 6)] + ["frames", "spread"]


def test_parquet_journal_is_read_and_folded_once(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from musiq.results.parquet import ParquetWriter, fold_journal, journal_path
    out = str(tmp_path / "s.parquet")
    w = ParquetWriter(out, "mos")
    w.write(Prediction("a.jpg", score=1.25, logits=[1.25]))
    w.close()
    w = ParquetWriter(out, "mos", keep=True)  # a run killed with -9 after one row
    w.write(Prediction("b.jpg", error="bad"))
    w.journal.close()
    with open(journal_path(out), "a") as f:
        f.write('{"path": "c.jp')  # cut mid-row
    assert [p.source for p in read_predictions(out)] == ["a.jpg", "b.jpg"]
    fold_journal(out, "mos", None)
    assert not os.path.exists(journal_path(out))
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == ["a.jpg", "b.jpg"]
    assert str(table.schema.field("logits").type) == "list<element: double>"


def test_parquet_takes_names_that_are_not_utf8(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from musiq.results.parquet import ParquetWriter
    out = str(tmp_path / "s.parquet")
    w = ParquetWriter(out, "mos")
    w.write(Prediction("caf\udce9.jpg", error="caf\udce9.jpg: cannot decode"))
    w.write(Prediction("café.jpg", score=2.0, logits=[2.0]))
    w.close()
    assert pq.read_table(out).column("path").to_pylist() == ["caf\\xe9.jpg", "café.jpg"]
