"""BigEarthNet label nomenclatures: the 43 CORINE Land Cover level-3 classes and the 19 classes.

Source of the 19-class nomenclature and of the 43 -> 19 table: G. Sumbul, J. Kang, T. Kreuziger,
F. Marcelino, H. Costa, P. Benevides, M. Caetano, B. Demir, "BigEarthNet-MM: A Large-Scale,
Multimodal, Multilabel Benchmark Archive for Remote Sensing Image Classification and Retrieval",
IEEE Geoscience and Remote Sensing Magazine 9(3), 174-180, 2021, doi:10.1109/MGRS.2021.3089174
(Table 2), as distributed in ``label_indices.json`` of the BigEarthNet-19 reference models
(git.tu-berlin.de/rsim/bigearthnet-models). Eleven of the 43 classes have no 19-class counterpart
(they map to nothing): road and rail networks, port areas, airports, mineral extraction sites,
dump sites, construction sites, green urban areas, sport and leisure facilities, bare rock, burnt
areas and intertidal flats.
"""

from __future__ import annotations

from collections.abc import Iterable

from atomizer.errors import DatasetError

#: The 43 CORINE labels as BigEarthNet v1 writes them (index = position).
LABELS_43: tuple[str, ...] = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

#: The 19-class nomenclature (index = position), with the 43-class indices each one merges.
NOMENCLATURE_19: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Urban fabric", (0, 1)),
    ("Industrial or commercial units", (2,)),
    ("Arable land", (11, 12, 13)),
    ("Permanent crops", (14, 15, 16, 18)),
    ("Pastures", (17,)),
    ("Complex cultivation patterns", (19,)),
    (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
        (20,),
    ),
    ("Agro-forestry areas", (21,)),
    ("Broad-leaved forest", (22,)),
    ("Coniferous forest", (23,)),
    ("Mixed forest", (24,)),
    ("Natural grassland and sparsely vegetated areas", (25, 31)),
    ("Moors, heathland and sclerophyllous vegetation", (26, 27)),
    ("Transitional woodland, shrub", (28,)),
    ("Beaches, dunes, sands", (29,)),
    ("Inland wetlands", (33, 34)),
    ("Coastal wetlands", (35, 36)),
    ("Inland waters", (38, 39)),
    ("Marine waters", (40, 41, 42)),
)

LABELS_19: tuple[str, ...] = tuple(name for name, _ in NOMENCLATURE_19)

#: 43-class name -> 19-class name (absent: no counterpart).
MAP_43_TO_19: dict[str, str] = {
    LABELS_43[old]: new for new, olds in NOMENCLATURE_19 for old in olds
}


def _lookup(names: tuple[str, ...]) -> dict[str, int]:
    return {n.lower(): i for i, n in enumerate(names)}


def indices(labels: Iterable[str], nomenclature: int) -> list[int]:
    """Class indices in the 19- or 43-class nomenclature of label names of that nomenclature."""
    table = _lookup(LABELS_19 if nomenclature == 19 else LABELS_43)
    out = []
    for name in labels:
        key = name.strip().lower()
        if key not in table:
            raise DatasetError(
                f"unknown BigEarthNet {nomenclature}-class label {name!r}; see "
                "atomizer.data.bigearthnet_labels"
            )
        out.append(table[key])
    return sorted(set(out))


def to_19(labels_43: Iterable[str]) -> list[str]:
    """The 19-class names of a patch's 43-class labels (sorted by class index, no duplicates)."""
    table = {k.lower(): v for k, v in MAP_43_TO_19.items()}
    known = _lookup(LABELS_43)
    out: set[str] = set()
    for name in labels_43:
        key = name.strip().lower()
        if key not in known:
            raise DatasetError(f"unknown BigEarthNet 43-class label {name!r}")
        if key in table:
            out.add(table[key])
    return sorted(out, key=LABELS_19.index)
