"""The versioned model artifact that training writes and the server loads.

One ``.npz`` file (no pickles) holds the factors, the id maps, the precomputed top-N tables and a
JSON metadata block (data range, counts, parameters, offline scores). It is written to a temporary
file, fsynced and renamed, so a reader never sees half a model; a corrupt or incompatible file is
refused with ``ArtifactError`` and the caller keeps its previous model.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "adserve-recs-model"
VERSION = 1


class ArtifactError(ValueError):
    pass


@dataclass
class ModelArtifact:
    user_ids: np.ndarray          # str [U]
    item_ids: np.ndarray          # str [I]
    user_factors: np.ndarray      # float32 [U, k]
    item_factors: np.ndarray      # float32 [I, k]
    user_top: np.ndarray          # int32 [U, N], -1 pads rows with fewer candidates
    item_neighbors: np.ndarray    # int32 [I, N], -1 pads
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        meta = {"format": FORMAT, "version": VERSION, **self.meta}
        with open(tmp, "wb") as f:
            np.savez(f, user_ids=self.user_ids, item_ids=self.item_ids,
                     user_factors=self.user_factors, item_factors=self.item_factors,
                     user_top=self.user_top, item_neighbors=self.item_neighbors,
                     meta=np.array(json.dumps(meta)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "ModelArtifact":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(f"{path}: not a readable model artifact ({exc})") from exc
        required = {"user_ids", "item_ids", "user_factors", "item_factors", "user_top",
                    "item_neighbors", "meta"}
        if missing := required - arrays.keys():
            raise ArtifactError(f"{path}: missing {', '.join(sorted(missing))}")
        try:
            meta = json.loads(str(arrays.pop("meta")))
        except ValueError as exc:
            raise ArtifactError(f"{path}: unreadable metadata") from exc
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ArtifactError(f"{path}: format {meta.get('format')} v{meta.get('version')} is not "
                                f"{FORMAT} v{VERSION}")
        artifact = cls(meta=meta, **arrays)
        artifact._check(path)
        return artifact

    def _check(self, path) -> None:
        users, items = len(self.user_ids), len(self.item_ids)
        shapes_ok = (self.user_factors.ndim == 2 and self.item_factors.ndim == 2
                     and self.user_factors.shape[0] == users == self.user_top.shape[0]
                     and self.item_factors.shape[0] == items == self.item_neighbors.shape[0]
                     and self.user_factors.shape[1] == self.item_factors.shape[1])
        if not shapes_ok:
            raise ArtifactError(f"{path}: array shapes do not agree")
        if not (np.isfinite(self.user_factors).all() and np.isfinite(self.item_factors).all()):
            raise ArtifactError(f"{path}: factors hold NaN or infinity")
        for table in (self.user_top, self.item_neighbors):
            if table.size and (table.min() < -1 or table.max() >= items):
                raise ArtifactError(f"{path}: top-N table points outside the item list")
