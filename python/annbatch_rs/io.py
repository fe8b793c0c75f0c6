"""annbatch's `annbatch.io` names: `DatasetCollection` and the collection's encoding."""

from .collection import DatasetCollection, create_anndata_collection

#: The root attributes of a collection (annbatch's preshuffled format, version 0.1.0).
V1_ENCODING = {"encoding-type": "annbatch-preshuffled", "encoding-version": "0.1.0"}

__all__ = ["DatasetCollection", "V1_ENCODING", "create_anndata_collection"]
