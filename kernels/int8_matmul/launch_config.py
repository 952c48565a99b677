"""Launch configurations of the Triton INT8 / INT4 matmuls: `MatmulConfig`, its lookup in `autotune.json` (keyed by
device, mode and M bucket, through `kernels.launch_table`) and the per-call resolution (user overrides merged over
the entry).
"""

from __future__ import annotations

import dataclasses
import numbers
import pathlib
from collections.abc import Mapping
from typing import Any

from kernels import launch_table
from kernels.launch_table import device_key

TABLE_PATH = pathlib.Path(__file__).with_name("autotune.json")
MODES = ("w8a8", "w8a16", "w4a16")
CLASS_FIELDS = ("device", "mode", "m")  # an entry's match fields
CONFIG_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "SPLIT_K", "num_warps", "num_stages")


@dataclasses.dataclass(frozen=True)
class MatmulConfig:
    """One kernel launch: tile ``[block_m, block_n]``, K step ``block_k``, L2 group ``group_m`` (row tiles),
    ``split_k`` K slices, warps and software-pipeline stages; ``source`` says where the numbers come from."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 2
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "config") -> MatmulConfig:
        """From ``{"BLOCK_M": .., "BLOCK_N": .., "BLOCK_K": .., [GROUP_M, SPLIT_K, num_warps, num_stages, source]}``."""
        unknown = set(d) - set(CONFIG_KEYS) - {"source"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (expected some of {list(CONFIG_KEYS)})")
        missing = {"BLOCK_M", "BLOCK_N", "BLOCK_K"} - set(d)
        if missing:
            raise ValueError(f"{where}: missing keys {sorted(missing)}")
        for key in set(d) & set(CONFIG_KEYS):
            if isinstance(d[key], bool) or not isinstance(d[key], numbers.Integral):
                raise ValueError(f"{where}.{key}: expected an int, got {d[key]!r}")
        out = cls(
            block_m=int(d["BLOCK_M"]),
            block_n=int(d["BLOCK_N"]),
            block_k=int(d["BLOCK_K"]),
            group_m=int(d.get("GROUP_M", 8)),
            split_k=int(d.get("SPLIT_K", 1)),
            num_warps=int(d.get("num_warps", 4)),
            num_stages=int(d.get("num_stages", 2)),
            source=str(d.get("source", "")),
        )
        out.check(where)
        return out

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], where: str = "entry") -> MatmulConfig:
        """From a table entry or default: its ``config`` section and its ``source``."""
        if not isinstance(entry.get("config"), Mapping):
            raise ValueError(f"{where}: expected a 'config' object of launch parameters")
        return cls.from_json({**entry["config"], "source": entry.get("source", "")}, f"{where}.config")

    def to_json(self) -> dict[str, Any]:
        return dict(
            BLOCK_M=self.block_m,
            BLOCK_N=self.block_n,
            BLOCK_K=self.block_k,
            GROUP_M=self.group_m,
            SPLIT_K=self.split_k,
            num_warps=self.num_warps,
            num_stages=self.num_stages,
        )

    def check(self, where: str = "config") -> None:
        for name, value in (("BLOCK_M", self.block_m), ("BLOCK_N", self.block_n), ("BLOCK_K", self.block_k)):
            if value < 1 or value & (value - 1):
                raise ValueError(f"{where}.{name}: expected a power of two, got {value}")
        if self.group_m < 1:
            raise ValueError(f"{where}.GROUP_M: expected a positive int, got {self.group_m}")
        if self.split_k < 1:
            raise ValueError(f"{where}.SPLIT_K: expected a positive int, got {self.split_k}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"{where}.num_warps: expected 1, 2, 4, 8 or 16, got {self.num_warps}")
        if self.num_stages < 1:
            raise ValueError(f"{where}.num_stages: expected a positive int, got {self.num_stages}")

    def merged(self, override: Mapping[str, Any], where: str = "config") -> MatmulConfig:
        """This config with some fields replaced: ``{"BLOCK_K": 64, "SPLIT_K": 2}``."""
        return MatmulConfig.from_json(
            {**self.to_json(), **override, "source": override.get("source", "user config")}, where
        )


def m_bucket(m: int, table: Mapping[str, Any] | None = None) -> str:
    """The table's M class of a call (``"<=1"``, ``"<=16"``, ..., ``">256"``)."""
    table = load_table() if table is None else table
    return launch_table.bucket(m, table["buckets"]["m"])


def load_table(path: str | pathlib.Path | None = None) -> dict[str, Any]:
    """The parsed launch table: `autotune.json` beside this module (read once) unless `path` is given."""
    return launch_table.cached_table(str(TABLE_PATH)) if path is None else launch_table.load_table(path)


def lookup_config(
    mode: str, m: int, *, device: str | None = None, table: Mapping[str, Any] | None = None
) -> MatmulConfig:
    """The table's launch configuration for ``mode`` (``w8a8``/``w8a16``/``w4a16``) and ``m`` activation rows on
    ``device`` (default: this process's). Matching and precedence are `kernels.launch_table.lookup`'s."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    table = load_table() if table is None else table
    device = device_key() if device is None else device
    entry, where = launch_table.lookup(table, device, dict(mode=mode, m=m))
    return MatmulConfig.from_entry(entry, where)


def resolve_config(
    mode: str, m: int, config: MatmulConfig | Mapping[str, Any] | None, backend: str = "auto"
) -> MatmulConfig:
    """The configuration a call uses: ``config`` (a MatmulConfig, or a mapping of fields merged over the table
    entry) or the table entry for this backend's device."""
    if isinstance(config, MatmulConfig):
        config.check()
        return config
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config: expected None, a MatmulConfig or a mapping, got {type(config).__name__}")
    base = lookup_config(mode, m, device=device_key(backend))
    return base if config is None else base.merged(config)
