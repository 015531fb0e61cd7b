"""The MUSIQ architecture as data, and the official checkpoint's parameter names derived from it.

:class:`Architecture` holds every size of the network (the official release uses one: a
ViT-Base-like encoder of 14 layers, 384 wide, 6 heads, on a ResNet patch stem). From it,
:func:`official_parameters` lists every parameter of the official ``.npz`` with its expected
shape, the name of the PyTorch parameter it fills and how its layout maps onto it. The
checkpoint reader checks shapes with it, :class:`musiq.network.model.Musiq` loads and saves with it;
nothing else spells an official name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tokens.preprocess import PreprocessConfig

#: Head sizes of the official checkpoints and what their outputs are.
KIND_BY_CLASSES = {1: "mos", 10: "distribution", 1000: "imagenet"}


@dataclass(frozen=True)
class Architecture:
    """Every size of a MUSIQ network (defaults: the official release).

    ``num_classes``: head outputs (1 MOS, 10 AVA distribution, 1000 ImageNet);
    ``num_scales``: 3 for multi-scale (224, 384, native), 1 for MUSIQ-single.
    ``hidden``/``mlp_dim``/``heads``/``layers``: the Transformer encoder; ``patch``: pixels per
    patch side; ``pos_grid``: hashed-position grid side; ``stem_width``/``stem_out``: the
    patch stem's root and bottleneck-output channels.
    """

    num_classes: int = 1
    num_scales: int = 3
    hidden: int = 384
    mlp_dim: int = 1152
    heads: int = 6
    layers: int = 14
    patch: int = 32
    pos_grid: int = 10
    stem_width: int = 64
    stem_out: int = 256

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not a multiple of {self.heads} heads")
        if self.patch % 4:
            raise ValueError(f"patch size {self.patch} is not a multiple of 4 (stem strides)")

    @property
    def kind(self) -> str:
        """``mos``, ``distribution``, ``imagenet``, or ``logits`` for another head size."""
        return KIND_BY_CLASSES.get(self.num_classes, "logits")

    @property
    def single_scale(self) -> bool:
        return self.num_scales == 1

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def stem_grid(self) -> int:
        """Side of the stem's output map: a stride-2 convolution, then a stride-2 max-pool."""
        return self.patch // 4

    @property
    def patch_features(self) -> int:
        """Values the embedding Dense reads per patch (the flattened stem output)."""
        return self.stem_grid ** 2 * self.stem_out

    @property
    def token_features(self) -> int:
        """Pixel values per token: ``patch * patch * 3``."""
        return self.patch * self.patch * 3

    @property
    def preprocess(self) -> "PreprocessConfig":
        """The preprocessing this network reads (timm's habit: the model carries its data
        config): the official scales 224 and 384 plus the native one for multi-scale, the
        native resolution alone for MUSIQ-single; patches of :attr:`patch` pixels, hashed
        positions on a :attr:`pos_grid` grid."""
        from ..tokens.preprocess import MULTI_SCALE, PreprocessConfig
        if self.num_scales not in (1, MULTI_SCALE.num_scales):
            raise ValueError(f"no preprocessing is defined for {self.num_scales} scales")
        scales = () if self.single_scale else MULTI_SCALE.longer_side_lengths
        return PreprocessConfig(longer_side_lengths=scales, patch_size=self.patch,
                                hse_grid_size=self.pos_grid)

    def with_head(self, num_classes: int) -> "Architecture":
        from dataclasses import replace
        return replace(self, num_classes=num_classes)


#: The architecture of every official checkpoint (head and scales aside).
OFFICIAL = Architecture()

#: Epsilon of every LayerNorm of the encoder (the original's flax default).
LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class OfficialParam:
    """One array of the official checkpoint.

    ``key``: its name below ``opt/target/``; ``shape``: its official shape; ``attr``: the
    PyTorch parameter it fills (a ``state_dict`` key of :class:`musiq.network.model.Musiq`);
    ``rows``: the slice of that parameter's first axis it fills (fused q/k/v), or None for the
    whole; ``layout``: ``reshape`` (same values in another shape), ``kernel`` (a Dense kernel
    ``(in..., out...)``, stored transposed as ``(out, in)``) or ``conv`` (HWIO -> OIHW).
    """

    key: str
    shape: tuple[int, ...]
    attr: str
    layout: str = "reshape"
    rows: tuple[int, int] | None = None


