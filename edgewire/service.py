"""The lifecycle every long-running edgewire process shares.

Rule: signal handlers only set flags. The first SIGTERM/SIGINT sets `stop`,
and the service winds down in its own order (stop intake, flush, close); if
that takes longer than the grace period, or a second signal arrives, the
service's task is cancelled and the names of what was still running are
logged. The exit code is 0 after a clean stop, 1 after a forced one or a
crash. SIGHUP (`systemctl reload`) sets `reload`, which a service that can
reload its settings watches; one that cannot logs that it ignored it (the
default action of SIGHUP would kill it).
"""

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from edgewire.logs import get_logger

log = get_logger("edgewire.service")

ServiceMain = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
ReloadingMain = Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]]


def run_service(
    name: str, main: ServiceMain | None, grace_s: float, reloading: ReloadingMain | None = None
) -> int:
    """Run `main(stop)` (or `reloading(stop, reload)`) until it returns; map
    SIGTERM/SIGINT onto `stop` and SIGHUP onto `reload`."""
    return asyncio.run(_supervise(name, main, grace_s, reloading))


async def _supervise(
    name: str, main: ServiceMain | None, grace_s: float, reloading: ReloadingMain | None
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload = asyncio.Event()
    if reloading is not None:
        task = asyncio.create_task(reloading(stop, reload), name=name)
    else:
        assert main is not None, "give main or reloading"
        task = asyncio.create_task(main(stop), name=name)
    forced = False

    def force(reason: str) -> None:
        nonlocal forced
        if task.done():
            return
        forced = True
        still = sorted(t.get_name() for t in asyncio.all_tasks() if not t.done())
        log.warning("forcing exit", reason=reason, cancelling=still)
        task.cancel()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            force("second signal")
            return
        log.info("stopping", signal=signal.Signals(signum).name, grace_s=grace_s)
        stop.set()
        loop.call_later(grace_s, force, "grace period over")

    def on_hangup() -> None:
        if reloading is None:
            log.info("SIGHUP ignored: nothing to reload", service=name)
        else:
            reload.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await task
    except asyncio.CancelledError:
        return 1
    except Exception:
        log.exception("service failed", service=name)
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped", service=name)
    return 1 if forced else 0
