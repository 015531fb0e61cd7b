"""Videos: decoding (exact on lossless clips), sampling by timestamp, scoring through the
image path, pooling, damaged files, and the CLI's outputs with a mixed folder and resume.
Clips are tiny (64x48, a few frames) and made here (tests/videos.py); the single-scale test
checkpoint scores a frame as 4 tokens."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("av")

import musiq  # noqa: E402
import videos as v  # noqa: E402
from corpus import video_cases  # noqa: E402
from fuzzing import OPS, mutate  # noqa: E402
from musiq.errors import ImageError  # noqa: E402
from musiq.decoding.sniff import sniff  # noqa: E402
from musiq.decoding.video import VideoReader, is_video, sniff_video  # noqa: E402
from musiq.video_scoring import VideoSampling, pool_scores, predict_video  # noqa: E402
from PIL import Image  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def scorer(ckpt_1class_single):
    return musiq.load(ckpt_1class_single, device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    frames = v.random_frames(4, seed=7)
    return {"dir": d, "frames": frames,
            "mkv": v.write(d, "lossless.mkv", v.lossless_mkv(frames, rate=2)),
            "mov": v.write(d, "png.mov", v.png_mov(frames, rate=2)),
            "mp4": v.write(d, "h264.mp4", v.h264_mp4(75, 25)),
            "avi": v.write(d, "mpeg4.avi", v.mpeg4_avi(30, 10))}


def decoded(path, fps, **kw):
    with VideoReader(path) as r:
        return [(f.index, f.time, f.rgb) for f in r.frames(fps, **kw)], r.problem


@pytest.mark.parametrize("kind", ["mkv", "mov"])
def test_lossless_clip_decodes_to_its_exact_frames(clips, kind):
    got, problem = decoded(clips[kind], None)
    assert problem is None
    assert [i for i, _, _ in got] == [0, 1, 2, 3]
    assert [t for _, t, _ in got] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=1e-9)
    for (_, _, rgb), want in zip(got, clips["frames"]):
        assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
        np.testing.assert_array_equal(rgb, want)


def test_frame_scores_equal_the_frames_scored_as_images(scorer, clips, tmp_path):
    pngs = []
    for i, a in enumerate(clips["frames"]):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        pngs.append(tmp_path / f"{i}.png")
    as_images = scorer.score_many(pngs)
    p = scorer.score_video(clips["mkv"], every_frame=True)
    assert p.error is None and p.frames == 4
    got = [f["score"] for f in p.frame_scores]
    assert np.max(np.abs(np.subtract(got, as_images))) <= TOL
    assert [f["time"] for f in p.frame_scores] == pytest.approx([0, 0.5, 1.0, 1.5])
    assert [f["frame"] for f in p.frame_scores] == [0, 1, 2, 3]
    assert p.score == pytest.approx(float(np.mean(got)), abs=1e-12)
    assert abs(p.score - float(np.mean(as_images))) <= TOL
    assert p.spread == pytest.approx(float(np.std(got)), abs=1e-12)
    # The other pools, from the same frame scores.
    for pool, want in [("median", np.median(got)), ("min", min(got)),
                       ("p10", np.percentile(got, 10))]:
        assert pool_scores(got, pool) == pytest.approx(float(want), abs=1e-12)
    # Frames given as arrays, or as (time, array) pairs, score the same.
    from_arrays = scorer.score_video(list(clips["frames"]), pool="min")
    assert [f["score"] for f in from_arrays.frame_scores] == pytest.approx(got, abs=TOL)
    assert from_arrays.score == pytest.approx(min(got), abs=TOL)
    pairs = scorer.score_video(iter([(0.25 * i, a) for i, a in enumerate(clips["frames"])]))
    assert [f["time"] for f in pairs.frame_scores] == [0.0, 0.25, 0.5, 0.75]


def test_lossy_clips_sample_by_timestamp(clips):
    # H.264, 75 frames at 25 fps: one frame a second is frames 0, 25, 50.
    got, problem = decoded(clips["mp4"], 1.0)
    assert problem is None
    assert [(i, round(t, 6)) for i, t, _ in got] == [(0, 0.0), (25, 1.0), (50, 2.0)]
    got, _ = decoded(clips["mp4"], 2.0)  # 0.5 s falls between frames: the next, 0.52 s
    assert [round(t, 6) for _, t, _ in got] == [0.0, 0.52, 1.0, 1.52, 2.0, 2.52]
    assert len(decoded(clips["mp4"], None)[0]) == 75
    # MPEG-4 at 10 fps sampled at 4/s: the first frame at or after each 0.25 s step.
    got, _ = decoded(clips["avi"], 4.0)
    times = np.arange(30) / 10
    want = sorted({int(np.argmax(times >= k / 4 - 1e-9)) for k in range(12)})
    assert [i for i, _, _ in got] == want
    assert [t for _, t, _ in got] == pytest.approx(times[want])


def yuv_to_rgb(y: int, u: int, v_: int, kr: float, kb: float, full: bool) -> np.ndarray:
    """The textbook YCbCr -> R'G'B' conversion (ITU-R BT.601/709), 0-255."""
    if full:
        yy, cb, cr = y / 255, (u - 128) / 255, (v_ - 128) / 255
    else:
        yy, cb, cr = (y - 16) / 219, (u - 128) / 224, (v_ - 128) / 224
    r, b = yy + 2 * (1 - kr) * cr, yy + 2 * (1 - kb) * cb
    return 255 * np.array([r, (yy - kr * r - kb * b) / (1 - kr - kb), b])


