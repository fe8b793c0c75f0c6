"""`DatasetCollection`: a shuffled, sharded zarr collection in annbatch's format."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import warnings
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _native
from ._progress import Progress

logger = logging.getLogger("annbatch_rs")

PathLike = Union[str, "os.PathLike[str]"]


def _is_url(path: str) -> bool:
    """Whether ``path`` names an object store (``s3://…``, ``https://…``) rather than a path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://.", path) is not None


def _path_of(adata) -> str:
    """A path for an input: a path, a zarr group on disk, or an AnnData backed by a file."""
    if isinstance(adata, (str, os.PathLike)):
        return os.fspath(adata)
    store = getattr(adata, "store", None)  # zarr.Group
    root = getattr(store, "root", None) or getattr(store, "path", None)
    if root is not None:
        sub = getattr(adata, "path", "") or ""
        return os.path.join(os.fspath(root), sub)
    filename = getattr(adata, "filename", None)  # backed AnnData, h5py.File
    if filename is None:
        filename = getattr(getattr(adata, "file", None), "filename", None)  # h5py.Group
    if filename is not None:
        return os.fspath(filename)
    raise TypeError(
        f"cannot read {type(adata).__name__}: pass a path, a zarr group on disk or a backed "
        "AnnData (in-memory objects: write them with anndata first)"
    )


class DatasetCollection:
    """A collection of ``dataset_N`` AnnData groups (annbatch's format), shuffled and sharded.

    Parameters
    ----------
    group
        The collection: a path (``.zarr`` recommended; it need not exist yet), a zarr group
        on disk, or a URL in object storage (``s3://bucket/prefix/c.zarr``, ``https://…`` to
        read), reached with the AWS environment and ``ANNBATCH_REMOTE_*`` (README, "Training
        from object storage").
    mode
        annbatch's modes: ``"a"`` (read and add; the default), ``"r+"`` (read and add; the
        collection must exist) or ``"r"`` (read only: `add_adatas` is refused).
    is_collection_h5ad
        annbatch can write a directory of ``.h5ad`` datasets; annbatch_rs reads and writes
        zarr collections only (``NotImplementedError``).
    """

    def __init__(self, group: Any, *, mode: str = "a", is_collection_h5ad: bool = False):
        if is_collection_h5ad:
            raise NotImplementedError(
                "is_collection_h5ad=True: annbatch_rs writes zarr collections only; drop the "
                "argument (anndata reads zarr as well, and the loader reads .h5ad files as they "
                "are: Loader.add_adatas)")
        if mode not in ("a", "r", "r+"):
            raise ValueError(f"mode={mode!r}: expected 'a', 'r' or 'r+'")
        if not isinstance(group, (str, os.PathLike)) and not hasattr(group, "store"):
            raise TypeError("Group must either be a zarr group or a path")
        self.path = os.fspath(_path_of(group))
        self.mode = mode
        if mode != "a" and not (self._opened() is not None if _is_url(self.path)
                                else os.path.exists(self.path)):
            raise FileNotFoundError(f"no collection at {self.path} (mode={mode!r})")
        if isinstance(group, (str, os.PathLike)) and not self.path.rstrip("/").endswith(".zarr"):
            warnings.warn(
                "It is highly recommended to make your collections have the `.zarr` suffix, "
                f"got: {self.path}.", stacklevel=2)

    @classmethod
    def _at(cls, path: str) -> "DatasetCollection":
        """The collection at ``path`` for reading, without the constructor's checks."""
        self = cls.__new__(cls)
        self.path, self.mode = os.fspath(path), "r"
        return self

    def _opened(self) -> Any:
        """The collection at this URL, opened natively; None when nothing is there yet."""
        try:
            return _native.Collection(self.path)
        except FileNotFoundError:
            return None

    def _remote_collection(self) -> Any:
        """The annbatch collection at this URL, opened once; None when there is none (nothing,
        another group, or no datasets), as ``is_empty`` says."""
        opened = self._opened()
        if opened is None or not opened.is_preshuffled or not opened.dataset_names():
            return None
        return opened

    def _attributes(self) -> Dict[str, Any]:
        try:
            with open(os.path.join(self.path, "zarr.json")) as f:
                return json.load(f).get("attributes", {})
        except (OSError, ValueError):  # no group, a file, unreadable metadata
            return {}

    @property
    def _dataset_keys(self) -> List[str]:
        if _is_url(self.path):
            opened = self._opened()
            return [] if opened is None else list(opened.dataset_names())
        if not os.path.isdir(self.path):
            return []
        keys = [k for k in os.listdir(self.path) if re.fullmatch(r"dataset_[0-9]+", k)
                and os.path.isfile(os.path.join(self.path, k, "zarr.json"))]
        return sorted(keys, key=lambda k: int(k.split("_")[1]))

    @property
    def is_empty(self) -> bool:
        """Whether there is no collection here yet: no group, a group without annbatch's
        ``annbatch-preshuffled`` encoding, or one without datasets (as annbatch)."""
        if _is_url(self.path):  # one open: each is a round trip per metadata document
            return self._remote_collection() is None
        encoding = self._attributes().get("encoding-type")
        return encoding != "annbatch-preshuffled" or not self._dataset_keys

    def __iter__(self) -> Iterator[Any]:
        """The dataset groups (``zarr.Group``, in order), as annbatch yields them: writable
        unless the collection was opened with ``mode="r"``."""
        import zarr

        if _is_url(self.path):
            raise NotImplementedError(
                f"{self.path}: zarr groups of a collection in object storage need zarr's "
                "fsspec stores (s3fs); annbatch_rs reads it with Loader.use_collection and "
                "DatasetCollection.obs()")
        # Writable unless the collection was opened read-only (annbatch hands out its groups).
        root = zarr.open_group(self.path, mode="r" if self.mode == "r" else "r+")
        for key in self._dataset_keys:
            yield root[key]

    def obs(self, columns: Optional[Sequence[str]] = None):
        """The obs of the whole collection as one DataFrame indexed by obs_names (annbatch's
        ``obs``): every column when ``columns`` is None, those of ``columns`` that exist
        otherwise, none for ``[]``. Numbers stay numbers (int64 / float64 / bool; pandas
        nullables where values are missing), categoricals keep their categories."""
        import pandas as pd

        if columns is not None and len(columns) == 0:
            return pd.DataFrame()
        if _is_url(self.path):
            opened = self._remote_collection()
            if opened is None:
                return pd.DataFrame()
            return pd.concat(obs_frames(self.path, columns, opened=opened))
        if self.is_empty:
            return pd.DataFrame()
        return obs_frame(self.path, columns)

    def add_adatas(
        self,
        adata_paths: Iterable,
        *,
        load_adata: Any = None,
        groupby: Union[str, Sequence[str], None] = None,
        var_subset: Optional[Sequence[str]] = None,
        n_obs_per_chunk: Optional[int] = None,
        shard_size: Union[int, str, None] = None,
        zarr_compressor: Any = None,
        h5ad_compressor: Optional[str] = "gzip",
        dataset_size: Union[int, str, None] = None,
        shuffle_chunk_size: Optional[int] = None,
        shuffle: Optional[bool] = None,
        rng: Any = None,
        merge: Optional[str] = None,
        layer: Optional[str] = None,
        seed: Optional[int] = None,
        quiet: bool = False,
        allow_disjoint_var: bool = False,
        progress: Optional[bool] = None,
    ) -> "DatasetCollection":
        """Converts ``adata_paths`` (``.h5ad`` / zarr AnnData: paths, zarr groups, h5py files)
        into this collection, or appends them to it: annbatch's ``add_adatas``, its parameters
        and defaults (``None`` takes ``_native.CONVERT_DEFAULTS``: 64 rows per inner chunk, 1GB
        shards, 20GB datasets, shuffle chunks of 1000 rows, shuffled).

        ``rng`` (a ``numpy.random.Generator``) seeds the shuffle as the Loader's does: one draw,
        ``int(rng.integers(2**63))``; or give ``seed``. ``zarr_compressor``: ``None`` takes
        annbatch_rs's default, uncompressed inner chunks (``()``), chosen by measurement: ~8-9x
        annbatch end to end, 1.25-2.6x the size on disk (README, "Performance"). annbatch's
        own default ``(BloscCodec(cname="lz4", clevel=3, shuffle="shuffle"),)`` is the compact
        choice; ``(ZstdCodec(level=0),)`` too; BloscCodec lz4 clevel 3 with ``bitshuffle`` or a
        ``blocksize`` as well (also by name: ``"none"``, ``"zstd"``, ``"blosc-lz4"``,
        ``"blosc-lz4-bitshuffle"``, a blosc one with ``":BLOCKSIZE"``). ``h5ad_compressor``
        only concerns ``.h5ad`` collections, which annbatch_rs does not write: ignored, as
        annbatch ignores it for zarr. Progress shows as a tqdm bar (auto: a widget in Jupyter,
        text on a terminal or in a log file) or, without tqdm, INFO log lines (logger
        ``annbatch_rs``); ``progress=False`` (or ``quiet``) turns it off. Start and end are
        logged at INFO either way.
        An appended input that shares no variable with the collection is refused unless
        ``allow_disjoint_var`` (annbatch_rs only).

        ``load_adata`` (annbatch's custom loading) is called with each input path; what it
        returns (a lazy or in-memory AnnData: its ``X``, obs columns and var) is written to a
        temporary zarr store beside the collection, which is then converted: exact for any
        function, at the cost of one more write of each input. var columns are kept as
        ``anndata.concat(join="outer", merge=merge)`` keeps them: by default one input keeps
        its own and several keep none; ``merge`` is ``"same"``, ``"unique"``, ``"first"`` or
        ``"only"``. Appending keeps the collection's. ``layers`` and ``obsm`` entries every
        input has are kept in their dtype, rows shuffled with ``X``; ``uns`` (one input: its
        own; several: the entries ``merge`` picks) and ``raw`` too; CSC inputs are transposed.
        An ``s3://`` collection is written new (a non-empty prefix is refused: nothing is
        appended in object storage): converted into ``ANNBATCH_STAGING_DIR`` (else the
        temporary directory; it needs the collection's size on disk), then uploaded, its root
        ``zarr.json`` last. ``layer="counts"`` (annbatch_rs only) makes ``layers["counts"]``
        the collection's ``X`` and keeps the inputs' ``X`` as ``layers["X"]``. What is left
        out is listed in ``last_report["notes"]``.

        Returns
        -------
        self, for chaining.
        """
        if self.mode == "r":
            raise ValueError(f"{self.path} was opened read-only (mode='r')")
        if progress is None:
            progress = not quiet
        del h5ad_compressor  # .h5ad collections are not written (see the docstring)
        adata_paths = list(adata_paths)
        custom_load = (load_adata is not None
                       and getattr(load_adata, "__name__", "") != "_default_load_adata")
        if custom_load and _is_url(self.path):
            raise NotImplementedError(
                "load_adata with a collection in object storage: build the collection "
                "locally, then convert it to the URL (or upload it)")
        if custom_load:
            parent = os.path.dirname(os.path.abspath(self.path))
            with tempfile.TemporaryDirectory(prefix=".annbatch-load-", dir=parent) as tmp:
                paths = [_loaded(load_adata, p, os.path.join(tmp, f"input_{i}.zarr"))
                         for i, p in enumerate(adata_paths)]
                # obs["src_path"] names the inputs, not the scratch copies: written so by the
                # conversion itself, under its lock (a rename afterwards raced other appends).
                self._convert(paths, groupby, var_subset, n_obs_per_chunk, shard_size,
                              zarr_compressor, dataset_size, shuffle_chunk_size, shuffle,
                              _seed_of(rng, seed), progress, allow_disjoint_var, merge, layer,
                              src_paths=[_path_of(p) for p in adata_paths])
            return self
        return self._convert([_path_of(p) for p in adata_paths], groupby, var_subset,
                             n_obs_per_chunk, shard_size, zarr_compressor, dataset_size,
                             shuffle_chunk_size, shuffle, _seed_of(rng, seed), progress,
                             allow_disjoint_var, merge, layer)

    def _convert(self, paths: List[str], groupby: Any, var_subset: Any, n_obs_per_chunk: Any,
                 shard_size: Any, zarr_compressor: Any, dataset_size: Any,
                 shuffle_chunk_size: Any, shuffle: Any, seed: Optional[int], progress: bool,
                 allow_disjoint_var: bool, merge: Optional[str],
                 layer: Optional[str],
                 src_paths: Optional[List[str]] = None) -> "DatasetCollection":
        if isinstance(groupby, str):
            groupby = [groupby]
        started = time.perf_counter()
        logger.info("converting %d input(s) into %s", len(paths), self.path)
        display = Progress(self.path) if progress else None
        try:
            self.last_report = self._native_convert(
                paths, groupby, var_subset, n_obs_per_chunk, shard_size, zarr_compressor,
                dataset_size, shuffle_chunk_size, shuffle, seed, allow_disjoint_var, merge,
                layer, display, src_paths)
        finally:
            if display is not None:
                display.close()
        report = self.last_report
        for note in report.get("notes", []):
            logger.info("%s: %s", self.path, note)
        logger.info("%s: wrote %d cells x %d genes in %.1f s", self.path, report.get("n_obs", 0),
                    report.get("n_var", 0), time.perf_counter() - started)
        return self

    def _native_convert(self, paths: List[str], groupby: Any, var_subset: Any,
                        n_obs_per_chunk: Any, shard_size: Any, zarr_compressor: Any,
                        dataset_size: Any, shuffle_chunk_size: Any, shuffle: Any,
                        seed: Optional[int], allow_disjoint_var: bool, merge: Optional[str],
                        layer: Optional[str], display: Any,
                        src_paths: Optional[List[str]]) -> Dict[str, Any]:
        return _native.convert(
            self.path,
            paths,
            n_obs_per_chunk=n_obs_per_chunk,
            shard_size=shard_size,
            dataset_size=dataset_size,
            shuffle_chunk_size=shuffle_chunk_size,
            shuffle=shuffle,
            seed=seed,
            var_subset=list(var_subset) if var_subset is not None else None,
            groupby=list(groupby) if groupby else None,
            quiet=True,  # the Python display, not the native terminal bar
            allow_disjoint_var=allow_disjoint_var,
            compressor=_compressor_name(zarr_compressor),
            merge=merge,
            layer=layer,
            progress=display,
            src_paths=src_paths,
        )

    def __repr__(self) -> str:
        return f"DatasetCollection({self.path!r})"


def create_anndata_collection(
    adata_paths: Iterable, output_path: PathLike, *, shuffle: bool = True, **kwargs
) -> DatasetCollection:
    """The seed documents' name for ``DatasetCollection(output_path).add_adatas(...)``."""
    return DatasetCollection(output_path).add_adatas(adata_paths, shuffle=shuffle, **kwargs)


def _ints(values: bytes, dtype: str) -> np.ndarray:
    """Integers sent as int64 (uint64 as their bits) in their stored ``dtype``."""
    if dtype == "uint64":
        return np.frombuffer(values, dtype=np.uint64).copy()
    return np.frombuffer(values, dtype=np.int64).astype(dtype)


def _categories(names: List[str], dtype: str) -> Any:
    """Categories in their stored dtype, from their exact text (names stay strings)."""
    import pandas as pd

    if dtype == "string":
        return names
    if dtype == "bool":
        return pd.Index(np.asarray([n == "true" for n in names], dtype=np.bool_))
    return pd.Index(np.asarray(names).astype(dtype))


def _column(kind: str, values: Any, extra: Any) -> Any:
    """A pandas column from `_native.obs_frames`' ``(kind, values, extra)``."""
    import numpy as np
    import pandas as pd

    if kind in ("float64", "float32"):
        return np.frombuffer(values, dtype=kind).copy()
    if kind == "int":  # int64 values (uint64: their bits) of the stored width ``extra``
        return _ints(values, extra)
    if kind == "bool":
        return np.frombuffer(values, dtype=np.bool_).copy()
    if kind == "str":
        return np.asarray(values, dtype=object)
    if kind == "category":
        categories, ordered, dtype = extra
        codes = np.frombuffer(values, dtype=np.int64)
        return pd.Categorical.from_codes(codes, _categories(categories, dtype), ordered=ordered)
    if kind == "nullable-int":
        mask, dtype = extra
        return pd.arrays.IntegerArray(_ints(values, dtype),
                                      np.frombuffer(mask, dtype=np.bool_).copy())
    mask = np.frombuffer(extra, dtype=np.bool_).copy()
    if kind == "boolean":
        return pd.arrays.BooleanArray(np.frombuffer(values, dtype=np.bool_).copy(), mask)
    if kind == "string":
        out = pd.array(values, dtype="string")
        out[mask] = pd.NA
        return out
    raise ValueError(f"unknown obs column kind {kind!r}")


def obs_frames(path: str, columns: Optional[Sequence[str]] = None,
               opened: Any = None) -> List[Any]:
    """Each dataset's obs at ``path`` as a DataFrame indexed by obs_names: the columns of
    ``columns`` that the dataset has (all when None). ``opened``: the same collection already
    open (a ``_native.Collection`` of exactly its datasets), read instead of opening it again."""
    import pandas as pd

    wanted = None if columns is None else list(columns)
    tables = (opened.obs_frames(wanted) if opened is not None
              else _native.obs_frames(path, wanted))
    frames = []
    for names, cols in tables:
        # Through an object array: pandas infers the same dtype ~4x faster than from a list.
        frames.append(pd.DataFrame(
            {name: _column(kind, values, extra) for name, kind, values, extra in cols},
            index=pd.Index(np.asarray(names, dtype=object))))
    return frames


def obs_frame(path: str, columns: Optional[Sequence[str]] = None) -> Any:
    """The obs of every dataset at ``path``, concatenated (see `obs_frames`)."""
    import pandas as pd

    return pd.concat(obs_frames(path, columns))


def _loaded(load_adata: Any, path: Any, scratch: str) -> str:
    """``load_adata(path)`` written as a zarr AnnData store at ``scratch``."""
    import anndata as ad

    adata = load_adata(path)
    if not isinstance(adata, ad.AnnData):
        raise TypeError(f"load_adata returned {type(adata).__name__}, expected an AnnData")
    for attr in ("obs", "var"):
        frame = getattr(adata, attr)
        if hasattr(frame, "to_memory"):  # anndata.experimental.read_lazy's Dataset2D
            setattr(adata, attr, frame.to_memory())
    if hasattr(adata.X, "to_memory"):  # a backed CSRDataset
        adata.X = adata.X.to_memory()
    settings = {}
    if hasattr(ad.settings, "allow_write_nullable_strings"):
        settings["allow_write_nullable_strings"] = True
    with ad.settings.override(**settings):
        adata.write_zarr(scratch)
    return scratch


def _seed_of(rng: Any, seed: Optional[int]) -> Optional[int]:
    """The seed of a ``numpy.random.Generator`` (one draw) or the seed given."""
    if rng is None:
        return seed
    import numpy as np

    if seed is not None:
        raise ValueError("give rng or seed, not both")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return int(rng.integers(2**63))


def _compressor_name(codecs: Any) -> Optional[str]:
    """The converter's name for annbatch's ``zarr_compressor`` (a tuple of zarr codecs)."""
    if codecs is None or isinstance(codecs, str):
        return codecs
    codecs = list(codecs)
    if not codecs:
        return "none"
    if len(codecs) == 1:
        codec = codecs[0]
        name = type(codec).__name__
        shuffle = str(getattr(getattr(codec, "shuffle", None), "value",
                              getattr(codec, "shuffle", None)))
        if (name == "BloscCodec" and getattr(codec, "cname", None) is not None
                and str(getattr(codec.cname, "value", codec.cname)) == "lz4"
                and getattr(codec, "clevel", None) == 3
                and shuffle in ("shuffle", "bitshuffle")):
            base = "blosc-lz4" if shuffle == "shuffle" else "blosc-lz4-bitshuffle"
            blocksize = int(getattr(codec, "blocksize", 0) or 0)
            return f"{base}:{blocksize}" if blocksize else base
        if name == "ZstdCodec" and getattr(codec, "level", None) == 0:
            return "zstd"
    raise NotImplementedError(
        f"zarr_compressor={tuple(codecs)!r}: annbatch_rs writes BloscCodec(cname='lz4', "
        "clevel=3, shuffle='shuffle' or 'bitshuffle', any blocksize), ZstdCodec(level=0) "
        "or () (none)")
