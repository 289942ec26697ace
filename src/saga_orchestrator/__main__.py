"""``python -m saga_orchestrator``: the ``saga-orchestrator`` command (see :mod:`.cli`)."""

import sys

from saga_orchestrator.cli import main

sys.exit(main())
