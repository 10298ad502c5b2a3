"""``WithFields``: a data set whose items carry their ground-truth field, decoded on the fly."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch.utils.data import Dataset

from .store import GroundTruthStore

__all__ = ["WithFields"]


class WithFields(Dataset):
    """Wrap ``dataset`` so item ``i`` is ``(image, label, field_mask bool [N, N], dropped bool [N])``.

    ``field_mask`` row ``p`` is the indicator of ``S_p`` (docs/spec.md §6's ``w_gt``), ``dropped`` the set ``D``;
    both are decoded from the store's compact encoding per item (or per batch through
    ``__getitems__``). Images the store marks invalid (unreadable when it was built) and images the
    data set fails to load give ``None``: load with ``collate_fn=patchfield.data.collate_skip``.

    Args:
        dataset: the data set the store was built on (same order, length and fingerprint).
        store: a :class:`GroundTruthStore` or its folder.
        check: verify length and fingerprint (raises ``StoreMismatchError``, a ``ValueError``).
        dip: ``True``: the responsive field (windows minus ``D``) and ``D``; ``False``: the windows alone
            and an empty ``D`` (AWD without DIP).
    """

    def __init__(self, dataset: Dataset, store: GroundTruthStore | str, check: bool = True,
                 dip: bool = True) -> None:
        self.dip = bool(dip)
        self.dataset = dataset
        self.store = store if isinstance(store, GroundTruthStore) else GroundTruthStore(store)
        if check:
            self.store.check_dataset(dataset)
        pre = getattr(dataset, "preprocess", None)
        if pre is not None and getattr(pre, "augment", False):
            warnings.warn("WithFields over an augmented data set: fields were computed on the evaluation view and "
                          "do not follow random crops or flips", stacklevel=2)
        for attr in ("classes", "num_classes", "name"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))
        self.grid = self.store.grid

    def __len__(self) -> int:
        return len(self.dataset)

    def fingerprint(self) -> str:
        return self.store.fingerprint

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if item is None or not bool(self.store.valid[index]):
            return None
        mask, dropped = self.store.masks([index], dip=self.dip)
        return item[0], item[1], mask[0], dropped[0]

    def __getitems__(self, indices: Sequence[int]) -> list:
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(list(indices)) if getitems is not None else [self.dataset[i] for i in indices]
        mask, dropped = self.store.masks(list(indices), dip=self.dip)
        valid = self.store.valid
        return [None if item is None or not bool(valid[i]) else (item[0], item[1], mask[j], dropped[j])
                for j, (i, item) in enumerate(zip(indices, items))]

    def __repr__(self) -> str:
        return f"WithFields({self.dataset!r}, {self.store!r})"


