"""trioraft: Raft (Figure 2, the MIT 6.824/6.5840 API) for trio.

The public names are those of the 6.824 lab: :func:`make` a peer, then
``start``, ``get_state``, ``snapshot``, ``kill``; committed commands come out
as :class:`ApplyMsg` on the apply channel.  A peer keeps its durable state in
a 6.824 :class:`Persister` or in a :class:`DiskStorage` directory.
:mod:`trioraft.sim` is the labrpc-style simulated network and the 6.824 test
harness.
"""

from . import sim  # trioraft.sim.open_network works after `import trioraft`
from .core.apply import ApplyMsg
from .core.config import RaftConfig
from .errors import NotLeader
from .net.tls import TLSFiles
from .node import Node, NodeConfig, NodeStatus, StateMachine, open_node
from .peer import CorruptStateError, Raft, make
from .persist import FilePersister, Persister, PersisterFileError
from .rpc import ClientEnd, Handler, RpcServer
from .storage import DiskStorage, StorageError

__all__ = [
    "ApplyMsg",
    "ClientEnd",
    "CorruptStateError",
    "DiskStorage",
    "FilePersister",
    "Handler",
    "Node",
    "NodeConfig",
    "NodeStatus",
    "NotLeader",
    "Persister",
    "PersisterFileError",
    "Raft",
    "RaftConfig",
    "RpcServer",
    "StateMachine",
    "StorageError",
    "TLSFiles",
    "make",
    "open_node",
    "sim",
]
