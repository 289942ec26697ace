"""The saga domain: the definition DSL, the pure state machine, the saga and coordinator
actors, the event router, the events service (publish, read, replay domain events) and the
built-in sagas (:mod:`.catalog`).

What other packages (the HTTP layer, the composition root, saga modules) use is exported here;
the modules behind it are the implementation.
"""

from .catalog import SagaCatalog as SagaCatalog
from .clock import Clock as Clock
from .clock import WallClock as WallClock
from .coordinator import Coordinator as Coordinator
from .coordinator import start_coordinator as start_coordinator
from .definition import AwaitReply as AwaitReply
from .definition import NonRetryableError as NonRetryableError
from .definition import Parallel as Parallel
from .definition import RetryPolicy as RetryPolicy
from .definition import SagaDefinition as SagaDefinition
from .definition import Step as Step
from .definition import StepContext as StepContext
from .domain_events import DomainEvents as DomainEvents
from .messages import CancelSaga as CancelSaga
from .messages import CoordinatorStatus as CoordinatorStatus
from .messages import DeliverEvent as DeliverEvent
from .messages import GetStatus as GetStatus
from .messages import RetrySaga as RetrySaga
from .messages import StartResult as StartResult
from .messages import StartSaga as StartSaga
from .observer import SagaObserver as SagaObserver
from .options import EngineOptions as EngineOptions
from .router import EventRouter as EventRouter
from .router import start_router as start_router
from .state import SagaStatus as SagaStatus
