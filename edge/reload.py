"""A config reload (SIGHUP, `systemctl reload`): what a running edge takes.

Rule: a new config that does not load is refused and logged, and the running
one stays; of one that loads, the settings a running edge can change are
applied (rules keep the state of those that did not change), and the others
are named in the log as waiting for the next restart.
"""

from collections.abc import Callable

import msgspec

from edge import metrics
from edge.config import EdgeSettings
from edge.pipeline import Pipeline
from edge.rules import parse_rules
from edgewire.errors import ConfigError
from edgewire.logs import get_logger, set_level

log = get_logger("edge.reload")

# Settings a running edge can take on a reload; the rest need a restart.
RELOADABLE = frozenset({"log_level", "unhealthy_after_s", "rules"})


def reloaded(
    current: EdgeSettings, reread: Callable[[], EdgeSettings] | None, pipeline: Pipeline
) -> EdgeSettings:
    """The settings after a reload: the new ones if they load, else the old."""
    if reread is None:
        log.info("reload: no config file to read again")
        return current
    try:
        new = reread()
    except (ConfigError, OSError) as exc:
        metrics.RELOADS.labels("refused").inc()
        log.error("reload refused; the running config stays", error=str(exc))
        return current
    changed = [
        name for name in current.__struct_fields__
        if getattr(current, name) != getattr(new, name)
    ]  # fmt: skip
    needs_restart = sorted(set(changed) - RELOADABLE)
    if needs_restart:
        log.warning("reload: these settings take effect at the next restart", names=needs_restart)
    taken = {name: getattr(new, name) for name in changed if name in RELOADABLE}
    if "log_level" in taken:
        set_level(taken["log_level"])
    if "rules" in taken:
        pipeline.set_rules(parse_rules(taken["rules"]))  # checked when `new` loaded
    metrics.RELOADS.labels("applied").inc()
    log.info("reloaded", applied=sorted(taken))
    return msgspec.structs.replace(current, **taken)
