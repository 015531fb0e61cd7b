"""One plan: every choice a scoring run makes, resolved once from the options and the model.

:class:`ScorerOptions` is what a user asks for (``device="auto"``, ``preprocess="auto"`` ...);
:func:`make_plan` resolves it against the network's :class:`~musiq.network.architecture.Architecture`
and the machine into a :class:`Plan`: the device, the precision and TF32, where tokens are
made, the runtime, the token budget of a forward pass and of one image, the stem chunk, the
passes kept in flight, the decode workers and the threads. "auto" is resolved here and
nowhere else; the Scorer, the CLI, the service's decode pool, the Ray actors and training
all read the plan. A plan is frozen and picklable: it is what travels to worker processes.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch

from ..decoding.decode import DEFAULT_MAX_PIXELS
from ..errors import MusiqError
from ..tokens.preprocessor import BACKENDS as TOKEN_BACKENDS
from ..tokens.preprocessor import Preprocessor

__all__ = ["PRECISIONS", "RUNTIMES", "Plan", "ScorerOptions", "default_max_tokens",
           "device_name", "exact_fp32", "make_plan", "resolve_device"]

#: Precisions a forward pass can run in (name -> torch dtype name); fp32 is the exact one.
#: (Names, not dtypes: the CLI lists them without importing torch.)
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: What runs the network: torch itself, or the exported graph in ONNX Runtime (CPU, fp32) or
#: OpenVINO (CPU, fp32 and bf16; musiq.engine.runtimes); ``auto`` is resolved by :func:`make_plan`.
RUNTIMES = ("torch", "onnxruntime", "openvino")
RUNTIME_CHOICES = ("auto", *RUNTIMES)
#: The runtime used when none is asked for (unset: ``auto``).
BACKEND_ENV = "MUSIQ_BACKEND"
#: Pixels per token at the native scale of a 32-pixel patch: the per-image token bound's
#: default is ``max_pixels / TOKEN_PIXELS`` (50 MP -> 16,277 tokens: a 16 MP photo).
TOKEN_PIXELS = 3072


def resolve_device(device: "str | torch.device | None") -> "torch.device":
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""
    import torch
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise MusiqError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MusiqError("device 'cuda' requested but CUDA is not available "
                         "(use --device cpu or auto)")
    return dev


#: Files one of which exists wherever torch can see a GPU: the NVIDIA driver (in containers
#: too), WSL's GPU bridge, ROCm's kernel driver.
_GPU_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def _gpu_driver_present() -> bool:
    """False only where torch cannot see a GPU: macOS (no CUDA build), or Linux without any
    GPU driver. Elsewhere (Windows) torch is asked."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in _GPU_MARKERS)


def device_name(device: "str | torch.device | None") -> str:
    """:func:`resolve_device` as text (``cpu``, ``cuda``, ``cuda:1``). ``cpu``, and ``auto``
    where no GPU driver is present, are answered without importing torch, which is most of
    a CPU run's start-up when the model runs in OpenVINO."""
    text = "auto" if device is None else str(device)
    if text == "cpu" or (text == "auto" and not _gpu_driver_present()):
        return "cpu"
    return str(resolve_device(device))