def official_parameters(arch: Architecture = OFFICIAL) -> list[OfficialParam]:
    """Every model parameter of the official checkpoint for ``arch``, in a fixed order."""
    P = OfficialParam
    w, out, h = arch.stem_width, arch.stem_out, arch.hidden
    params = [P("conv_root/kernel", (7, 7, 3, w), "stem.conv_root.weight", "conv")]
    params += _group_norm("gn_root", w, "stem.gn_root")
    unit = "block1/unit1/"
    for name, k, cin, cout in (("conv_proj", 1, w, out), ("conv1", 1, w, w),
                               ("conv2", 3, w, w), ("conv3", 1, w, out)):
        params.append(P(f"{unit}{name}/kernel", (k, k, cin, cout),
                        f"stem.unit1.{name}.weight", "conv"))
    for name, ch in (("gn_proj", out), ("gn1", w), ("gn2", w), ("gn3", out)):
        params += _group_norm(unit + name, ch, f"stem.unit1.{name}")
    params += _dense("embedding", (arch.patch_features,), (h,), "stem.embedding")
    tr = "Transformer/"
    params += [
        P(tr + "posembed_input/pos_embedding", (1, arch.pos_grid ** 2, h), "pos_embedding"),
        P(tr + "scaleembed_input/scale_embedding", (1, arch.num_scales, h), "scale_embedding"),
        P(tr + "cls", (1, 1, h), "cls"),
    ]
    hd = arch.head_dim
    for i in range(arch.layers):
        blk, mod = f"{tr}encoderblock_{i}/", f"blocks.{i}."
        params += _layer_norm(blk + "LayerNorm_0", h, mod + "ln0")
        att = blk + "MultiHeadDotProductAttention_1/"
        for j, proj in enumerate(("query", "key", "value")):
            rows = (j * h, (j + 1) * h)
            params.append(P(f"{att}{proj}/kernel", (h, arch.heads, hd),
                            mod + "attention.qkv.weight", "kernel", rows))
            params.append(P(f"{att}{proj}/bias", (arch.heads, hd),
                            mod + "attention.qkv.bias", "reshape", rows))
        params += _dense(att + "out", (arch.heads, hd), (h,), mod + "attention.out")
        params += _layer_norm(blk + "LayerNorm_2", h, mod + "ln2")
        params += _dense(blk + "MlpBlock_3/Dense_0", (h,), (arch.mlp_dim,), mod + "mlp0")
        params += _dense(blk + "MlpBlock_3/Dense_1", (arch.mlp_dim,), (h,), mod + "mlp1")
    params += _layer_norm(tr + "encoder_norm", h, "encoder_norm")
    params += _dense("head", (h,), (arch.num_classes,), "head")
    return params


def parameter_shapes(arch: Architecture = OFFICIAL) -> dict[str, tuple[int, ...]]:
    """Official key (without ``opt/target/``) -> expected shape, for ``arch``."""
    return {p.key: p.shape for p in official_parameters(arch)}


def _group_norm(key: str, channels: int, module: str) -> list[OfficialParam]:
    return [OfficialParam(f"{key}/{n}", (1, 1, 1, channels), f"{module}.{t}")
            for n, t in (("scale", "weight"), ("bias", "bias"))]


def _layer_norm(key: str, channels: int, module: str) -> list[OfficialParam]:
    return [OfficialParam(f"{key}/{n}", (channels,), f"{module}.{t}")
            for n, t in (("scale", "weight"), ("bias", "bias"))]


def _dense(key: str, fan_in: tuple[int, ...], fan_out: tuple[int, ...],
           module: str) -> list[OfficialParam]:
    return [OfficialParam(f"{key}/kernel", fan_in + fan_out, f"{module}.weight", "kernel"),
            OfficialParam(f"{key}/bias", fan_out, f"{module}.bias")]
