"""Checkpoint failure modes: every one is a CheckpointError naming the file and the reason,
found from headers before any large read; nothing in a file can execute code or make us
allocate more than the model's own size."""
from __future__ import annotations

import io
import pickle
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import musiq
from conftest import GOLDEN, write_checkpoint
from musiq.network.checkpoint import PREFIX, load_checkpoint, parameter_shapes, read_headers
from musiq.errors import CheckpointError

EMB_BIAS = PREFIX + "embedding/bias.npy"


def npy_bytes(array: np.ndarray | None = None, *, header: dict | None = None,
              data: bytes = b"") -> bytes:
    """An .npy member: from an array, or a hand-written header followed by ``data``."""
    f = io.BytesIO()
    if header is None:
        np.lib.format.write_array(f, array, allow_pickle=True)
        return f.getvalue()
    np.lib.format.write_array_header_1_0(f, header)
    return f.getvalue() + data


def rewrite(src: Path, dst: Path, *, drop: tuple[str, ...] = (),
            replace: dict[str, bytes] | None = None) -> Path:
    """Copy an .npz member by member, dropping or replacing some (uncompressed, as numpy)."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            body = replace.pop(info.filename, None)
            zout.writestr(info.filename, body if body is not None else zin.read(info))
        for name, body in replace.items():
            zout.writestr(name, body)
    return dst


def refused(path: Path, pattern: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=pattern) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    return e.value


def test_valid_file_loads(ckpt_1class):
    params, variant = load_checkpoint(ckpt_1class)
    assert (variant.num_classes, variant.num_scales) == (1, 3)
    assert params["embedding/kernel"].shape == (16384, 384)
    assert all(p.dtype == np.float32 for p in params.values())


def test_missing_key(ckpt_1class, tmp_path):
    key = "Transformer/encoderblock_3/MlpBlock_3/Dense_0/bias"
    bad = rewrite(ckpt_1class, tmp_path / "m.npz", drop=(PREFIX + key + ".npy",))
    refused(bad, f"missing key {PREFIX}{key} .*not a complete MUSIQ checkpoint")


def test_wrong_shape(ckpt_1class, tmp_path):
    bad = rewrite(ckpt_1class, tmp_path / "s.npz",
                  replace={EMB_BIAS: npy_bytes(np.zeros(385, np.float32))})
    refused(bad, r"embedding/bias has shape \(385,\), expected \(384,\)")


@pytest.mark.parametrize("keep", [0.5, 0.999, 100])
def test_truncated_file(ckpt_1class, tmp_path, keep):
    data = ckpt_1class.read_bytes()
    n = int(len(data) * keep) if keep < 1 else keep
    bad = tmp_path / "t.npz"
    bad.write_bytes(data[:n])
    refused(bad, "not a readable .npz archive .*truncated")


def test_damaged_data_fails_the_crc(ckpt_1class, tmp_path):
    data = bytearray(ckpt_1class.read_bytes())
    with zipfile.ZipFile(ckpt_1class) as zf:
        info = zf.getinfo(PREFIX + "embedding/kernel.npy")
    # Inside the member's data: local header (30 bytes + name) + npy header, then floats.
    pos = info.header_offset + 30 + len(info.filename) + 4096
    data[pos] ^= 0xFF
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(data))
    refused(bad, "embedding/kernel: damaged data .*CRC")


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.marker),))


def test_pickled_object_is_refused_unexecuted(ckpt_1class, tmp_path):
    _Payload.marker = str(tmp_path / "pwned")
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload()
    bad = rewrite(ckpt_1class, tmp_path / "p.npz", replace={EMB_BIAS: npy_bytes(obj)})
    assert b"pwned" in bad.read_bytes()  # the payload really is in the file
    refused(bad, "embedding/bias holds pickled Python objects; refusing")
    assert not (tmp_path / "pwned").exists()
    # A raw pickle stored as a member (not an .npy) is no array at all.
    raw = rewrite(ckpt_1class, tmp_path / "r.npz",
                  replace={EMB_BIAS: pickle.dumps(_Payload())})
    refused(raw, "embedding/bias: invalid array header")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("key,shape,pattern", [
    ("head/kernel", (384, 10**12), r"head/kernel has shape \(384, 1000000000000\)"),
    ("embedding/kernel", (16384, 10**9), r"embedding/kernel has shape \(16384, 1000000000\)"),
    ("embedding/bias", (2**40, 2**40), r"embedding/bias has shape"),
])
def test_giant_header_shape_allocates_nothing(ckpt_1class, tmp_path, key, shape, pattern):
    member = PREFIX + key + ".npy"
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    bad = rewrite(ckpt_1class, tmp_path / "g.npz",
                  replace={member: npy_bytes(header=header, data=b"\0" * 64)})
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        refused(bad, pattern)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 20 * 2**20  # refused from the header alone: far below any array's size
    assert time.perf_counter() - t0 < 5


def test_size_mismatch_between_header_and_member(ckpt_1class, tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (384,)}
    bad = rewrite(ckpt_1class, tmp_path / "x.npz",
                  replace={EMB_BIAS: npy_bytes(header=header, data=b"\0" * (384 * 4 + 8))})
    refused(bad, "embedding/bias: stored size .* does not match its header")


def test_compressed_bomb_outside_the_model_is_never_read(ckpt_1class, tmp_path):
    """A deflated member of 1 GiB of zeros (about 1 MB on disk) beside the parameters."""
    bad = rewrite(ckpt_1class, tmp_path / "bomb.npz")
    with zipfile.ZipFile(bad, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("opt/state/bomb.npy", "w", force_zip64=True) as f:
            block = bytes(16 * 2**20)
            for _ in range(64):
                f.write(block)
    assert bad.stat().st_size < ckpt_1class.stat().st_size + 8 * 2**20
    tracemalloc.start()
    try:
        params, _ = load_checkpoint(bad)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert params.keys() == parameter_shapes(1, 3).keys()
    assert peak < 400 * 2**20  # the model's ~108 MB plus read buffers, never the 1 GiB


def test_compressed_bomb_inside_a_parameter_is_refused_by_size(ckpt_1class, tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (384,)}
    bad = rewrite(ckpt_1class, tmp_path / "b2.npz", drop=(EMB_BIAS,))
    with zipfile.ZipFile(bad, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(EMB_BIAS, npy_bytes(header=header, data=bytes(256 * 2**20)))
    tracemalloc.start()
    try:
        refused(bad, "embedding/bias: stored size 268435584 does not match its header")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


@pytest.mark.parametrize("descr", ["<i4", "|V4", "<c8"])
def test_non_float_parameter(ckpt_1class, tmp_path, descr):
    a = np.zeros(384, np.dtype(descr))
    bad = rewrite(ckpt_1class, tmp_path / "d.npz", replace={EMB_BIAS: npy_bytes(a)})
    refused(bad, "embedding/bias: dtype .* is not a float type")


def test_other_float_dtypes_and_fortran_order_load_exactly(ckpt_1class, tmp_path):
    params, _ = load_checkpoint(ckpt_1class)
    k = params["embedding/kernel"]
    b = params["embedding/bias"]
    f = rewrite(ckpt_1class, tmp_path / "f.npz", replace={
        PREFIX + "embedding/kernel.npy": npy_bytes(np.asfortranarray(k.astype(">f4"))),
        EMB_BIAS: npy_bytes(b.astype(np.float64)),
    })
    p2, _ = load_checkpoint(f)
    assert np.array_equal(p2["embedding/kernel"], k)
    assert np.array_equal(p2["embedding/bias"], b)


@pytest.mark.parametrize("key,shape,pattern", [
    ("head/kernel", (768, 1), r"head/kernel has shape \(768, 1\), expected \(384, classes\)"),
    ("Transformer/scaleembed_input/scale_embedding", (1, 2, 384),
     r"scale_embedding has shape \(1, 2, 384\), expected \(1, 3, 384\)"),
    ("Transformer/posembed_input/pos_embedding", (1, 197, 384),
     r"pos_embedding has shape \(1, 197, 384\), expected \(1, 100, 384\)"),
])
def test_wrong_architecture(ckpt_1class, tmp_path, key, shape, pattern):
    bad = rewrite(ckpt_1class, tmp_path / "a.npz",
                  replace={PREFIX + key + ".npy": npy_bytes(np.zeros(shape, np.float32))})
    refused(bad, pattern)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello\n")
    refused(text, r"not a readable .npz archive \(6 bytes\)")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(empty, r"not a readable .npz archive \(0 bytes\)")
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3, np.float32))
    refused(other, "no 'opt/target/' parameters - this is not a MUSIQ checkpoint")
    refused(tmp_path / "absent.npz", "no such file")
    refused(tmp_path, "is a directory")


def test_optimizer_state_file_loads_and_ignores_other_keys(ckpt_1class, tmp_path):
    opt = write_checkpoint(tmp_path / "opt.npz", "--classes", "1", "--optimizer-state")
    assert opt.stat().st_size == 162_945_660
    with zipfile.ZipFile(opt) as zf:
        others = [i for i in zf.infolist() if not i.filename.startswith(PREFIX)]
    assert len(others) > 100
    assert set(read_headers(opt)) == set(read_headers(ckpt_1class))
    params, variant = load_checkpoint(opt)
    ref, _ = load_checkpoint(ckpt_1class)
    assert variant.num_classes == 1 and params.keys() == ref.keys()
    assert all(np.array_equal(params[k], ref[k]) for k in ref)


def test_named_model_with_the_wrong_file(ckpt_10class, tmp_path):
    (tmp_path / "koniq_ckpt.npz").symlink_to(ckpt_10class)
    with pytest.raises(CheckpointError, match="not a 'koniq' checkpoint: it has 10 output"):
        musiq.load("koniq", checkpoint_dir=tmp_path)


def test_cli_reports_a_bad_checkpoint(ckpt_1class, tmp_path):
    bad = tmp_path / "half.npz"
    bad.write_bytes(ckpt_1class.read_bytes()[:1_000_000])
    img = str(GOLDEN / "images" / "coffee_30x20_q90.jpg")
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score", img, "--model",
                        str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert f"musiq: error: {bad}: not a readable .npz archive (1,000,000 bytes)" in r.stderr
    assert "Traceback" not in r.stderr
