"""A local stand-in of the downstream services: ``saga-orchestrator devservices``.

One Quart-Trio app serves, in memory, the contract of ``docs/services.md`` for the auth, user,
permission and notification services and the Airtable connector (under ``/auth``, ``/user``,
``/permission``, ``/notification`` and ``/airtable``). It honours idempotency keys, records
every call and every effect, injects faults, and announces the outcome of an Airtable data
sync as an event for the saga that asked for it.

    state = DevState(announcer=HttpAnnouncer(orchestrator_url="http://localhost:8008"))
    port = await nursery.start(partial(serve_devservices, state, port=0))

Importing this package is cheap: Quart and Hypercorn are imported when the stand-in starts.
"""

from ._announce import HttpAnnouncer as HttpAnnouncer
from ._faults import Fault as Fault
from ._faults import FaultBook as FaultBook
from ._records import Announcement as Announcement
from ._records import CallRecord as CallRecord
from ._records import EffectRecord as EffectRecord
from ._state import DevState as DevState
from .command import register as register
from .command import run as run
from .command import serve_devservices as serve_devservices
