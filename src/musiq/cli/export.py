"""``musiq export``: write a model as an ONNX file (input ``tokens``, output ``logits``).

After writing, the file is run in ONNX Runtime on a sample and the largest logit difference
from PyTorch is printed. The token layout is specified in docs/onnx.md.
"""
from __future__ import annotations

import argparse

from ..errors import MusiqError
from ..network.factory import create_model

FORMATS = ("onnx",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX",
                       description=__doc__.split("\n")[0])
    p.add_argument("--model", "-m", default="koniq", metavar="NAME|PATH",
                   help="registry name or .npz path (default: koniq)")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="only onnx for now")
    p.add_argument("--output", "-o", required=True, metavar="FILE.onnx")
    p.add_argument("--checkpoint-dir", metavar="DIR")
    p.add_argument("--offline", action="store_true", default=None,
                   help="never download a missing checkpoint (also $MUSIQ_OFFLINE=1)")
    p.add_argument("--no-check", action="store_true",
                   help="do not run the file in ONNX Runtime after writing it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.export import export_onnx  # onnx is an optional extra

    if args.format != "onnx":  # pragma: no cover - argparse restricts it
        raise MusiqError(f"unknown export format {args.format!r}")
    net = create_model(args.model, checkpoint_dir=args.checkpoint_dir, offline=args.offline)
    report = export_onnx(net, args.output, check=not args.no_check)
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB, {report.num_classes} "
          f"output(s)): input 'tokens' float32 (batch, tokens, 3075), output 'logits' "
          f"float32 (batch, {report.num_classes})")
    if report.max_abs_diff is not None:
        print(f"ONNX Runtime vs PyTorch on a {report.sample_shape} sample: largest logit "
              f"difference {report.max_abs_diff:.3g}")
    return 0