@pytest.mark.parametrize("colorspace,color_range,kr,kb,full", [
    (None, None, 0.299, 0.114, False),   # untagged: BT.601, limited range
    (1, None, 0.2126, 0.0722, False),    # BT.709 tag, range untagged: limited
    (1, 2, 0.2126, 0.0722, True),        # BT.709, full range
    (5, 1, 0.299, 0.114, False),         # BT.470BG (= 601), limited
])
def test_colour_conversion_follows_the_stream_tags(tmp_path, colorspace, color_range, kr, kb,
                                                   full):
    path = v.write(tmp_path, "yuv.mkv", v.yuv444_mkv((120, 90, 200), colorspace, color_range))
    with VideoReader(path) as r:
        rgb = next(r.frames(None)).rgb
    want = yuv_to_rgb(120, 90, 200, kr, kb, full)
    assert np.all(np.abs(rgb.reshape(-1, 3).astype(float) - want) <= 1.0), (rgb[0, 0], want)


def test_lossy_clip_scores_the_expected_frames(scorer, clips):
    p = predict_video(scorer, clips["avi"], VideoSampling(fps=1.0))
    assert p.error is None and p.frames == 3
    assert [(f["frame"], f["time"]) for f in p.frame_scores] == [(0, 0.0), (10, 1.0),
                                                                 (20, 2.0)]
    assert p.score == pytest.approx(np.mean([f["score"] for f in p.frame_scores]))


def test_max_frames_is_refused_from_the_header_before_decoding(scorer, clips, monkeypatch):
    def no_decoding(self):
        raise AssertionError("decoded a clip that its header refuses")
    monkeypatch.setattr(VideoReader, "_decoded", no_decoding)
    p = predict_video(scorer, clips["mp4"], VideoSampling(fps=1.0, max_frames=2))
    assert p.score is None and "above --max-frames 2" in p.error
    p = predict_video(scorer, clips["mp4"], VideoSampling(fps=None, max_frames=74))
    assert p.score is None and "75 frames" in p.error


def test_max_frames_stops_a_stream_without_a_count(clips):
    with VideoReader(clips["mp4"]) as r:
        r.info = replace(r.info, duration=None, frames=None)
        with pytest.raises(ImageError, match="more than --max-frames 10"):
            list(r.frames(None, max_frames=10))


def test_pixel_limit_is_checked_from_the_header(clips):
    with pytest.raises(ImageError, match=r"64x48 = 3,072 pixels, above the limit of 3,000"):
        VideoReader(clips["mkv"], max_pixels=3000)


@pytest.mark.parametrize("case", video_cases(), ids=lambda c: c.name)
def test_bad_videos_give_a_clear_row(scorer, case, tmp_path):
    path = v.write(tmp_path, case.name, case.data)
    p = predict_video(scorer, path)
    assert p.source == str(path)
    assert p.error is not None and re.search(case.error, p.error), p.error
    if "partial" in case.name:  # scores what it decoded, and says so
        assert p.score is not None and p.frames >= 1
        assert "the score is of the" in p.error
    else:
        assert p.score is None


