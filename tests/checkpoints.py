"""Checkpoints in the official ``.npz`` structure with deterministic random weights.

The golden outputs in ``tests/golden`` were made by running the original code on exactly
these weights: each array is drawn from ``numpy.random.default_rng([seed, crc32(key)])``
(``key`` without ``opt/target/``) as a standard normal, then scaled by its role so that
every parameter moves the output:

| parameter | value |
| --- | --- |
| position / scale embeddings, CLS | 0.5 n |
| convolution kernels | 0.05 n |
| Dense kernels | n / sqrt(fan-in) (the attention ``out`` kernel's fan-in is heads x head_dim) |
| GroupNorm / LayerNorm scales | 1 + 0.1 n |
| GroupNorm / LayerNorm biases | 0.1 n |
| other biases | 0.05 n |

Shapes come from :func:`musiq.network.architecture.parameter_shapes`, the one official-name table.

    python tests/checkpoints.py OUT.npz [--classes 1|10|1000] [--single-scale] [--seed N]
"""
from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np

from musiq.network.architecture import Architecture, parameter_shapes

GOLDEN_SEED = 20240601
_CONVS = {"conv_root", "conv1", "conv2", "conv3", "conv_proj"}
_NORMS = ("gn", "LayerNorm", "encoder_norm")


def _scaled(key: str, n: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    *path, leaf = key.split("/")
    parent = path[-1] if path else ""
    if leaf in ("pos_embedding", "scale_embedding", "cls"):
        return 0.5 * n
    if leaf == "kernel":
        if parent in _CONVS:
            return 0.05 * n
        fan_in = shape[0] * shape[1] if parent == "out" else shape[0]
        return n / np.sqrt(fan_in)
    if leaf == "scale":
        return 1.0 + 0.1 * n
    if leaf == "bias" and parent.startswith(_NORMS):
        return 0.1 * n
    return 0.05 * n


def random_params(num_classes: int = 1, single_scale: bool = False,
                  seed: int = GOLDEN_SEED) -> dict[str, np.ndarray]:
    """Every parameter (keys without ``opt/target/``), float32."""
    shapes = parameter_shapes(Architecture(num_classes, 1 if single_scale else 3))
    out = {}
    for key, shape in sorted(shapes.items()):
        n = np.random.default_rng([seed, zlib.crc32(key.encode())]).standard_normal(shape)
        out[key] = _scaled(key, n, shape).astype(np.float32)
    return out


def write_checkpoint(path: str | Path, num_classes: int = 1, single_scale: bool = False,
                     seed: int = GOLDEN_SEED, optimizer_state: bool = False) -> Path:
    """Write the checkpoint; ``optimizer_state`` adds what real files also carry: a step
    counter and bfloat16 momentum stored as raw 2-byte voids, which a loader must skip."""
    arrays = {"opt/target/" + k: v for k, v in random_params(num_classes, single_scale,
                                                            seed).items()}
    if optimizer_state:
        arrays["opt/state/step"] = np.array(1000, np.int64)
        for k in [k for k in arrays if k.startswith("opt/target/")]:
            top = (arrays[k].view(np.uint32) >> 16).astype(np.uint16)
            arrays[k.replace("opt/target/", "opt/state/param_states/") + "/momentum"] = (
                top.view("V2"))
    np.savez(path, **arrays)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--classes", type=int, default=1, choices=(1, 10, 1000))
    p.add_argument("--single-scale", action="store_true")
    p.add_argument("--seed", type=int, default=GOLDEN_SEED)
    p.add_argument("--optimizer-state", action="store_true")
    a = p.parse_args(argv)
    write_checkpoint(a.out, a.classes, a.single_scale, a.seed, a.optimizer_state)


if __name__ == "__main__":
    main()
