"""Feature retrieval (the "index" of RVC and so-vits-svc 4.1): each source frame's content features
are blended with those of the target singer's nearest training frames, so less of the source
singer's timbre leaks through the content encoder.

Building (``cantor index EXP``, and after stage 2): for every singer of the experiment's training
split (``<processed_dir>/<dataset>/train.json``) and every content feature the model uses
(``<dataset>/<feature>/<Uid>.npy``, (T, D) float32 on the mel frames), the frames are gathered; a
singer with more than :data:`MAX_VECTORS` frames is reduced to that many k-means centroids
(faiss, :data:`KMEANS_ITERATIONS` iterations, seeded with ``train.seed``; RVC reduces above 200 k
frames to 10 k centroids, so-vits-svc 4.1 always clusters). Each set becomes an exact L2 index
(``faiss.IndexFlatL2``), serialised to ``EXP/index/<singer>.<feature>.faiss`` beside the
checkpoints, with ``EXP/index/manifest.json``: the format, the content extractors' identity
(:func:`processors.content.stage.content_settings`: weights path, Whisper layer / ContentVec
final_proj), the experiment's singer table and, per file, its SHA-256, frames and vectors. An index
whose extractor identity differs from the model's (stale), whose singer table is another
experiment's (foreign) or whose file does not match its checksum is refused in one line, never used.

Blending (:meth:`RetrievalIndex.retrieve`, :func:`blend`), per frame x (D,) of a content feature:
the index returns the ``k`` (``inference.index_k``, 8) nearest stored vectors y_i with faiss's
squared distances s_i = ||x - y_i||^2; as in RVC (``infer/vc/pipeline.py``) they are weighted by
w_i = 1 / s_i^2, normalised to sum to 1 (s_i floored at :data:`MIN_SQUARED_DISTANCE`, so an exact
match dominates instead of dividing by zero), and r = sum_i w_i y_i. The model then sees
index_rate * r + (1 - index_rate) * x, and on unvoiced frames (F0 = 0), with RVC's ``protect`` p
< 0.5, p * that + (1 - p) * x (consonants and breaths keep more of the source; p = 0.5 is RVC's
"off"). A singer mix retrieves from each singer's index and weighs the results by the mix.

Memory and time: README.md, "Feature retrieval".
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from utils.io import atomic_write, load_json, save_json

log = logging.getLogger(__name__)

FORMAT = "cantor-retrieval-index/1"
INDEX_DIR = "index"
MANIFEST = "manifest.json"
# A singer with more frames than this is reduced to this many k-means centroids. At 10 k vectors an
# exact search costs about 0.3-0.5 ms per frame on one core (README.md, "Feature retrieval"), and
# the demo's singers (1.4-2.3 min each, 7-12 k frames) stay exact or nearly so.
MAX_VECTORS = 10_000
KMEANS_ITERATIONS = 20
# Floor of the squared distance before 1 / s^2 (an exact match would divide by zero).
MIN_SQUARED_DISTANCE = 1e-8
# Query rows searched at once: the gathered neighbours are (rows, k, D) float32, 64 MB for
# 2048 x 8 x 1024 (a whole song at once would be about 1 GB for 5 minutes).
SEARCH_ROWS = 2048
# RVC switches protection off at protect >= 0.5.
PROTECT_OFF = 0.5


class RetrievalIndexError(ValueError):
    """A missing, stale, foreign or corrupted index (one line naming the file)."""


def index_folder(checkpoint_file: str | Path) -> Path:
    """The index folder of the experiment holding ``checkpoint_file``: ``EXP/index`` for
    ``EXP/checkpoint/step-*.pt`` or ``EXP/export/step-*.pt``, else ``index`` beside the file."""
    from models.base.checkpoint import CHECKPOINT_DIR, EXPORT_DIR
    file = Path(checkpoint_file)
    exp = file.parent.parent if file.parent.name in (CHECKPOINT_DIR, EXPORT_DIR) else file.parent
    return exp / INDEX_DIR


def reduce_vectors(features: np.ndarray, max_vectors: int = MAX_VECTORS, seed: int = 0) -> np.ndarray:
    """``features`` (N, D) float32 as they are when N <= ``max_vectors``, else ``max_vectors``
    k-means centroids (faiss.Kmeans, :data:`KMEANS_ITERATIONS` iterations, ``seed``):
    (min(N, max_vectors), D) float32."""
    import faiss
    features = np.ascontiguousarray(features, dtype=np.float32)
    if len(features) <= max_vectors:
        return features
    kmeans = faiss.Kmeans(features.shape[1], max_vectors, niter=KMEANS_ITERATIONS, seed=seed,
                          verbose=False)
    kmeans.train(features)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def flat_index(vectors: np.ndarray):
    """An exact L2 faiss index (IndexFlatL2) holding ``vectors`` (N, D) float32."""
    import faiss
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def neighbour_average(index, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """RVC's retrieval (module docstring): for each row of ``queries`` (T, D), the average of its
    ``k`` nearest rows of ``vectors`` (the (N, D) float32 contents of ``index``) weighted by
    1 / s^2 of their squared distances s, normalised. Returns (T, D) float32; k is capped at N."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out = np.empty_like(queries)
    for start in range(0, len(queries), SEARCH_ROWS):
        rows = slice(start, start + SEARCH_ROWS)
        squared, ids = index.search(queries[rows], min(k, index.ntotal))
        weights = 1.0 / np.square(np.maximum(squared, MIN_SQUARED_DISTANCE))
        weights /= weights.sum(axis=1, keepdims=True)
        out[rows] = np.einsum("tk,tkd->td", weights, vectors[ids])
    return out


