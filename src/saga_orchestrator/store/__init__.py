"""The durable store: the records it keeps, the backend protocol and its memory, SQLite and
PostgreSQL backends, the store actor (group commit) and :class:`Store`, the handle the rest of
the service holds.

What other packages use is exported here; the modules behind it are the implementation.
"""

from .actor import Store as Store
from .actor import StoreStats as StoreStats
from .actor import start_store as start_store
from .backend import StoreBackend as StoreBackend
from .memory import MemoryBackend as MemoryBackend
from .open import make_backend as make_backend
from .records import ACTIVE_STATUSES as ACTIVE_STATUSES
from .records import TERMINAL_STATUSES as TERMINAL_STATUSES
from .records import AppendRequest as AppendRequest
from .records import AppendResult as AppendResult
from .records import NewEvent as NewEvent
from .records import OutboxMessage as OutboxMessage
from .records import OutboxRecord as OutboxRecord
from .records import RecordedEvent as RecordedEvent
from .records import SagaPage as SagaPage
from .records import SagaQuery as SagaQuery
from .records import SagaRecord as SagaRecord
from .records import StepRecord as StepRecord
from .records import new_id as new_id
