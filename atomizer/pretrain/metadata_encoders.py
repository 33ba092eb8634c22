"""Metadata encoders for SatMIP: a tabular FT-Transformer-style encoder and a text encoder.

Both are ``nn.Module`` s whose ``forward(records)`` takes a sequence of
:class:`~atomizer.pretrain.metadata.MetadataRecord` and returns ``(S, out_dim)`` features; both
accept records with any fields missing.

- :class:`TabularMetadataEncoder`: one token per field (FT-Transformer, Gorishniy et al. 2021):
  periodic embeddings with learned frequencies for numbers (PLR, Gorishniy et al. 2022), cyclic
  sin/cos harmonics for day of year, time of day and azimuths, the unit vector on the sphere for
  lon/lat, a hashed embedding table for the sensor id. A missing field's token is a learned
  "missing" vector of that field. A CLS token and Transformer layers follow; the CLS output is the
  feature.
- :class:`TextMetadataEncoder`: the record written as text by
  :func:`~atomizer.pretrain.metadata.metadata_to_text`, tokenised by :class:`CharTokenizer` (a
  fixed character vocabulary built into the package: nothing is downloaded) and read by a small
  Transformer with learned positions; the CLS output is the feature.

The paper uses 3 layers, 8 heads, width 512 (:data:`PAPER_SIZE`); the defaults are CPU-sized.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field, field_validator
from torch import nn

from atomizer.config import StrictModel, validate_config
from atomizer.errors import EncoderError
from atomizer.pretrain.metadata import FIELD_NAMES, MetadataRecord, metadata_to_text

#: Sizes of the paper's metadata encoders (SatMIP, section 4).
PAPER_SIZE: dict[str, int] = {"width": 512, "depth": 3, "heads": 8}

#: Days per year used by the cyclic day-of-year encoding.
DAYS_PER_YEAR = 365.25
SECONDS_PER_DAY = 86400.0
#: Reference year and span (years) of the linear "year" feature: (year - 2015) / 10.
REFERENCE_YEAR = 2015.0
YEAR_SCALE = 10.0
#: Angles are divided by these before embedding (degrees).
ZENITH_SCALE_DEG = 90.0
AZIMUTH_PERIOD_DEG = 360.0
CLOUD_SCALE_PCT = 100.0


class _StrictParams(StrictModel):
    width: int = Field(64, ge=8, description="Token width (paper: 512).")
    depth: int = Field(2, ge=1, description="Transformer layers (paper: 3).")
    heads: int = Field(4, ge=1, description="Attention heads (paper: 8).")
    ffn_multiplier: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("heads")
    @classmethod
    def _divides(cls, v: int, info: Any) -> int:
        width = info.data.get("width")
        if width is not None and width % v:
            raise ValueError(f"width {width} is not divisible by heads {v}; pick heads dividing it")
        return v


class TabularParams(_StrictParams):
    """Parameters of :class:`TabularMetadataEncoder`."""

    n_frequencies: int = Field(16, ge=1, description="Learned frequencies per periodic embedding.")
    frequency_sigma: float = Field(1.0, gt=0, description="Std of the initial frequencies.")
    n_harmonics: int = Field(4, ge=1, description="sin/cos harmonics of the cyclic encodings.")
    n_sensor_buckets: int = Field(64, ge=1, description="Hash buckets of the sensor-id embedding.")
    fields: list[str] = Field(default_factory=lambda: list(FIELD_NAMES))

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if f not in FIELD_NAMES]
        if bad:
            raise ValueError(f"unknown metadata fields {bad}; known: {', '.join(FIELD_NAMES)}")
        if not v:
            raise ValueError("give at least one metadata field")
        return v


class TextParams(_StrictParams):
    """Parameters of :class:`TextMetadataEncoder`."""

    max_length: int = Field(192, ge=8, description="Characters kept (longer texts are cut).")


def _validate(params_cls: type[BaseModel], params: dict[str, Any], name: str) -> Any:
    return validate_config(
        params_cls, params, origin=f"metadata encoder {name!r}", error=EncoderError
    )


# --- tokenisers -----------------------------------------------------------------------------------
class PeriodicEmbedding(nn.Module):
    """PLR embedding of ``d_in`` scalars: ReLU(Linear([sin 2 pi c x, cos 2 pi c x])), c learned."""

    def __init__(self, d_in: int, n_frequencies: int, width: int, sigma: float) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(d_in, n_frequencies) * sigma)
        self.linear = nn.Linear(2 * d_in * n_frequencies, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (S, d_in) -> (S, width)
        v = 2 * math.pi * x.unsqueeze(-1) * self.frequencies  # (S, d_in, k)
        feats = torch.cat([torch.sin(v), torch.cos(v)], dim=-1).flatten(1)
        return torch.relu(self.linear(feats))


class CyclicEmbedding(nn.Module):
    """Linear([sin 2 pi h t, cos 2 pi h t] for h = 1..H) of a phase ``t`` in turns (period 1)."""

    def __init__(self, n_harmonics: int, width: int) -> None:
        super().__init__()
        self.register_buffer(
            "harmonics", torch.arange(1, n_harmonics + 1, dtype=torch.float32), persistent=False
        )
        self.linear = nn.Linear(2 * n_harmonics, width)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (S, 1) -> (S, width)
        v = 2 * math.pi * t * self.harmonics
        return self.linear(torch.cat([torch.sin(v), torch.cos(v)], dim=-1))


def lonlat_to_unit_xyz(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Points on the unit sphere ``(..., 3)``: nearby places are near, across the date line too."""
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def sensor_bucket(sensor_id: str, n_buckets: int) -> int:
    """A stable hash bucket of a sensor id (same bucket in every process and run)."""
    return zlib.crc32(sensor_id.encode("utf-8")) % n_buckets