def test_a_fifo_named_mp4_does_not_hang(scorer, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    assert is_video(fifo)
    p = predict_video(scorer, fifo)
    assert p.score is None and "not a regular file" in p.error


def test_sniffing_tells_videos_from_images(clips):
    for key, name in [("mkv", "Matroska/WebM"), ("mov", "MP4/MOV"), ("mp4", "MP4/MOV"),
                      ("avi", "AVI")]:
        head = clips[key].read_bytes()[:32]
        assert sniff_video(head) == name
    assert sniff(clips["mkv"].read_bytes()) == "Matroska/WebM video"
    assert sniff(clips["avi"].read_bytes()) == "AVI video"
    png = io.BytesIO()
    Image.fromarray(clips["frames"][0]).save(png, "PNG")
    assert sniff_video(png.getvalue()) is None and sniff(png.getvalue()) == "PNG"
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(20)
    assert sniff_video(heic) is None and sniff(heic) == "HEIF/HEIC"


def test_mutated_clips_never_raise_nor_hang(clips):
    """Fuzzing: damaged copies of a clip are read frame by frame or refused, never a crash."""
    seed = clips["avi"].read_bytes()
    rng = np.random.default_rng(22)
    for n in range(25):
        ops = [(OPS[rng.integers(len(OPS))], float(rng.random()), int(rng.integers(2**32)))
               for _ in range(1 + n % 3)]
        path = clips["dir"] / f"fuzz{n}.avi"
        path.write_bytes(mutate(seed, ops))
        try:
            with VideoReader(path, max_pixels=1 << 20) as r:
                for f in r.frames(None, max_frames=1000):
                    assert f.rgb.dtype == np.uint8 and f.rgb.ndim == 3
        except ImageError:
            pass


# -- command line -------------------------------------------------------------------------
def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def csv_rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_cli_mixed_folder_with_resume(ckpt_1class_single, clips, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(clips["frames"][0]).save(folder / "a.png")
    (folder / "clip.mkv").write_bytes(clips["mkv"].read_bytes())
    (folder / "notes.mp4").write_text("not a video")
    out = tmp_path / "scores.csv"
    r = cli("score", folder, "--model", ckpt_1class_single, "-o", out, "-q")
    assert r.returncode == 1, r.stderr  # notes.mp4 failed
    rows = csv_rows(out)
    assert list(rows[0]) == ["path", "score", "error", "frames", "spread"]
    by = {os.path.basename(row["path"]): row for row in rows}
    assert set(by) == {"a.png", "clip.mkv", "notes.mp4"}
    assert by["a.png"]["frames"] == "" and by["a.png"]["spread"] == ""
    assert by["clip.mkv"]["frames"] == "2" and by["clip.mkv"]["error"] == ""  # at 0 s and 1 s
    assert "not a video" in by["notes.mp4"]["error"] and by["notes.mp4"]["score"] == ""
    meta = json.loads((tmp_path / "scores.csv.meta.json").read_text())
    assert meta["video"]["fps"] == 1.0 and meta["video"]["pool"] == "mean"
    # A new video appears; --resume scores only it.
    (folder / "more.avi").write_bytes(clips["avi"].read_bytes())
    r = cli("score", folder, "--model", ckpt_1class_single, "-o", out, "--resume")
    assert "1 scored" in r.stderr and "3 skipped" in r.stderr, r.stderr
    rows = csv_rows(out)
    assert [os.path.basename(row["path"]) for row in rows][-1] == "more.avi"
    assert rows[-1]["frames"] == "3" and len(rows) == 4
    # Other video settings are refused on resume, leaving the file as it was.
    before = out.read_text()
    r = cli("score", folder, "--model", ckpt_1class_single, "-o", out, "--resume",
            "--pool", "min")
    assert r.returncode == 2 and "other video settings" in r.stderr
    assert out.read_text() == before


def test_cli_json_per_frame_and_parquet(ckpt_1class_single, clips, tmp_path):
    r = cli("score", clips["mkv"], "--model", ckpt_1class_single, "-f", "jsonl",
            "--every-frame")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["frames"] == 4 and [f["time"] for f in obj["frame_scores"]] == [0, 0.5, 1, 1.5]
    assert obj["score"] == pytest.approx(np.mean([f["score"] for f in obj["frame_scores"]]))
    out = tmp_path / "frames.csv"
    r = cli("score", clips["mkv"], "--model", ckpt_1class_single, "-o", out, "--fps", "2",
            "--per-frame")
    assert r.returncode == 0, r.stderr
    rows = csv_rows(out)
    assert list(rows[0]) == ["path", "frame", "time", "score", "error"]
    assert [(row["frame"], row["time"]) for row in rows] == [
        ("0", "0.0"), ("1", "0.5"), ("2", "1.0"), ("3", "1.5")]
    got = [float(row["score"]) for row in rows]
    assert got == pytest.approx([f["score"] for f in obj["frame_scores"]], abs=TOL)
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "scores.parquet"
    r = cli("score", clips["mkv"], "--model", ckpt_1class_single, "-o", out, "--every-frame")
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out).to_pylist()
    assert t[0]["frames"] == 4 and t[0]["spread"] == pytest.approx(
        float(np.std([f["score"] for f in obj["frame_scores"]])), abs=TOL)


def test_cli_resumes_a_file_from_before_videos_in_its_layout(ckpt_1class_single, clips,
                                                            tmp_path):
    out = tmp_path / "old.csv"
    out.write_text("path,score,error\n/elsewhere/x.jpg,1.0,\n")
    r = cli("score", clips["mkv"], "--model", ckpt_1class_single, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[:2] == ["path,score,error", "/elsewhere/x.jpg,1.0,"]
    assert len(lines) == 3 and lines[2].startswith(str(clips["mkv"]) + ",")
    assert len(next(csv.reader([lines[2]]))) == 3


def test_evaluate_takes_videos_with_konvid_style_labels(scorer, clips, tmp_path):
    pytest.importorskip("scipy")
    from musiq.evaluation.core import evaluate
    from musiq.evaluation.labels import preset
    folder = tmp_path / "KoNViD_1k_videos"
    folder.mkdir()
    clips_by_id = {}
    for k, seed in enumerate((11, 12, 13)):  # three distinct 2-frame clips
        frames = v.random_frames(2, seed=seed)
        (folder / f"{1000 + k}.mp4").write_bytes(v.lossless_mkv(frames, rate=1))
        clips_by_id[1000 + k] = frames
    labels = tmp_path / "KoNViD_1k_mos.csv"
    labels.write_text("flickr_id,mos\n1000,3.1\n1001,2.2\n1002,4.0\n")
    result = evaluate(scorer, labels, folder, columns=preset("konvid"), bootstrap=0,
                      video=VideoSampling(fps=None))
    assert result.failed == [] and result.n == 3
    for row in result.items:
        frames = clips_by_id[int(row["image"].removesuffix(".mp4"))]
        want = np.mean(scorer.score_many(frames))
        assert abs(row["prediction"] - want) <= TOL


def test_report_shows_a_video_card_with_its_curve(scorer, clips, tmp_path):
    from musiq.report.page import build_report
    out = tmp_path / "scores.jsonl"
    p = predict_video(scorer, clips["mkv"], VideoSampling(fps=None))
    out.write_text(json.dumps(p.to_dict()) + "\n")
    page = build_report(out, tmp_path / "report.html", progress=False)
    text = page.read_text()
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>',
                                text, re.S).group(1).replace("<\\/", "</"))
    curve = data["rows"][0]["curve"]
    want = [[f["time"], f["score"]] for f in p.frame_scores]
    assert np.allclose(np.array(curve), np.array(want), rtol=0, atol=1e-12)
    assert data["rows"][0]["thumb"]  # the first frame, as a thumbnail
    thumb = Image.open(tmp_path / data["rows"][0]["thumb"])
    assert thumb.size == (64, 48)
    assert "curveSvg(r.curve)" in text


