"""The chaos run: real processes, real faults, system-wide invariants checked afterwards.

The orchestrator (``python -m saga_orchestrator.main``) runs on a PostgreSQL and a Redis of its
own (throwaway servers on fixed loopback ports, so they can be restarted) with the Redis event
bus, and calls the downstream stand-in (``saga-orchestrator devservices``, its own process),
which records every effect by idempotency key. From one seed:

* :mod:`.plan` draws the sagas to start (type, API or event, idempotency keys, repeats,
  cancels) and the fault schedule (orchestrator SIGKILLs, PostgreSQL and Redis restarts,
  stand-in stalls, stand-in faults);
* :mod:`.cluster` runs the processes; :mod:`.driver` starts the sagas over HTTP;
  :mod:`.injector` strikes the faults; :mod:`.checker` checks the invariants once the system is
  quiet; :mod:`.run` ties them together and reports.

``tests/chaos/test_chaos.py`` is the short CI version; ``python -m tests.chaos --sagas 5000
--seed 123 --minutes 10`` runs a long one by hand (``docs/reliability.md``).
"""