def blend(source: np.ndarray, retrieved: np.ndarray, unvoiced: np.ndarray, index_rate: float,
          protect: float) -> np.ndarray:
    """index_rate * retrieved + (1 - index_rate) * source, and on the ``unvoiced`` frames, when
    ``protect`` < 0.5, protect * that + (1 - protect) * source (RVC's protect); computed as
    source + w (retrieved - source) with w = index_rate (unvoiced: index_rate * protect), so that
    index_rate 0 returns ``source`` bit for bit.

    Args: source, retrieved: (T, D) float32; unvoiced: (T,) bool. Returns (T, D) float32."""
    w = np.full(len(source), index_rate, dtype=np.float32)
    if protect < PROTECT_OFF:
        w[unvoiced] *= np.float32(protect)
    return (source + w[:, None] * (retrieved - source)).astype(np.float32)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_name(singer: str, feature: str) -> str:
    return f"{singer}.{feature}.faiss"


def training_features(cfg, singers: Mapping[str, int], processed_dir: Path) -> dict[str, dict[str, list[Path]]]:
    """{singer: {feature: [npy files]}} of the training split of every dataset of ``cfg``
    (``<processed_dir>/<dataset>/train.json``; singer = "<Dataset>_<Singer>").

    Raises: RetrievalIndexError for a missing train.json or feature file, cached features whose
        recorded settings (content_settings.json) are not the model's, or a singer absent from
        ``singers``."""
    from processors.content.stage import SETTINGS_FILE, changed_features, content_settings

    found: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for dataset in cfg.dataset:
        stale = changed_features(processed_dir / dataset, content_settings(cfg))
        if stale:
            raise RetrievalIndexError(f"{processed_dir / dataset / SETTINGS_FILE}: the cached "
                                      f"{', '.join(stale)} features were computed with other "
                                      f"settings than the model's; rerun stage 1 first")
        split = processed_dir / dataset / "train.json"
        try:
            entries = load_json(split)
        except (OSError, ValueError) as e:
            raise RetrievalIndexError(f"{split}: cannot read the training split ({e}); give "
                                      f"--processed-dir where stage 1 wrote it") from None
        for e in entries:
            singer = f"{e['Dataset']}_{e['Singer']}"
            if singer not in singers:
                raise RetrievalIndexError(f"{split}: singer {singer!r} is not in the model's "
                                          f"singer table")
            for feature in cfg.preprocess.content_features:
                path = processed_dir / dataset / feature / f"{e['Uid']}.npy"
                if not path.is_file():
                    raise RetrievalIndexError(f"{path}: missing content feature file (run stage 1)")
                found[singer][feature].append(path)
    return found