def test_per_frame_csv_is_read_back_for_resume(tmp_path):
    from musiq.cli.output import open_output
    out = tmp_path / "frames.csv"
    out.write_text("path,frame,time,score,error\n/v/a.mp4,0,0.0,1.5,\n/v/a.mp4,25,1.0,1.25,\n"
                   "/v/bad.mp4,,,,not a video\n")
    f = open_output(str(out), resume=True, overwrite=False)
    try:
        f.check_kind("mos", per_frame=True)
        assert [(r.path, r.failed) for r in f.rows] == [
            ("/v/a.mp4", False), ("/v/a.mp4", False), ("/v/bad.mp4", True)]
        from musiq.errors import MusiqError
        with pytest.raises(MusiqError, match="--per-frame differs"):
            f.check_kind("mos", per_frame=False)
    finally:
        f.close()


def test_parquet_from_before_videos_is_resumed(ckpt_1class_single, clips, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    out = tmp_path / "old.parquet"
    pq.write_table(pa.table({"path": ["/x/old.jpg"], "score": [1.0],
                             "error": pa.array([None], pa.string()),
                             "logits": pa.array([[1.0]], pa.list_(pa.float32()))}), out)
    r = cli("score", clips["mkv"], "--model", ckpt_1class_single, "-o", out, "--resume", "-q")
    assert r.returncode == 0, r.stderr
    rows = pq.read_table(out).to_pylist()
    assert rows[0] == {"path": "/x/old.jpg", "score": 1.0, "error": None, "logits": [1.0],
                       "frames": None, "spread": None}
    assert rows[1]["path"] == str(clips["mkv"]) and rows[1]["frames"] == 2


def test_frames_from_an_iterator_are_bounded_and_an_empty_one_is_an_error(scorer, clips):
    p = predict_video(scorer, iter(clips["frames"]), VideoSampling(max_frames=1))
    assert p.score is None and "more than max_frames 1" in p.error
    p = predict_video(scorer, iter([]))
    assert p.score is None and p.frames == 0 and "no frames" in p.error
    with pytest.raises(ImageError, match="no frames"):
        scorer.score_video([])