#: Tokens of the tabular encoder: (token name, record field it reads, kind, input size).
_TOKENS: tuple[tuple[str, str, str, int], ...] = (
    ("gsd", "gsd_m", "periodic", 1),
    ("year", "date", "periodic", 1),
    ("day_of_year", "date", "cyclic", 1),
    ("time_of_day", "time_utc", "cyclic", 1),
    ("location", "location", "sphere", 3),
    ("sensor", "sensor_id", "category", 1),
    ("off_nadir", "off_nadir_deg", "periodic", 1),
    ("view_azimuth", "view_azimuth_deg", "cyclic", 1),
    ("sun_azimuth", "sun_azimuth_deg", "cyclic", 1),
    ("sun_elevation", "sun_elevation_deg", "periodic", 1),
    ("cloud_cover", "cloud_cover_pct", "periodic", 1),
)


def _record_values(r: MetadataRecord, n_sensor_buckets: int) -> dict[str, tuple[float, ...]]:
    """The scaled inputs of every token this record has (missing tokens are absent)."""
    v: dict[str, tuple[float, ...]] = {}
    if r.gsd_m is not None:
        v["gsd"] = (math.log10(r.gsd_m),)
    if r.date is not None:
        doy = r.date.timetuple().tm_yday - 1
        v["year"] = ((r.date.year + doy / DAYS_PER_YEAR - REFERENCE_YEAR) / YEAR_SCALE,)
        v["day_of_year"] = (doy / DAYS_PER_YEAR,)
    if r.time_utc is not None:
        t = r.time_utc
        v["time_of_day"] = ((t.hour * 3600 + t.minute * 60 + t.second) / SECONDS_PER_DAY,)
    if r.has_location:
        v["location"] = tuple(lonlat_to_unit_xyz(np.float64(r.lon), np.float64(r.lat)))
    if r.sensor_id is not None:
        v["sensor"] = (sensor_bucket(r.sensor_id, n_sensor_buckets),)
    if r.off_nadir_deg is not None:
        v["off_nadir"] = (r.off_nadir_deg / ZENITH_SCALE_DEG,)
    if r.view_azimuth_deg is not None:
        v["view_azimuth"] = (r.view_azimuth_deg / AZIMUTH_PERIOD_DEG,)
    if r.sun_azimuth_deg is not None:
        v["sun_azimuth"] = (r.sun_azimuth_deg / AZIMUTH_PERIOD_DEG,)
    if r.sun_elevation_deg is not None:
        v["sun_elevation"] = (r.sun_elevation_deg / ZENITH_SCALE_DEG,)
    if r.cloud_cover_pct is not None:
        v["cloud_cover"] = (r.cloud_cover_pct / CLOUD_SCALE_PCT,)
    return v