def default_max_tokens(max_pixels: int | None) -> int | None:
    """The default bound on one image's tokens: ``max_pixels / 3072`` (None: no bound).

    A model pass costs the square of the token count, and an image's tokens depend on its
    shape as much as on its pixels: a 1x999,999 PNG (1 MP) makes 31,269 tokens where a 4:3
    photo of 1 MP makes about 1,000. The bound refuses such inputs before the model runs.
    """
    return None if max_pixels is None else -(-max_pixels // TOKEN_PIXELS)


@dataclass(frozen=True)
class ScorerOptions:
    """How a :class:`~musiq.Scorer` runs, as asked for; validated when made.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available);
    ``max_pixels``: refuse images above this many pixels, from the header (None: no limit);
    ``exif_transpose``: apply EXIF orientation (the original does not);
    ``max_batch_tokens``: padded token slots per forward pass (None: 1024 on CPU, 65536 on
    CUDA); ``precision``: ``fp32`` (exact), ``bf16`` or ``fp16`` autocast;
    ``compile``: ``torch.compile`` the patch stem (for GPUs), on bucketed patch counts;
    ``backend``: the runtime: ``auto`` (default, or ``$MUSIQ_BACKEND``: OpenVINO on CPU for a
    model fresh from its checkpoint file in fp32/bf16, else torch), ``torch``, ``openvino`` (CPU fp32/bf16) or
    ``onnxruntime`` (CPU fp32);
    ``threads``: CPU threads of the model (None: torch's default, one per core);
    ``preprocess``: where tokens are made: ``numpy`` (host, in the decode workers), ``torch``
    (on the scoring device, from decoded pixels) or ``auto`` (torch on CUDA; NumPy on CPU,
    which measures faster there: docs/performance.md). Both give the same tokens.
    ``workers``: decode processes (None: none on CPU, up to 8 to feed a GPU);
    ``max_tokens``: refuse an image that would make more tokens (None: the default,
    ``max_pixels / 3072``; 0: no bound).
    """

    device: str | None = "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    exif_transpose: bool = False
    max_batch_tokens: int | None = None
    precision: str = "fp32"
    compile: bool = False
    backend: str = field(default_factory=lambda: os.environ.get(BACKEND_ENV) or "auto")
    threads: int | None = None
    preprocess: str = "auto"
    workers: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.device is not None and not isinstance(self.device, str):  # a torch.device
            object.__setattr__(self, "device", str(self.device))
        _check_choice("preprocess", self.preprocess, ("auto", *TOKEN_BACKENDS))
        _check_choice("precision", self.precision, tuple(PRECISIONS))
        _check_choice("backend", self.backend, RUNTIME_CHOICES)
        for name in ("max_batch_tokens", "max_pixels", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MusiqError(f"{name} must be positive, not {value}")
        for name in ("workers", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise MusiqError(f"{name} must be 0 or more, not {value}")
        device = device_name(self.device)  # raises for an unknown or absent device
        if self.backend not in ("torch", "auto"):
            if device.split(":")[0] != "cpu":
                raise MusiqError(f"the {self.backend} backend runs on CPU only "
                                 "(use --device cpu)")
            if self.preprocess == "torch":
                raise MusiqError(f"the {self.backend} backend reads tokens made by NumPy "
                                 "(--preprocess numpy or auto)")
            allowed = ("fp32", "bf16") if self.backend == "openvino" else ("fp32",)
            if self.precision not in allowed:
                raise MusiqError(f"the {self.backend} backend runs {' or '.join(allowed)} "
                                 f"only (not {self.precision})")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MusiqError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class Plan:
    """Every choice of a run, resolved (see :func:`make_plan`).

    ``device``: ``cpu`` or ``cuda[:N]``; ``precision``: ``fp32`` (exact: TF32 off),
    ``bf16``, ``fp16``; ``runtime``: ``torch`` or ``onnxruntime``; ``preprocessor``:
    decoding and preprocessing, with the network's own configuration and where tokens are
    made (its ``backend``); ``max_batch_tokens``: padded token slots per forward pass;
    ``stem_chunk``: patches per stem call; ``depth``: passes launched before the oldest is
    read back (1 on CUDA from pixels, else 0); ``workers``: decode processes;
    ``threads``: the model's CPU threads (None: torch's default); ``compile``: the stem is
    compiled on bucketed shapes.
    """

    device: str
    precision: str
    runtime: str
    preprocessor: Preprocessor
    max_batch_tokens: int
    stem_chunk: int
    depth: int
    workers: int
    threads: int | None = None
    compile: bool = False
    runtime_auto: bool = False  # the runtime was chosen by ``auto`` (falls back to torch)

    @property
    def torch_device(self) -> "torch.device":
        import torch
        return torch.device(self.device)

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def dtype(self) -> "torch.dtype":
        import torch
        return getattr(torch, PRECISIONS[self.precision])

    @property
    def tokens_on(self) -> str:
        """Where tokens are made: ``numpy`` (host, decode workers) or ``torch`` (device)."""
        return self.preprocessor.backend

    @property
    def max_tokens(self) -> int | None:
        return self.preprocessor.max_tokens

    def worker_preprocessor(self) -> Preprocessor:
        """What decode worker processes run: never on a GPU (one CUDA context per worker
        would cost ~500 MB each): they make tokens with NumPy on the host, or (the
        torch-tokens path) only decode pixels."""
        return replace(self.preprocessor, backend="numpy", device="cpu")

    def apply_threads(self) -> None:
        """Set the model's CPU threads (the one place a run sets them)."""
        if self.threads:
            import torch
            torch.set_num_threads(self.threads)

    def describe(self) -> dict:
        """The plan as plain data (for provenance and logs)."""
        return {"device": self.device, "precision": self.precision, "runtime": self.runtime,
                "preprocess": self.tokens_on, "max_batch_tokens": self.max_batch_tokens,
                "max_tokens": self.max_tokens, "workers": self.workers,
                "threads": self.threads, "compile": self.compile}


def make_plan(options: ScorerOptions, arch, checkpoint=None) -> Plan:
    """Resolve ``options`` for a network of architecture ``arch`` on this machine;
    ``checkpoint``: the file the weights are fresh from (None: changed in memory, or made
    without one), which ``backend="auto"`` needs for a converted runtime."""
    from .runtimes import choose, cpu_has_bf16, notice
    device = device_name(options.device)
    cuda = device.startswith("cuda")
    tokens_on = options.preprocess
    if tokens_on == "auto":
        tokens_on = "torch" if cuda else "numpy"
    precision = options.precision
    if precision == "bf16" and not cuda and not cpu_has_bf16():
        notice("this CPU has no bf16 instructions: running fp32")
        precision = "fp32"
    runtime = choose(options.backend, device.split(":")[0], precision, options.preprocess,
                     options.compile, checkpoint)
    max_tokens = options.max_tokens
    if max_tokens is None:
        max_tokens = default_max_tokens(options.max_pixels)
    preprocessor = Preprocessor(arch.preprocess, options.max_pixels, options.exif_transpose,
                                backend=tokens_on, device=device,
                                max_tokens=max_tokens or None)
    workers = options.workers
    if workers is None:
        # Preprocessing is ~5 % of CPU time: in-process on CPU; parallel to feed a GPU.
        workers = max(1, min(8, (os.cpu_count() or 2) - 1)) if cuda else 0
    return Plan(
        device=device, precision=precision, runtime=runtime,
        preprocessor=preprocessor,
        # CPU: ~1k slots, so that small images share passes but a pass's activations stay
        # in cache (a 1024x768 image ran 10 % faster alone than 8 per pass on 2 cores);
        # GPU: large passes to fill the device.
        max_batch_tokens=options.max_batch_tokens or (65536 if cuda else 1024),
        # A GPU is bound by launches, not by the stem's memory: few large stem calls.
        stem_chunk=8192 if cuda else 256,
        depth=1 if (cuda and tokens_on == "torch") else 0,
        workers=workers, threads=options.threads, compile=options.compile,
        runtime_auto=options.backend == "auto")


@contextlib.contextmanager
def exact_fp32(device: "torch.device | str | None" = None) -> Iterator[None]:
    """No TF32 on CUDA inside the block: cuDNN's default TF32 convolutions move logits by
    ~3e-4. Every fp32 forward pass (scoring, validation, explain) runs inside it."""
    import torch
    if not torch.cuda.is_available() or (device is not None
                                         and torch.device(device).type != "cuda"):
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
