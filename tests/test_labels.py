"""Label files: the default CSV, dataset presets, and errors that name file and line."""
from __future__ import annotations

import numpy as np
import pytest

from musiq.evaluation.labels import LabelColumns, LabelError, parse_columns, preset, read_labels


def test_default_csv(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("image,mos\na.jpg,55.5\nsub/b.png,3\n")
    items = read_labels(f, tmp_path / "imgs")
    assert [(i.name, i.mos, i.line) for i in items] == [("a.jpg", 55.5, 2), ("sub/b.png", 3.0, 3)]
    assert items[0].path == tmp_path / "imgs" / "a.jpg"
    assert read_labels(f)[0].path == tmp_path / "a.jpg"  # default: the label file's folder


def test_koniq_and_spaq_presets(tmp_path):
    k = tmp_path / "koniq.csv"
    k.write_text('"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"\n'
                 '"826373.jpg",0,0,25,73,7,105,3.828571,0.527278,77.383249\n')
    item = read_labels(k, columns=preset("koniq"))[0]
    assert (item.name, item.mos) == ("826373.jpg", 77.383249)
    s = tmp_path / "spaq.csv"
    s.write_text("Image name;MOS;Brightness\n00001.png;42.3;50\n")  # delimiter detected
    item = read_labels(s, columns=preset("spaq"))[0]
    assert (item.name, item.mos) == ("00001.png", 42.3)


def test_ava_txt(tmp_path):
    f = tmp_path / "AVA.txt"
    f.write_text("1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396\n"
                 "2 953958 10 7 15 26 26 21 10 8 1 2 1 1396 0\n")
    items = read_labels(f, columns=preset("ava"))
    assert items[0].name == "953619.jpg"
    votes = np.array([0, 1, 5, 17, 38, 36, 15, 6, 5, 1], float)
    assert np.allclose(items[0].distribution, votes / votes.sum())
    assert items[0].mos == pytest.approx((votes * np.arange(1, 11)).sum() / votes.sum())


def test_columns_by_index_and_ranges(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("a.jpg\t1\t2\t7.5\n")
    cols = LabelColumns(image=0, mos=3, header=False)
    assert read_labels(f, columns=cols)[0].mos == 7.5
    assert parse_columns("2:12") == tuple(range(2, 12))
    assert parse_columns("c1,c2,3") == ("c1", "c2", 3)


def test_errors_name_file_line_and_columns(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("file,score\na.jpg,1\n")
    with pytest.raises(LabelError, match=r"labels.csv: no image column 'image' \(columns: "
                                         r"file, score\); choose one with --image-column"):
        read_labels(f)
    f.write_text("image,mos\na.jpg,1\nb.jpg,good\n")
    with pytest.raises(LabelError, match=r"labels.csv:3: MOS 'good' is not a number"):
        read_labels(f)
    with pytest.raises(LabelError, match="no such label file"):
        read_labels(tmp_path / "missing.csv")
    f.write_text("image,mos\n")
    with pytest.raises(LabelError, match="no labelled rows"):
        read_labels(f)