def tabular_features(
    records: Sequence[MetadataRecord], n_sensor_buckets: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per token name: ``(values (S, d), present (S,))`` with the fixed scalings of this module."""
    n = len(records)
    out = {name: (np.zeros((n, d), np.float32), np.zeros(n, bool)) for name, _, _, d in _TOKENS}
    for i, r in enumerate(records):
        for name, values in _record_values(r, n_sensor_buckets).items():
            out[name][0][i] = values
            out[name][1][i] = True
    return out


def fixed_metadata_features(records: Sequence[MetadataRecord], n_harmonics: int = 1) -> np.ndarray:
    """Hand-made (not learned) features of records: ``(S, F)`` float64.

    Per token: the scaled value (periodic kinds), sin/cos harmonics (cyclic), the unit xyz vector
    (location), and a 0/1 "present" flag; missing values are 0. The sensor id is left out (a hash
    bucket is no feature). Used by the bimodal probe when comparing methods, so every method gets
    the same metadata half.
    """
    feats = tabular_features(records, 1)
    cols = []
    for name, _, kind, _ in _TOKENS:
        values, present = feats[name]
        if kind == "category":
            continue
        if kind == "cyclic":
            h = np.arange(1, n_harmonics + 1)
            v = 2 * np.pi * values * h
            values = np.concatenate([np.sin(v), np.cos(v)], axis=1) * present[:, None]
        cols.extend([values.astype(np.float64), present[:, None].astype(np.float64)])
    return np.concatenate(cols, axis=1)


def _transformer(p: _StrictParams) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=p.width,
        nhead=p.heads,
        dim_feedforward=int(round(p.width * p.ffn_multiplier)),
        dropout=p.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=p.depth, enable_nested_tensor=False)


class TabularMetadataEncoder(nn.Module):
    """FT-Transformer-style encoder of metadata records (one token per field, CLS output)."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        p: TabularParams = _validate(TabularParams, params, "tabular")
        self.params = p
        self.token_names = [name for name, field, _, _ in _TOKENS if field in p.fields]
        tok: dict[str, nn.Module] = {}
        for name, field, kind, d in _TOKENS:
            if field not in p.fields:
                continue
            if kind == "periodic" or kind == "sphere":
                tok[name] = PeriodicEmbedding(d, p.n_frequencies, p.width, p.frequency_sigma)
            elif kind == "cyclic":
                tok[name] = CyclicEmbedding(p.n_harmonics, p.width)
            else:
                tok[name] = nn.Embedding(p.n_sensor_buckets, p.width)
        self.tokenizers = nn.ModuleDict(tok)
        n_tok = len(self.token_names)
        self.field_embedding = nn.Parameter(torch.randn(n_tok, p.width) * 0.02)
        self.missing_embedding = nn.Parameter(torch.randn(n_tok, p.width) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, p.width) * 0.02)
        self.transformer = _transformer(p)
        self.norm = nn.LayerNorm(p.width)

    @property
    def out_dim(self) -> int:
        return self.params.width

    def forward(self, records: Sequence[MetadataRecord]) -> torch.Tensor:
        """``(S, width)`` features of ``S`` records."""
        device = self.cls.device
        feats = tabular_features(records, self.params.n_sensor_buckets)
        tokens = []
        for j, name in enumerate(self.token_names):
            values, present = feats[name]
            v = torch.from_numpy(values).to(device)
            if isinstance(self.tokenizers[name], nn.Embedding):
                emb = self.tokenizers[name](v[:, 0].long())
            else:
                emb = self.tokenizers[name](v)
            mask = torch.from_numpy(present).to(device).unsqueeze(-1)
            tokens.append(
                torch.where(mask, emb, self.missing_embedding[j]) + self.field_embedding[j]
            )
        x = torch.stack(tokens, dim=1)  # (S, F, width)
        x = torch.cat([self.cls.expand(len(records), -1, -1), x], dim=1)
        return self.norm(self.transformer(x)[:, 0])


# --- text -----------------------------------------------------------------------------------------
class CharTokenizer:
    """A fixed character vocabulary: lower-case letters, digits, punctuation and specials.

    Ids: 0 ``[PAD]``, 1 ``[CLS]``, 2 ``[UNK]``, then :attr:`ALPHABET`. Text is lower-cased;
    characters outside the alphabet become ``[UNK]``.
    """

    PAD, CLS, UNK = 0, 1, 2
    ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789.,:;-+%/_()'"

    def __init__(self) -> None:
        self._index = {c: i + 3 for i, c in enumerate(self.ALPHABET)}

    @property
    def vocab_size(self) -> int:
        return len(self.ALPHABET) + 3

    def encode(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, mask)`` of shape ``(S, 1 + max_length)``; position 0 is ``[CLS]``."""
        ids = torch.full((len(texts), max_length + 1), self.PAD, dtype=torch.long)
        ids[:, 0] = self.CLS
        for i, text in enumerate(texts):
            codes = [self._index.get(c, self.UNK) for c in text.lower()[:max_length]]
            if codes:
                ids[i, 1 : 1 + len(codes)] = torch.tensor(codes, dtype=torch.long)
        return ids, ids != self.PAD

    def decode(self, ids: Sequence[int]) -> str:
        inverse = {i: c for c, i in self._index.items()}
        return "".join(inverse.get(int(i), "?") for i in ids if int(i) > self.UNK)


class TextMetadataEncoder(nn.Module):
    """A small Transformer over the record written as text (character tokens, CLS output)."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        p: TextParams = _validate(TextParams, params, "text")
        self.params = p
        self.tokenizer = CharTokenizer()
        self.embedding = nn.Embedding(self.tokenizer.vocab_size, p.width, padding_idx=0)
        self.position = nn.Parameter(torch.randn(p.max_length + 1, p.width) * 0.02)
        self.transformer = _transformer(p)
        self.norm = nn.LayerNorm(p.width)

    @property
    def out_dim(self) -> int:
        return self.params.width

    def forward(self, records: Sequence[MetadataRecord]) -> torch.Tensor:
        """``(S, width)`` features of ``S`` records (an empty record is just ``[CLS]``)."""
        texts = [metadata_to_text(r) for r in records]
        ids, mask = self.tokenizer.encode(texts, self.params.max_length)
        ids, mask = ids.to(self.position.device), mask.to(self.position.device)
        length = int(mask.sum(1).max())  # trim the padding every sample shares
        ids, mask = ids[:, :length], mask[:, :length]
        x = self.embedding(ids) + self.position[:length]
        return self.norm(self.transformer(x, src_key_padding_mask=~mask)[:, 0])


#: The built-in metadata encoders, by registry name.
METADATA_ENCODERS: Mapping[str, type[nn.Module]] = MappingProxyType(
    {"tabular": TabularMetadataEncoder, "text": TextMetadataEncoder}
)
