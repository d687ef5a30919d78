"""Where a peer keeps its durable state.

- :class:`~trioraft.storage.disk.DiskStorage`: a write-ahead log directory
  (segments with a CRC per record, a double-buffered hard-state file,
  snapshot files), group-committed, fsync off the event loop;
- :class:`~trioraft.storage.persister.PersisterStorage`: the 6.824
  ``Persister``/``FilePersister`` with its whole-state semantics (what
  ``make()`` wraps a Persister in).
"""

from .base import CorruptStateError, Restored, Storage, StorageError
from .disk import DiskStorage
from .persister import PersisterStorage

__all__ = [
    "CorruptStateError",
    "DiskStorage",
    "PersisterStorage",
    "Restored",
    "Storage",
    "StorageError",
]
