"""Indian Pines (AVIRIS, 12 June 1992): patch classification with spatially disjoint splits.

Data: the 145 x 145 x 200 "corrected" cube and its 16-class ground truth, read from the ``.npy``
files inside the ``tensorly==0.10.0`` wheel (``tensorly/datasets/data/``) without importing
tensorly (``pip install 'atomizer[data]'``), or from a folder holding the same two files.
Cite Baumgardner, Biehl & Landgrebe (2015), doi:10.4231/R7RX991C (CC BY 3.0). Band table: the
``aviris-indian-pines-1992-corrected`` sensor spec (200 bands, 20 m).

Values: the cube holds at-sensor radiance as scaled DN. By default each channel is divided by its
scene-wide :data:`BRIGHT_REFERENCE_PERCENTILE`-th percentile ("bright reference" relative
reflectance, a flat-field-style correction: the solar spectrum and atmospheric transmission
largely cancel, and values fall in 0..~1 like reflectance). ``normalization="dn"`` keeps radiance
shape and only scales by :data:`DN_SCALE`.

Patches: one per labelled pixel (every ``stride_px``-th row and column); the label is the class of
that centre pixel. A patch of ``size_px`` pixels at ``gsd_m`` covers ``size_px * gsd_m`` metres
centred on the pixel (within half a source pixel when the GSD is an integer multiple of 20 m, so
that aggregation is an exact block mean). Splits are blocks of the scene
(:func:`~atomizer.data.splits.block_regions`); a patch is kept only when every source pixel its
footprint touches lies in its split's region, so no pixel of a test patch lies in any training
patch. Larger footprints therefore keep fewer patches.

With a modality, the sensor is simulated once for the whole scene (cached on the
:class:`IndianPinesScene`), and each patch is an area-weighted window of that simulated cube.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.atoms.atomset import BAND_DTYPE, AtomSet, SceneMeta
from atomizer.data.base import SPLITS, AtomDataset, HyperspectralSample, check_split
from atomizer.data.modality import Modality
from atomizer.data.splits import DEFAULT_FRACTIONS, RegionIndex, block_regions
from atomizer.atoms.atomset import pixel_centres_m
from atomizer.errors import DatasetError, ModalityError
from atomizer.plugins.host import sensor_spec
from atomizer.sensors.spec import Band, SensorSpec
from atomizer.simulate.api import (
    Simulator,
    SimulatorCache,
    atoms_from_planes,
)
from atomizer.simulate.spatial import GSD_RTOL, check_not_finer, overlap_weights
from atomizer.simulate.spectral import MIN_RESPONSE_COVERAGE, SpectralTable, integrate

CUBE_FILE = "Indian_pines_corrected.npy"
GROUND_TRUTH_FILE = "Indian_pines_gt.npy"
SPEC_ID = "aviris-indian-pines-1992-corrected"
SHAPE = (145, 145, 200)
ACQUISITION_DATE = dt.datetime(1992, 6, 12)
#: Per-channel percentile used as the bright reference of the default normalisation.
BRIGHT_REFERENCE_PERCENTILE = 99.0
#: DN -> value factor of ``normalization="dn"``.
DN_SCALE = 1e-4
NORMALIZATIONS = ("bright_reference", "dn")
#: The 16 classes of the ground truth (1-based in the file; 0 = unlabelled).
CLASS_NAMES = (
    "Alfalfa",
    "Corn-notill",
    "Corn-mintill",
    "Corn",
    "Grass-pasture",
    "Grass-trees",
    "Grass-pasture-mowed",
    "Hay-windrowed",
    "Oats",
    "Soybean-notill",
    "Soybean-mintill",
    "Soybean-clean",
    "Wheat",
    "Woods",
    "Buildings-Grass-Trees-Drives",
    "Stone-Steel-Towers",
)
DEFAULT_PATCH_SIZE_PX = 9


def tensorly_data_dir() -> Path:
    """The folder of tensorly's bundled data files, located without importing tensorly."""
    spec = importlib.util.find_spec("tensorly")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "Indian Pines is read from the tensorly==0.10.0 wheel, which is not installed; "
            "pip install 'atomizer[data]' (or pass root= a folder with "
            f"{CUBE_FILE} and {GROUND_TRUTH_FILE})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def load_arrays(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The raw ``(145, 145, 200)`` uint16 cube (C-ordered) and ``(145, 145)`` ground truth."""
    folder = Path(root).expanduser() if root is not None else tensorly_data_dir()
    paths = [folder / CUBE_FILE, folder / GROUND_TRUTH_FILE]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"Indian Pines not found: {', '.join(missing)} missing in {folder}; check the path "
            "(or install tensorly==0.10.0, which ships them)"
        )
    try:
        cube = np.ascontiguousarray(np.load(paths[0], allow_pickle=False))
        gt = np.ascontiguousarray(np.load(paths[1], allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read Indian Pines from {folder}: {exc}") from None
    if cube.shape != SHAPE or gt.shape != SHAPE[:2]:
        raise DatasetError(
            f"{folder}: expected a {SHAPE} cube and a {SHAPE[:2]} ground truth, got "
            f"{cube.shape} and {gt.shape}"
        )
    return cube, gt


def normalize(cube: np.ndarray, normalization: str) -> np.ndarray:
    """Radiance DN -> reflectance-like float32 values (see the module docstring)."""
    if normalization == "bright_reference":
        flat = cube.reshape(-1, cube.shape[-1]).astype(np.float32)
        reference = np.percentile(flat, BRIGHT_REFERENCE_PERCENTILE, axis=0).astype(np.float32)
        return (cube.astype(np.float32) / np.maximum(reference, 1.0)).astype(np.float32)
    if normalization == "dn":
        return (cube.astype(np.float32) * np.float32(DN_SCALE)).astype(np.float32)
    raise DatasetError(
        f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}"
    )


class IndianPinesScene:
    """The whole scene, loaded once and shared by the splits; caches simulated cubes per sensor."""

    def __init__(
        self, cube: np.ndarray, class_map: np.ndarray, spec: SensorSpec, *, normalization: str
    ) -> None:
        if spec.n_bands != cube.shape[-1]:
            raise DatasetError(
                f"sensor {spec.id!r} has {spec.n_bands} bands but the cube has {cube.shape[-1]} "
                f"channels; use {SPEC_ID}"
            )
        self.cube = cube
        self.class_map = class_map.astype(np.int64)
        self.spec = spec
        self.table = SpectralTable.from_spec(spec)
        self.normalization = normalization
        self.simulators = SimulatorCache()
        self._simulated: dict[int, np.ndarray] = {}
        self._regions: dict[tuple, np.ndarray] = {}

    @classmethod
    def load(
        cls,
        root: str | Path | None = None,
        *,
        spec: SensorSpec | str | None = None,
        host: Any = None,
        normalization: str = "bright_reference",
    ) -> IndianPinesScene:
        raw, gt = load_arrays(root)
        return cls(
            normalize(raw, normalization),
            gt,
            sensor_spec(spec or SPEC_ID, host),
            normalization=normalization,
        )

    @property
    def gsd_m(self) -> float:
        return float(self.table.gsd_m)

    def simulator(
        self,
        modality: Modality,
        *,
        host: Any = None,
        skip_unsupported: bool | None = None,
        min_coverage: float = MIN_RESPONSE_COVERAGE,
    ) -> Simulator:
        target = self.simulators.sensor(modality.sensor, host)
        names = modality.band_names(target) if modality.bands is not None else None
        skip = (modality.bands is None) if skip_unsupported is None else skip_unsupported
        return self.simulators.get(
            self.table,
            target,
            bands=names,
            gsd_m=modality.gsd_m,
            skip_unsupported=skip,
            min_coverage=min_coverage,
        )

    def simulated_cube(self, simulator: Simulator) -> np.ndarray:
        """The scene through ``simulator``'s bands at the source GSD, ``(H, W, C_t)``, cached."""
        key = id(simulator)
        if key not in self._simulated:
            self._simulated[key] = integrate(self.cube, simulator.weights)
        return self._simulated[key]

    def regions(
        self,
        *,
        blocks: tuple[int, int] = (4, 4),
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        margin_px: int = DEFAULT_PATCH_SIZE_PX // 2,
        seed: int = 0,
    ) -> np.ndarray:
        """The split-region map (0 train, 1 validation, 2 test) for these settings, cached."""
        key = (tuple(blocks), tuple(float(f) for f in fractions), int(margin_px), int(seed))
        if key not in self._regions:
            regions = block_regions(
                self.class_map.shape,
                blocks=tuple(blocks),
                fractions=fractions,
                seed=seed,
                class_map=self.class_map,
                margin_px=margin_px,
            )
            regions.setflags(write=False)
            self._regions[key] = regions
        return self._regions[key]

    def scene_meta(self, sensor_id: str, row: int, col: int) -> SceneMeta:
        return SceneMeta(
            sensor_id=sensor_id,
            datetime=ACQUISITION_DATE,
            source_id=f"indian-pines:r{row}c{col}",
            extra={"row": int(row), "col": int(col)},
        )


class IndianPines(AtomDataset):
    """Indian Pines patches of one split: ``dataset[i] -> (AtomSet, class index)``.

    :param split: ``train``, ``validation`` or ``test``.
    :param modality: a :class:`Modality` to simulate (default: the 200 AVIRIS channels at 20 m).
    :param patch_size_px: patch side when the modality has no ``size_px``.
    :param stride_px: keep centres on every ``stride_px``-th row and column.
    :param blocks, fractions, split_margin_px, seed: the spatial split. The regions depend on
        these only (never on the modality), so every split and modality built with the same values
        shares them; ``split_margin_px`` is the patch half-size the region choice optimises for.
    :param scene: a loaded :class:`IndianPinesScene` to share between splits and modalities.
    """

    task = "multiclass"
    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        *,
        modality: Modality | None = None,
        patch_size_px: int = DEFAULT_PATCH_SIZE_PX,
        stride_px: int = 1,
        blocks: tuple[int, int] = (4, 4),
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        split_margin_px: int = DEFAULT_PATCH_SIZE_PX // 2,
        seed: int = 0,
        scene: IndianPinesScene | None = None,
        root: str | Path | None = None,
        spec: SensorSpec | str | None = None,
        host: Any = None,
        normalization: str = "bright_reference",
        skip_unsupported: bool | None = None,
    ) -> None:
        super().__init__(modality=modality, seed=seed, host=host)
        self.split = check_split(split, allow_none=False)
        if patch_size_px < 1 or stride_px < 1:
            raise DatasetError("patch_size_px and stride_px must be at least 1")
        if seed < 0:
            raise DatasetError(f"seed must be >= 0, got {seed}")
        self.scene = scene or IndianPinesScene.load(
            root, spec=spec, host=host, normalization=normalization
        )
        src_gsd = self.scene.gsd_m
        if modality is None:
            self.simulator = None
            self.bands: tuple[Band, ...] = tuple(self.scene.spec.bands)
            gsd = src_gsd
        else:
            self.simulator = self.scene.simulator(
                modality, host=host, skip_unsupported=skip_unsupported
            )
            self.bands = self.simulator.bands
            gsds = {b.gsd_m for b in self.bands}
            if len(gsds) != 1:
                raise ModalityError(
                    f"modality {modality.label}: bands {', '.join(self.simulator.band_names)} have "
                    f"GSDs {sorted(gsds)}; give gsd_m to put them on one patch grid"
                )
            gsd = gsds.pop()
        self.gsd_m = float(gsd)
        self.bands = tuple(b.model_copy(update={"gsd_m": self.gsd_m}) for b in self.bands)
        self.size_px = int(modality.size_px if modality and modality.size_px else patch_size_px)
        factor = check_not_finer(src_gsd, self.gsd_m, "patch")
        start0 = 0.5 - self.size_px * factor / 2.0
        if abs(factor - round(factor)) <= GSD_RTOL:
            start0 = float(np.floor(start0 + 0.5))
        self._first, self._weights = overlap_weights(start0, factor, self.size_px)
        self._weights_f32 = self._weights.astype(np.float32)
        self._identity = self._weights.shape[0] == self._weights.shape[1] and np.allclose(
            self._weights, np.eye(self.size_px)
        )
        self.regions = self.scene.regions(
            blocks=blocks, fractions=fractions, margin_px=split_margin_px, seed=seed
        )
        self.centres = self._centres(stride_px)
        self._grid = _patch_grid(len(self.bands), self.size_px, self.gsd_m)

    def _centres(self, stride_px: int) -> np.ndarray:
        rows, cols = np.nonzero(self.scene.class_map > 0)
        keep = (rows % stride_px == 0) & (cols % stride_px == 0)
        rows, cols = rows[keep], cols[keep]
        n = self._weights.shape[1]
        r0, c0 = rows + self._first, cols + self._first
        inside = RegionIndex(self.regions).inside(SPLITS.index(self.split), r0, r0 + n, c0, c0 + n)
        return np.stack([rows[inside], cols[inside]], axis=1)

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    def window(self, index: int) -> tuple[int, int, int, int]:
        """Source-pixel bounds ``(r0, r1, c0, c1)`` of every pixel the patch's footprint touches."""
        r, c = self.centres[index]
        n = self._weights.shape[1]
        return (
            int(r + self._first),
            int(r + self._first + n),
            int(c + self._first),
            int(c + self._first + n),
        )

    def label(self, index: int) -> int:
        r, c = self.centres[index]
        return int(self.scene.class_map[r, c]) - 1

    def labels(self) -> np.ndarray:
        return self.scene.class_map[self.centres[:, 0], self.centres[:, 1]] - 1

    def source(self, index: int) -> HyperspectralSample:
        """The raw AVIRIS window (all 200 channels at 20 m) under the patch's footprint."""
        r0, r1, c0, c1 = self.window(index)
        r, c = self.centres[index]
        return HyperspectralSample(
            self.scene.cube[r0:r1, c0:c1],
            self.scene.table,
            self.scene.scene_meta(self.scene.spec.id, r, c),
            spec=self.scene.spec,
        )

    def patch(self, index: int) -> np.ndarray:
        """The ``(C, size, size)`` patch of item ``index`` in this dataset's bands and GSD."""
        cube = (
            self.scene.cube if self.simulator is None else self.scene.simulated_cube(self.simulator)
        )
        r0, r1, c0, c1 = self.window(index)
        win = cube[r0:r1, c0:c1]
        if self._identity:
            return np.ascontiguousarray(np.moveaxis(win, -1, 0))
        w = self._weights_f32
        rows = np.tensordot(w, win, axes=(1, 0))  # (a, j, c)
        both = np.tensordot(w, rows, axes=(1, 1))  # (b, a, c)
        return np.ascontiguousarray(both.transpose(2, 1, 0))

    def atoms(self, index: int) -> AtomSet:
        r, c = self.centres[index]
        sensor = self.scene.spec.id if self.simulator is None else self.simulator.target.id
        meta = self.scene.scene_meta(sensor, r, c)
        if self.simulator is not None:
            meta = self.simulator.scene(meta)
        patch = self.patch(index)
        if not np.isfinite(patch).all():
            return atoms_from_planes(list(patch), self.bands, meta)
        band, x, y = self._grid  # read-only, shared by every item of this dataset
        return AtomSet(value=patch.reshape(-1), band=band, x=x, y=y, bands=self.bands, scene=meta)


def _patch_grid(n_bands: int, size_px: int, gsd_m: float) -> tuple[np.ndarray, ...]:
    """Band index, x and y of every atom of a full ``(n_bands, size, size)`` patch, read-only."""
    xs, ys = pixel_centres_m(size_px, size_px, gsd_m)
    n = size_px * size_px
    band = np.repeat(np.arange(n_bands, dtype=BAND_DTYPE), n)
    x = np.tile(np.tile(xs, size_px), n_bands)
    y = np.tile(np.repeat(ys, size_px), n_bands)
    for a in (band, x, y):
        a.setflags(write=False)
    return band, x, y
