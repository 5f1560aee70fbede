"""A chaos run in its own process, for tests that interrupt it at random points.

``python -m pytest_stackcheck.chaos.drill STATE_FILE JOURNAL SEED`` attaches
to the stack described by STATE_FILE (written by ``LiveStack.save``) and
makes faults drawn from SEED, one after another, each followed by its
rollback, for at most ``MAX_DRILL_S``. SIGINT ends it through the normal
rollback path (KeyboardInterrupt); SIGKILL leaves the rollbacks in JOURNAL
for the next run to replay.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path

from pytest_stackcheck.chaos.faults import ChaosSession, FaultKind
from pytest_stackcheck.chaos.journal import Journal
from pytest_stackcheck.chaos.network import ProxyControl, inject_network
from pytest_stackcheck.control.supervisor import SupervisorControl
from pytest_stackcheck.provision.base import LiveStack

log = logging.getLogger("pytest_stackcheck")

MAX_DRILL_S = 60.0
MAX_FAULTS = 50
DRILL_FAULTS = (FaultKind.PAUSE, FaultKind.STOP_START, FaultKind.KILL)
HOLD_S = (0.05, 0.6)
NETWORK_FAULTS = ("latency", "partition")
# Share of the drill's faults made on the fault proxy's links, when it runs.
NETWORK_SHARE = 0.3


def drill(stack: LiveStack, journal: Journal, seed: int) -> int:
    """Make faults until the time or fault limit; return how many were made."""
    assert stack.supervisor_socket is not None
    control = SupervisorControl(stack.supervisor_socket)
    chooser = random.Random(seed)
    services = [*stack.profile.doc.services, "nginx"]
    deadline = time.monotonic() + MAX_DRILL_S
    made = 0

    proxy = _proxy(stack)
    chaos = ChaosSession(stack.profile, control, journal, stack.supervisor_socket)
    with chaos:
        while made < MAX_FAULTS and time.monotonic() < deadline:
            if proxy is not None and chooser.random() < NETWORK_SHARE:
                link = chooser.choice(sorted(proxy.links()))
                fault = chooser.choice(NETWORK_FAULTS)
                entry_id = inject_network(chaos, proxy, link, fault, 100).entry_id
                target = f"link {link}"
            else:
                kind = chooser.choice(DRILL_FAULTS)
                service = chooser.choice(services)
                if not control.is_running(service):
                    time.sleep(0.05)
                    continue
                entry_id = chaos.inject(kind, service).entry_id
                fault, target = kind.value, service
            made += 1
            sys.stderr.write(f"drill: {fault} on {target}\n")
            sys.stderr.flush()
            time.sleep(chooser.uniform(*HOLD_S))
            chaos.undo_entry(entry_id)
    return made


def _proxy(stack: LiveStack) -> ProxyControl | None:
    if stack.workdir is None:
        return None
    socket = stack.workdir / "faultproxy.sock"
    return ProxyControl(socket) if socket.exists() else None


def main(argv: list[str]) -> int:
    """Run a drill: ``STATE_FILE JOURNAL SEED``."""
    if len(argv) != 3:
        sys.stderr.write(
            "usage: python -m pytest_stackcheck.chaos.drill STATE_FILE JOURNAL SEED\n"
        )
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stack = LiveStack.load(Path(argv[0]))
    made = drill(stack, Journal(Path(argv[1])), int(argv[2]))
    sys.stderr.write(f"drill: finished after {made} faults\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
