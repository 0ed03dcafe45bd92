"""``driftwatch run`` whose first table recovery hangs the way Faust's sometimes does (a test
tool for ``monitor.recovery_watchdog``; run as ``python -m tests.stalled_recovery run ...``).

The first active recovery seeks the changelog partitions that hold records to their end instead
of their start offsets: no record arrives, the partitions stay short of their highwater, and
Faust logs "No event received for active tp ... since recovery start", as in the hang seen in
the test suite. Later recoveries seek as Faust does, unless ``STALL_RECOVERIES`` (an
environment variable, 1 by default) asks for more of them to hang.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from faust.tables.recovery import Recovery

from monitor.cli import main


def stall_first_recovery() -> None:
    original = Recovery._seek_offsets
    left = int(os.environ.get("STALL_RECOVERIES", "1"))

    async def seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        nonlocal left
        ends = {}
        if title == "active":
            ends = {tp: self.active_highwaters[tp] + 1 for tp in tps}
            ends = {tp: end for tp, end in ends.items() if end > 0}  # partitions with records
        if ends and left > 0:
            left -= 1
            print(f"stalled_recovery: seeking {sorted(ends.items())} to their end", flush=True)
            await consumer.seek_wait(ends)
            return
        await original(self, consumer, tps, offsets, title)

    Recovery._seek_offsets = seek_offsets  # type: ignore[method-assign]


if __name__ == "__main__":
    stall_first_recovery()
    sys.exit(main(sys.argv[1:]))
