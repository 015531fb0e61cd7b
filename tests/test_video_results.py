"""Video rows through the results codec (issue 22 on musiq.results): JSON lines keep
``frames``/``spread``/``frame_scores``, CSV and Parquet keep the frame count and spread per
video, ``--per-frame`` tables have a row per frame in every format, and files from before
videos are still resumed. No model: rows are made here."""
from __future__ import annotations

import io
import json

import pytest

from musiq.errors import MusiqError
from musiq.results.files import open_output
from musiq.results.read import read_predictions
from musiq.results.rows import Prediction
from musiq.results.writers import make_writer

FRAMES = [{"frame": 0, "time": 0.0, "score": 1.5}, {"frame": 25, "time": 1.0, "score": 2.5},
          {"frame": 50, "time": 2.0, "score": 3.25}]
VIDEO = Prediction("v/clip.mp4", score=2.416666, frames=3, spread=0.7, frame_scores=FRAMES)
IMAGE = Prediction("a.jpg", score=4.0, logits=[4.0])
BROKEN = Prediction("v/cut.mp4", score=1.5, error="truncated", frames=1, spread=0.0,
                    frame_scores=FRAMES[:1])


def written(fmt: str, rows: list[Prediction], **kw) -> str:
    buf = io.StringIO()
    w = make_writer(fmt, buf, kind="mos", **kw)
    for p in rows:
        w.write(p)
    w.close()
    return buf.getvalue()


@pytest.mark.parametrize("ext", [".jsonl", ".json"])
def test_json_rows_keep_the_frames_and_read_back(tmp_path, ext):
    out = tmp_path / f"s{ext}"
    out.write_text(written(ext[1:], [IMAGE, VIDEO, BROKEN]))
    first = json.loads(out.read_text().splitlines()[0]) if ext == ".jsonl" else None
    if first is not None:  # every key in every row: an image's video keys are null
        assert first["frames"] is None and first["frame_scores"] is None
    image, video, broken = read_predictions(out)
    assert image.frames is None and image.frame_scores is None
    assert (video.frames, video.spread, video.frame_scores) == (3, 0.7, FRAMES)
    assert broken.error == "truncated" and broken.score == 1.5 and broken.frames == 1


def test_csv_per_video_reads_back_the_count_and_spread(tmp_path):
    out = tmp_path / "s.csv"
    out.write_text(written("csv", [IMAGE, VIDEO]))
    assert out.read_text().splitlines()[0] == "path,score,error,frames,spread"
    image, video = read_predictions(out)
    assert (image.frames, image.spread) == (None, None)
    assert (video.frames, video.spread, video.score) == (3, 0.7, 2.416666)


def test_csv_per_frame_rows_repeat_a_videos_error(tmp_path):
    text = written("csv", [IMAGE, VIDEO, BROKEN], per_frame=True)
    lines = text.splitlines()
    assert lines[0] == "path,frame,time,score,error"
    assert lines[1:] == ["a.jpg,,,4.0,", "v/clip.mp4,0,0.0,1.5,", "v/clip.mp4,25,1.0,2.5,",
                         "v/clip.mp4,50,2.0,3.25,", "v/cut.mp4,0,0.0,1.5,truncated"]
    table = written("table", [VIDEO], per_frame=True, width=10)
    assert "3 frames, spread 0.7000" in table and "frame 25 at 1.000 s" in table


def test_parquet_per_video_and_per_frame(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from musiq.results.parquet import ParquetWriter, fold_journal, journal_path
    per_video, per_frame = str(tmp_path / "v.parquet"), str(tmp_path / "f.parquet")
    for path, flag in ((per_video, False), (per_frame, True)):
        w = ParquetWriter(path, "mos", per_frame=flag)
        for p in (IMAGE, VIDEO):
            w.write(p)
        w.close()
    rows = pq.read_table(per_video).to_pylist()
    assert [(r["path"], r["frames"], r["spread"]) for r in rows] == [
        ("a.jpg", None, None), ("v/clip.mp4", 3, 0.7)]
    rows = pq.read_table(per_frame).to_pylist()
    assert [(r["frame"], r["time"], r["score"]) for r in rows] == [
        (None, None, 4.0), (0, 0.0, 1.5), (25, 1.0, 2.5), (50, 2.0, 3.25)]
    assert "frames" not in rows[0] and rows[1]["logits"] is None
    # A killed per-frame run: its journal is folded in the file's layout.
    w = ParquetWriter(per_frame, "mos", keep=True, per_frame=True)
    w.write(BROKEN)
    w.journal.close()
    fold_journal(per_frame, "mos", None, per_frame=True)
    rows = pq.read_table(per_frame).to_pylist()
    assert len(rows) == 5 and rows[-1]["error"] == "truncated"
    assert not (tmp_path / journal_path("f.parquet")).exists()


def test_resume_refuses_another_layout_and_takes_a_file_from_before_videos(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from musiq.results.parquet import ParquetWriter
    old = str(tmp_path / "old.parquet")
    pq.write_table(pa.table({"path": ["x.jpg"], "score": [1.0],
                             "error": pa.array([None], pa.string()),
                             "logits": pa.array([[1.0]], pa.list_(pa.float64()))}), old)
    f = open_output(old, resume=True, overwrite=False)
    try:
        f.check_kind("mos")  # a file from before videos goes on
        with pytest.raises(MusiqError, match="--per-frame differs"):
            f.check_kind("mos", per_frame=True)
        w = ParquetWriter(old, "mos", keep=True)
        w.write(VIDEO)
        w.close()
    finally:
        f.close()
    rows = pq.read_table(old).to_pylist()
    assert rows[0]["frames"] is None and rows[1]["frames"] == 3
    csv = tmp_path / "old.csv"
    csv.write_text("path,score,error\nx.jpg,1.0,\n")
    f = open_output(str(csv), resume=True, overwrite=False)
    try:
        f.check_kind("mos")
        with pytest.raises(MusiqError, match="--per-frame differs"):
            f.check_kind("mos", per_frame=True)
    finally:
        f.close()


def test_a_json_row_with_bad_video_fields_is_refused_by_name(tmp_path):
    out = tmp_path / "s.jsonl"
    out.write_text(json.dumps({"path": "v.mp4", "score": 1.0, "frame_scores": [3]}) + "\n")
    with pytest.raises(MusiqError, match=r"s\.jsonl line 1: frame_scores"):
        read_predictions(out)
    out.write_text(json.dumps({"path": "v.mp4", "score": 1.0, "frames": 1.5}) + "\n")
    with pytest.raises(MusiqError, match=r"s\.jsonl line 1: frames is not a count"):
        read_predictions(out)
