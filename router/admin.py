"""The proxy's own admin statements, after ShardingSphere's DistSQL and Vitess's VEXPLAIN.

    EXPLAIN SHARDS <statement>      what would run where, without running it
    SHOW SHARDPROXY BACKENDS        backends, their pools and health
    SHOW SHARDPROXY RULES           the sharding rules as loaded
    SHOW SHARDPROXY SESSIONS        client sessions
    SHOW SHARDPROXY TRANSACTIONS    in-doubt XA branches on the backends, with their decisions
    RELOAD SHARDPROXY CONFIG        load the config file again (as SIGHUP does)

Only users marked `admin: true` may run them; the proxy checks that. KILL [QUERY|CONNECTION] n
is planned here too: its ids are the proxy's connection ids, never a backend's.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from router.plan import AdminShow, AdminWhat, ExplainShards, KillPlan, Plan, ReloadConfig

_EXPLAIN_SHARDS = re.compile(r"\s*EXPLAIN\s+SHARDS\s+", re.IGNORECASE)
_SHOW = re.compile(r"\s*SHOW\s+SHARDPROXY\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_RELOAD = re.compile(r"\s*RELOAD\s+SHARDPROXY\s+CONFIG\s*;?\s*$", re.IGNORECASE)
_KILL = re.compile(
    r"\s*KILL\s+(?:(HARD|SOFT)\s+)?(?:(QUERY|CONNECTION)\s+)?(\d+)\s*;?\s*$", re.IGNORECASE
)


def plan_admin(text: str, plan_inner: Callable[[str], Plan]) -> Plan | None:
    """The admin plan for `text`, or None when it is not one of ours.

    `plan_inner` plans the statement EXPLAIN SHARDS wraps, in the same session.
    """
    explain = _EXPLAIN_SHARDS.match(text)
    if explain is not None:
        return ExplainShards(plan_inner(text[explain.end() :]))
    show = _SHOW.match(text)
    if show is not None:
        try:
            return AdminShow(AdminWhat(show.group(1).lower()))
        except ValueError:
            return None
    if _RELOAD.match(text):
        return ReloadConfig()
    kill = _KILL.match(text)
    if kill is not None:
        return KillPlan(int(kill.group(3)), (kill.group(2) or "").upper() == "QUERY")
    return None
