"""How `DatasetCollection.add_adatas` shows a conversion's progress: a tqdm bar in its auto
mode (a widget in Jupyter, text on a terminal or in a log) when tqdm is installed, else log lines
(logger ``annbatch_rs``, INFO) every tenth of the rows. The converter calls `Progress` with the
rows read so far, the total and the dataset being written, about once per percent."""

from __future__ import annotations

import logging
from typing import Any, Optional

logger = logging.getLogger("annbatch_rs")


class Progress:
    """The ``progress`` callback of `_native.convert` for the collection at ``path``."""

    def __init__(self, path: str):
        self.path = path
        self._bar: Any = None
        self._logged = -1  # the last tenth logged
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        self._tqdm: Optional[Any] = tqdm

    def __call__(self, done: int, total: int, dataset: str) -> None:
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(total=total, unit="cells", unit_scale=True,
                                       desc=f"add_adatas {dataset}")
            self._bar.set_description(f"add_adatas {dataset}", refresh=False)
            self._bar.update(done - self._bar.n)
            return
        tenth = 10 * done // max(total, 1)
        if tenth > self._logged:
            self._logged = tenth
            logger.info("%s: %d of %d cells read (%d%%), writing %s", self.path, done, total,
                        100 * done // max(total, 1), dataset)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