def build_index(checkpoint: dict, folder: Path, processed_dir: Path | None = None,
                max_vectors: int = MAX_VECTORS) -> dict:
    """Build and write every singer's index of a loaded experiment ``checkpoint`` into ``folder``
    (module docstring), atomically file by file, the manifest last.

    Args: processed_dir: where stage 1 wrote the data (default: the checkpoint config's
        ``preprocess.processed_dir``, from the project root).
    Returns: the manifest written.
    Raises: RetrievalIndexError as :func:`training_features`, or for a feature file of another
        width than the model's; utils.io.WriteError.
    """
    import faiss

    from processors.content.stage import content_settings
    from utils.config import config_from_dict
    from utils.paths import resolve_path

    cfg = config_from_dict(checkpoint["config"])
    root = Path(processed_dir) if processed_dir is not None else resolve_path(cfg.preprocess.processed_dir)
    files = training_features(cfg, checkpoint["singers"], root)
    dims = {n: getattr(cfg.model.condition_encoder, f"{n}_dim") for n in cfg.preprocess.content_features}
    entries: dict[str, dict[str, dict]] = {}
    for singer in sorted(files):
        entries[singer] = {}
        for feature, paths in files[singer].items():
            parts = [np.load(p) for p in paths]
            bad = next((p for p, a in zip(paths, parts) if a.ndim != 2 or a.shape[1] != dims[feature]), None)
            if bad is not None:
                raise RetrievalIndexError(f"{bad}: expected (T, {dims[feature]}) {feature} features")
            frames = np.concatenate(parts).astype(np.float32)
            vectors = reduce_vectors(frames, max_vectors, cfg.train.seed)
            data = faiss.serialize_index(flat_index(vectors)).tobytes()
            name = _file_name(singer, feature)
            atomic_write(folder / name, lambda tmp: tmp.write_bytes(data))
            entries[singer][feature] = {"file": name, "sha256": _sha256(data), "frames": len(frames),
                                        "vectors": len(vectors), "dim": int(frames.shape[1])}
            log.info("index %s %s: %d frames -> %d vectors", singer, feature, len(frames), len(vectors))
    manifest = {"format": FORMAT, "content_settings": content_settings(cfg),
                "singers": dict(checkpoint["singers"]), "max_vectors": max_vectors,
                "entries": entries}
    save_json(folder / MANIFEST, manifest)
    return manifest


@dataclass
class _SingerFeature:
    index: object
    vectors: np.ndarray


class RetrievalIndex:
    """The checked, loaded indexes of an experiment (:meth:`load`); :meth:`retrieve` searches them.

    Attributes: ``folder``, ``singers`` (those with an index).
    """

    def __init__(self, folder: Path, tables: dict[str, dict[str, _SingerFeature]]):
        self.folder = folder
        self.tables = tables
        self.singers = set(tables)

    @classmethod
    def load(cls, folder: str | Path, settings: dict, singers: Mapping[str, int]) -> "RetrievalIndex":
        """Read and check ``folder``'s manifest and every index file.

        Args: settings: the model's content extractor identity (content_settings of its config);
            singers: its singer table.
        Raises: RetrievalIndexError (one line naming the file) for a missing or unreadable index,
            another format, a stale extractor identity, a foreign singer table or a checksum
            mismatch.
        """
        import faiss

        folder = Path(folder)
        path = folder / MANIFEST
        rebuild = f"rebuild it with `cantor index {folder.parent}`"
        if not path.is_file():
            raise RetrievalIndexError(f"{path}: no feature-retrieval index for this model; build it "
                                      f"with `cantor index {folder.parent}` or set index_rate 0")
        try:
            manifest = load_json(path)
        except (OSError, ValueError) as e:
            raise RetrievalIndexError(f"{path}: unreadable index manifest ({e}); {rebuild}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise RetrievalIndexError(f"{path}: not a {FORMAT} manifest; {rebuild}")
        if manifest.get("content_settings") != settings:
            raise RetrievalIndexError(f"{path}: stale index, built with content features "
                                      f"{manifest.get('content_settings')} but the model uses "
                                      f"{settings}; {rebuild}")
        if manifest.get("singers") != dict(singers):
            raise RetrievalIndexError(f"{path}: foreign index, built for another singer table "
                                      f"({', '.join(sorted(manifest.get('singers') or {}))}); {rebuild}")
        tables: dict[str, dict[str, _SingerFeature]] = {}
        for singer, features in manifest["entries"].items():
            if set(features) != set(settings):
                raise RetrievalIndexError(f"{path}: {singer} has indexes of {sorted(features)}, the "
                                          f"model uses {sorted(settings)}; {rebuild}")
            tables[singer] = {}
            for feature, entry in features.items():
                file = folder / entry["file"]
                try:
                    data = file.read_bytes()
                except OSError as e:
                    raise RetrievalIndexError(f"{file}: cannot read the index ({e.strerror or e}); "
                                              f"{rebuild}") from None
                if _sha256(data) != entry["sha256"]:
                    raise RetrievalIndexError(f"{file}: checksum mismatch (corrupted or replaced); "
                                              f"{rebuild}")
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
                tables[singer][feature] = _SingerFeature(index, index.reconstruct_n(0, index.ntotal))
        return cls(folder, tables)

    def retrieve(self, singer: str, feature: str, queries: np.ndarray, k: int) -> np.ndarray:
        """:func:`neighbour_average` of ``queries`` (T, D) in ``singer``'s index of ``feature``:
        (T, D) float32. Raises KeyError for a singer without an index."""
        table = self.tables[singer][feature]
        return neighbour_average(table.index, table.vectors, queries, k)
