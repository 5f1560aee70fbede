"""Chaos: faults with guaranteed rollback, recovery timing and write ledgers.

Every fault goes through a ``ServiceControl`` (``control/base.py``), is
registered in a rollback journal before it is injected, and is undone when
the test ends however it ends. Modules:

- ``spec``: the ``[chaos]`` table of a stack profile.
- ``policy``: the check that refuses chaos on stacks that do not allow it.
- ``journal``: the on-disk rollback journal a later run replays.
- ``faults``: fault kinds, injection, verification and rollback.
- ``recovery``: time from fault to healthy, judged on health bodies.
- ``ledger``: acknowledged writes under load, classified after a fault.
- ``jetstream``: JetStream durability and store-size configuration checks.
- ``nightly``: a seeded Hypothesis schedule of faults.
- ``drill``: a fault run in a child process, for interruption tests.
"""
