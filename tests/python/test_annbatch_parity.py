"""annbatch's documented usages, run unchanged but for the import, against what annbatch 0.3.1
itself gave (tests/data/reference/annbatch_usages.json, recorded by
tests/data/make_annbatch_usages.py with ../shared/tools/annbatch-reference)."""

import json
import pathlib
import sys
from collections import Counter

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import annbatch_rs
import annbatch_usages as usages
import pytest

REFERENCE = json.loads((usages.DATA / "reference" / "annbatch_usages.json").read_text())


def _rows(batches):
    """The epoch's rows as a multiset of (row sum, nnz), whatever the order."""
    rows = Counter()
    for b in batches:
        nnz = b["X"]["row_nnz"] or [None] * len(b["X"]["row_sum"])
        rows.update(zip(b["X"]["row_sum"], nnz))
    return rows


def _shape(batches):
    """What must match even when rows are drawn at random: keys, types, sizes, obs columns."""
    return [(b["keys"], b["X"]["type"], b["X"]["dtype"], b["X"]["shape"],
             None if b["obs"] is None else (b["obs"]["columns"], b["obs"]["dtypes"]), b["var"])
            for b in batches]


def _value(value):
    if isinstance(value, dict) and "dataset_type" in value:  # anndata's class is _CSRDataset
        value = dict(value, dataset_type=value["dataset_type"].lstrip("_"))
    return value


@pytest.mark.parametrize("name", list(usages.USAGES))
def test_usage_gives_what_annbatch_gives(name, tmp_path):
    expected = REFERENCE["usages"][name]
    got = usages.record(name, annbatch_rs, tmp_path)
    assert "error" not in got, got
    if "error" in expected:
        pytest.fail(f"annbatch failed here ({expected}); annbatch_rs ran")
    compare = usages.COMPARE[name]
    if compare == "value":
        assert _value(got["value"]) == _value(expected["value"])
        return
    assert _shape(got["batches"]) == _shape(expected["batches"])
    if compare == "exact":
        assert got["batches"] == expected["batches"]
    elif compare == "multiset":
        assert _rows(got["batches"]) == _rows(expected["batches"])
        indexes = [sorted(i for b in r["batches"] for i in (b["index"] or []))
                   for r in (got, expected)]
        assert indexes[0] == indexes[1]


def test_every_documented_usage_is_recorded():
    assert set(REFERENCE["usages"]) == set(usages.USAGES)
    assert REFERENCE["annbatch"] == "0.3.1"
