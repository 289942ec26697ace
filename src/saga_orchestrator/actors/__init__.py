"""A small actor runtime on trio: bounded mailboxes, ask/tell, supervision.

It knows nothing of sagas.
"""

from ._errors import ActorError as ActorError
from ._errors import ActorStopped as ActorStopped
from ._errors import AskTimeout as AskTimeout
from ._errors import MailboxFull as MailboxFull
from ._errors import NoReply as NoReply
from ._errors import SupervisorEscalation as SupervisorEscalation
from ._loop import run_loop_actor as run_loop_actor
from ._mailbox import ActorRef as ActorRef
from ._mailbox import Envelope as Envelope
from ._mailbox import Mailbox as Mailbox
from ._mailbox import Reply as Reply
from ._mailbox import open_mailbox as open_mailbox
from ._supervisor import ChildSpec as ChildSpec
from ._supervisor import Restart as Restart
from ._supervisor import Supervisor as Supervisor
from ._system import ActorSystem as ActorSystem
from ._system import open_actor_system as open_actor_system
