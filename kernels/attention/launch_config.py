"""Launch configurations of the Triton attention kernels: `KernelConfig` / `LaunchConfig`, their lookup in
`autotune.json` (keyed by device, head_dim, causal, dtype and sequence bucket, through `kernels.launch_table`) and the
per-call resolution (user overrides merged over the entry, tiles clamped to the sequence lengths). The table is
rewritten on a GPU by `python -m kernels.attention.tune`.
"""

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from kernels import launch_table
from kernels.launch_table import device_key

TABLE_PATH = pathlib.Path(__file__).with_name("autotune.json")
KERNELS = ("fwd", "bwd_dkv", "bwd_dq")  # the table's per-kernel sections
CLASS_FIELDS = ("device", "head_dim", "causal", "dtype", "seq")  # an entry's match fields


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Launch parameters of one kernel: tile rows (queries) x tile columns (keys), warps, pipeline stages."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "config") -> "KernelConfig":
        unknown = set(d) - {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"}
        if unknown:
            raise ValueError(
                f"{where}: unknown keys {sorted(unknown)} (expected BLOCK_M, BLOCK_N, num_warps, num_stages)"
            )
        missing = {"BLOCK_M", "BLOCK_N", "num_warps", "num_stages"} - set(d)
        if missing:
            raise ValueError(f"{where}: missing keys {sorted(missing)}")
        for key in ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages"):
            if isinstance(d[key], bool) or not isinstance(d[key], int | np.integer):
                raise ValueError(f"{where}.{key}: expected an int, got {d[key]!r}")
        out = cls(int(d["BLOCK_M"]), int(d["BLOCK_N"]), int(d["num_warps"]), int(d["num_stages"]))
        out.check(where)
        return out

    def to_json(self) -> dict[str, int]:
        return dict(BLOCK_M=self.block_m, BLOCK_N=self.block_n, num_warps=self.num_warps, num_stages=self.num_stages)

    def check(self, where: str) -> None:
        for name, value in (("BLOCK_M", self.block_m), ("BLOCK_N", self.block_n)):
            if value < 16 or value & (value - 1):
                raise ValueError(f"{where}.{name}: expected a power of two >= 16, got {value}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"{where}.num_warps: expected 1, 2, 4, 8 or 16, got {self.num_warps}")
        if self.num_stages < 1:
            raise ValueError(f"{where}.num_stages: expected a positive int, got {self.num_stages}")


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """The three kernels' launch parameters (`fwd`, `bwd_dkv`, `bwd_dq` in the table) and where they came from.

    `fwd` and `bwd_dq`: BLOCK_M = query tile, BLOCK_N = key tile. `bwd_dkv`: BLOCK_N = the key tile each program
    owns, BLOCK_M = the query tile it loops over. The delta preprocess kernel uses `bwd_dq`'s BLOCK_M.
    """

    fwd: KernelConfig
    bwd_dkv: KernelConfig
    bwd_dq: KernelConfig
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "config") -> "LaunchConfig":
        parts = {name: KernelConfig.from_json(d[name], f"{where}.{name}") for name in KERNELS if name in d}
        missing = set(KERNELS) - set(parts)
        if missing:
            raise ValueError(f"{where}: missing sections {sorted(missing)}")
        return cls(**parts, source=str(d.get("source", "")))

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_json() for name in KERNELS}

    def merged(self, override: Mapping[str, Any], where: str = "config") -> "LaunchConfig":
        """This config with some kernels' fields replaced: `{"fwd": {"BLOCK_M": 64}, ...}`."""
        unknown = set(override) - set(KERNELS) - {"source"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (expected some of {list(KERNELS)})")
        parts = {}
        for name in KERNELS:
            base = getattr(self, name).to_json()
            extra = override.get(name, {})
            if not isinstance(extra, Mapping):
                raise ValueError(f"{where}.{name}: expected a mapping of launch parameters, got {extra!r}")
            parts[name] = KernelConfig.from_json({**base, **extra}, f"{where}.{name}")
        return LaunchConfig(**parts, source=str(override.get("source", "user config")))

    def clamped(self, q_len: int, kv_len: int) -> "LaunchConfig":
        """Tiles no larger than the (power-of-two rounded, >= 16) sequences they cover."""

        def fit(block: int, length: int) -> int:
            return min(block, max(16, 1 << max(0, length - 1).bit_length()))  # next power of two of length

        parts = {
            name: dataclasses.replace(c, block_m=fit(c.block_m, q_len), block_n=fit(c.block_n, kv_len))
            for name, c in ((n, getattr(self, n)) for n in KERNELS)
        }
        return LaunchConfig(**parts, source=self.source)


def seq_bucket(q_len: int, kv_len: int, table: Mapping[str, Any] | None = None) -> str:
    """The table's sequence class of a call: the bucket of max(q_len, kv_len) (`"<=2048"`, ..., `">32768"`)."""
    table = load_table() if table is None else table
    return launch_table.bucket(max(q_len, kv_len), table["buckets"]["seq"])


def load_table(path: str | pathlib.Path | None = None) -> dict[str, Any]:
    """The parsed launch table: `autotune.json` beside this module (read once) unless `path` is given."""
    return launch_table.cached_table(str(TABLE_PATH)) if path is None else launch_table.load_table(path)


def lookup_config(
    *,
    head_dim: int,
    causal: bool,
    dtype: Any,
    q_len: int,
    kv_len: int,
    device: str | None = None,
    table: Mapping[str, Any] | None = None,
) -> LaunchConfig:
    """The table's launch configuration for one call's shape class on `device` (default: this process's).

    Match fields: `device`, `head_dim` (the kernel's power-of-two padded head dim), `causal`, `dtype`, `seq` (the
    bucket of max(q_len, kv_len)); matching and precedence are `kernels.launch_table.lookup`'s.
    """
    table = load_table() if table is None else table
    device = device_key() if device is None else device
    call = dict(head_dim=head_dim, causal=bool(causal), dtype=launch_table.dtype_name(dtype), seq=max(q_len, kv_len))
    entry, where = launch_table.lookup(table, device, call)
    return LaunchConfig.from_json(entry, where)


def resolve_config(
    config: LaunchConfig | Mapping[str, Any] | None,
    *,
    head_dim: int,
    causal: bool,
    dtype: Any,
    q_len: int,
    kv_len: int,
    backend: str = "auto",
) -> LaunchConfig:
    """The launch configuration a call uses: `config` (a LaunchConfig, or a partial mapping merged over the table
    entry) or the table entry, with tiles clamped to the sequence lengths."""
    if isinstance(config, LaunchConfig):
        for name in KERNELS:
            getattr(config, name).check(f"config.{name}")
        chosen = config
    elif config is None or isinstance(config, Mapping):
        chosen = lookup_config(
            head_dim=head_dim, causal=causal, dtype=dtype, q_len=q_len, kv_len=kv_len, device=device_key(backend)
        )
        if config:
            chosen = chosen.merged(config)
    else:
        raise ValueError(f"config: expected None, a LaunchConfig or a mapping, got {type(config).__name__}")
    return chosen.clamped(q_len, kv_len)
