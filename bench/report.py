"""BENCHMARKS.md and the ratio chart, from the results bench/run.py collects.

`bench/run.py --report-only` rewrites both from bench/.run/results.json without measuring again.
The notes on each profile cost centre (`COST_CENTRES`), the open suggestions (`SUGGESTIONS`), the
fixed prose of the findings and the comparison with the previous run (`PREVIOUS_RUN`, `AB`) are
written by hand: update them when the hot path changes.
"""

from __future__ import annotations

import collections
import datetime
import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The profile's cost centres. Each sample goes to the first centre whose test accepts it; a
# sample is (leaf frame, nearest Python frame, all frames). The third field says whether the
# centre is time in system calls (True) or in user space; `note` says what was done about it.
Sample = tuple[str, str, list[str]]
COST_CENTRES: list[tuple[str, Callable[[Sample], bool], bool, str]] = [
    (
        "write(2) to backend sockets",
        lambda s: _syscall(s[0]) and _any(s[2], "send_command", "send_raw"),
        True,
        "Done: one write per command. What remains is the kernel's: a loopback TCP write also "
        "runs the receiver's TCP input and wakes it. Backends over a Unix socket were measured "
        "(bench/hotpath.py) and did not cut the proxy's CPU on this machine, so that option "
        "was left out.",
    ),
    (
        "write(2) to client sockets",
        lambda s: _syscall(s[0], "write", "send"),
        True,
        "Done: a whole response goes out in one write (7.9k -> 16.4k QPS when introduced, "
        "docs/decisions.md). Nothing left to batch per query.",
    ),
    (
        "read(2) from sockets",
        lambda s: _syscall(s[0], "read", "recv"),
        True,
        "Done: received bytes go straight into the buffer packets are cut from (one "
        "asyncio.Protocol, proxy/stream.py), one read per segment rather than per packet.",
    ),
    (
        "other system calls (epoll, ...)",
        lambda s: _syscall(s[0]),
        True,
        "epoll_wait returning ready sockets; falls with fewer wake-ups per query. Done: no "
        "getpid() per wait (CPython 3.11's get_running_loop() made one; the stream keeps its "
        "loop).",
    ),
    (
        "uvloop event loop (C)",
        lambda s: s[1].startswith(("run (uvloop", "Runner.run")),
        False,
        "Scheduling callbacks and task steps: each wait for data is one future woken by the "
        "stream's data_received, a callback and a task step. Falls with fewer waits per "
        "query.",
    ),
    (
        "asyncio streams (Python)",
        lambda s: "asyncio/streams.py" in s[1],
        False,
        "Done: client and backend I/O go through one asyncio.Protocol (proxy/stream.py) "
        "instead of StreamReader/StreamWriter; only connection set-up (aiomysql) still uses "
        "asyncio streams. proxy/stream.py's own Python time is under *everything else*.",
    ),
    (
        "cross-shard merge (router/merge.py, scatter.py, proxy/merge_exec.py)",
        lambda s: _any(s[2], "router/merge.py", "router/scatter.py", "proxy/merge_exec.py"),
        False,
        "Done: merges that only pick and order rows relay the shards' row bytes cut to the "
        "client's columns and decode only the key columns (`KeyRows`: one loop per row in "
        "both protocols; string keys as padded weight bytes); aggregates (SUM) still decode, "
        "one row per group; each read takes all the rows a connection has received and a "
        "merge sort orders what is ready with one C sort, not a heap step per row; a "
        "DISTINCT ordered by its columns compares each row with the previous one. Open: per "
        "row, that loop and the row's sort key, in Python.",
    ),
    (
        "routing (router/, plan cache hits)",
        lambda s: _any(s[2], "router/"),
        False,
        "Done: plan cache by statement shape (no parse on a hit), one-regex tokenizer; "
        "prepared statements keep their normalized shape (an execution binds values into the "
        "cached route, no re-normalizing); bulk INSERTs cached by their row forms. What "
        "remains: normalizing each text statement (`normalize`), the cache lookup, binding "
        "the literals and choosing the shard (`ShardedRoute.instantiate`).",
    ),
    (
        "XA coordination (proxy/xa.py)",
        lambda s: "proxy/xa.py" in s[1],
        False,
        "Building XA statements and the decision row. Done: the log backend's branch carries "
        "the decision row and commits in one phase (one PREPARE fewer, no separate decision "
        "insert); otherwise decisions of concurrent commits are group-committed; finished "
        "ones are deleted in batches off the commit path; XA START goes in the packet of a "
        "branch's first text statement (not for prepared statements).",
    ),
    (
        "prepared statements (proxy/prepared.py)",
        lambda s: "proxy/prepared.py" in s[1],
        False,
        "Parsing COM_STMT_EXECUTE and re-encoding it for the backend statement. Open: pass "
        "the client's parameter block through unchanged when the backend statement takes the "
        "same parameters in the same order.",
    ),
    (
        "packets and buffers (proxy/channel.py, backend.py, packets.py, names.py)",
        lambda s: any(f"proxy/{m}.py" in s[1] for m in ("channel", "backend", "packets", "names")),
        False,
        "Cutting frames out of the read buffer, sequence ids, logical names in column "
        "definitions. Done: column definitions memoized by payload; reply frames already "
        "buffered are cut without an await each; small packets framed in place; the "
        "column-count frame relayed as it came. What remains is per packet "
        "(`buffered_frame`, `read_packet`).",
    ),
    (
        "session and executor (proxy/session.py, executor.py, server.py)",
        lambda s: any(f"proxy/{m}.py" in s[1] for m in ("session", "executor", "server")),
        False,
        "Dispatch, pool acquire/release, status flags, the relay loop. Done: a point query "
        "builds its one unit without a generator, session state is applied only when it "
        "differs, a prepared execution skips a coroutine when the backend has the statement. "
        "Open: the largest Python cost of a point select, spread over many small calls "
        "with no single hotspot.",
    ),
    (
        "metrics and logs (proxy/metrics.py, logs.py)",
        lambda s: "proxy/metrics.py" in s[1] or "proxy/logs.py" in s[1],
        False,
        "Per-statement counters and latency histograms.",
    ),
    (
        "everything else",
        lambda s: True,
        False,
        "Mostly proxy/stream.py's Python (receive, write, data_received) and, in write "
        "transactions, asyncio's gather/wait_for around the branches.",
    ),
]
# Hand-written: the last full run before this report's changes, and the same-conditions A/B
# that measured them (bench/hotpath.py). Update or drop with the next comparison; numbers of
# the current run come from results.json.
PREVIOUS_RUN = {
    "commit": "5582572",
    "cpu": "Intel(R) Xeon(R)",
    "point_text_us": 77,
    "point_direct_us": 34,
    "write_text_8t": (11.3, 6.0, 2.41),  # statements, XA, redo-log writes per transaction
}
AB = {
    "what": "text point select (8 threads)",
    "new": "`eae3075` (session-state and cross-shard answers fixed by review)",
    "old": "`89e3628` (the tree before them)",
    "new_min": 93.5,
    "new_median": 93.8,
    "old_min": 92.2,
    "old_median": 93.0,
    "when": "17:57-17:58 UTC, 5 runs each; prepared, 3 runs each: 88.0 / 87.0 against "
    "86.0 / 84.8 µs",
}
_SYSCALLS = ("write", "send", "read", "recv", "epoll", "close", "accept", "connect", "futex")


def _syscall(leaf: str, *names: str) -> bool:
    if "(libc" not in leaf:
        return False
    name = leaf.split(" ", 1)[0]
    return name.startswith(names or _SYSCALLS)


def _any(frames: list[str], *needles: str) -> bool:
    return any(n in f for f in frames for n in needles)


# --- formatting helpers -------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


def _size(n: float) -> str:
    return _mb(n) if n >= 2**20 else f"{n / 1024:.0f} KB"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _ratio_pct(x: float) -> str:
    """A ratio set against a target: one decimal, so that 24.6% never reads as 25%."""
    return f"{x * 100:.1f}%"


def _qps(x: float) -> str:
    return f"{x:,.0f}"


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


NOISY = 0.3  # bench/run.py's NOISY_CORES


def _others(measured: dict) -> float:
    """Cores other people's work took: their processes plus busy time charged to none of
    ours (short-lived processes), as bench/run.py's Measured.foreign_cores."""
    cpu = measured["cpu"]
    return (cpu.get("others", 0.0) + cpu.get("unattributed", 0.0)) / (measured["wall"] or 1)


def _per_query_us(measured: dict, part: str) -> float:
    queries = measured["sysbench"]["queries"]
    return measured["cpu"].get(part, 0.0) / queries * 1e6 if queries else 0.0


def _added_p95(case: dict) -> float:
    return case["proxy"]["sysbench"]["p95_ms"] - case["direct"]["sysbench"]["p95_ms"]


def _ratio(case: dict) -> float:
    direct = case["direct"]["sysbench"]["qps"]
    return case["proxy"]["sysbench"]["qps"] / direct if direct else 0.0


def _case_label(case: dict) -> str:
    return f"{case['workload']} {case['mode']} {case['threads']}t"


def _errors(sb: dict) -> str:
    parts = []
    if sb["fatal"]:
        parts.append("FAILED" + (" (rerun ignoring all errors)" if sb["ignore_all"] else ""))
    if sb["ignored_errors"]:
        parts.append(f"{sb['ignored_errors']} ignored errors")
    if sb["reconnects"]:
        parts.append(f"{sb['reconnects']} reconnects")
    return ", ".join(parts) or "none"


# --- profile ------------------------------------------------------------------------------


def _clean_frame(frame: str) -> str:
    frame = frame.replace(str(ROOT) + "/", "")
    return re.sub(r"\(/\S*/(site-packages|lib/python3\.\d+)/", "(", frame)


def parse_profile(raw: str) -> tuple[int, list[tuple[list[str], int]]]:
    stacks = []
    total = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        frames = [_clean_frame(f) for f in stack.split(";")]
        stacks.append((frames, int(count)))
        total += int(count)
    return total, stacks


def _nearest_python(frames: list[str]) -> str:
    for frame in reversed(frames):
        if ".py:" in frame or "(shardproxy:" in frame:
            return frame
    return frames[-1] if frames else "?"


def summarise_profile(raw: str) -> dict:
    total, stacks = parse_profile(raw)
    centres: collections.Counter[str] = collections.Counter()
    self_py: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        leaf = frames[-1] if frames else "?"
        python = _nearest_python(frames)
        sample = (leaf, python, frames)
        for name, test, _, _ in COST_CENTRES:
            if test(sample):
                centres[name] += count
                break
        key = leaf if "(libc" in leaf else python
        self_py[key] += count
        for frame in set(frames):
            if ".py:" in frame and ("proxy/" in frame or "router/" in frame):
                inclusive[frame] += count
    return {"total": total, "centres": centres, "self": self_py, "inclusive": inclusive}


def centre_cost_us(profile: dict, summary: dict) -> dict[str, float]:
    """Each centre's CPU µs per query: its share of the system-call samples times the proxy's
    measured system time, or of the other samples times its user time, per query."""
    queries = profile.get("queries") or 0
    if not queries:
        return {}
    kinds = {name: is_sys for name, _, is_sys, _ in COST_CENTRES}
    centres = summary["centres"]
    sys_samples = sum(n for c, n in centres.items() if kinds[c]) or 1
    user_samples = sum(n for c, n in centres.items() if not kinds[c]) or 1
    cost = {}
    for name, n in centres.items():
        if kinds[name]:
            cost[name] = n / sys_samples * profile["proxy_system"] / queries * 1e6
        else:
            cost[name] = n / user_samples * profile["proxy_user"] / queries * 1e6
    return cost


# --- chart --------------------------------------------------------------------------------


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in results["cases"] if c["threads"] != 1]
    groups = list(dict.fromkeys(f"{c['workload']}\n{c['mode']}" for c in cases))
    threads = sorted({c["threads"] for c in cases})
    width = 0.8 / max(1, len(threads))
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    colours = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]
    for j, t in enumerate(threads):
        xs, ys = [], []
        for i, g in enumerate(groups):
            for c in cases:
                if f"{c['workload']}\n{c['mode']}" == g and c["threads"] == t:
                    xs.append(i + (j - (len(threads) - 1) / 2) * width)
                    ys.append(_ratio(c) * 100)
        bars = ax.bar(xs, ys, width, label=f"{t} threads", color=colours[j % len(colours)])
        for bar, y in zip(bars, ys, strict=True):
            ax.annotate(
                f"{y:.0f}%",
                (bar.get_x() + bar.get_width() / 2, y),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    for i, g in enumerate(groups):
        target = next(c["target"] for c in cases if f"{c['workload']}\n{c['mode']}" == g)
        ax.hlines(target * 100, i - 0.45, i + 0.45, colors="black", linestyles="dashed")
        stretch = next(c["stretch"] for c in cases if f"{c['workload']}\n{c['mode']}" == g)
        if stretch:
            ax.hlines(stretch * 100, i - 0.45, i + 0.45, colors="grey", linestyles="dotted")
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    ax.set_ylabel("proxy QPS / direct QPS (%)")
    top = max([_ratio(c) * 100 for c in cases] + [50])
    ax.set_ylim(0, top * 1.18)
    ax.set_title(
        "shardproxy throughput relative to direct MariaDB (dashed: target, dotted: stretch)",
        fontsize=10,
    )
    ax.legend(fontsize=9, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- the document -------------------------------------------------------------------------


def write(results: dict, md_path: Path, png_path: Path) -> None:
    chart(results, png_path)
    md_path.write_text("\n".join(render(results, png_path.relative_to(md_path.parent))) + "\n")


def render(results: dict, png: Path) -> list[str]:
    env = results.get("environment", {})
    profile = results["profile"]
    cases = results["cases"]
    started = datetime.datetime.fromisoformat(results["started"])
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run.py (bench/report.py); rerun it rather than editing. -->",
        "",
        f"Measured {started:%Y-%m-%d %H:%M %Z} with `{results['command']}` "
        f"({'quick' if results['quick'] else 'full'} run, {results['duration_seconds'] // 60} "
        f"min {results['duration_seconds'] % 60} s), tree at `{env.get('commit', '?')}`"
        + (
            " with uncommitted changes under proxy/ or router/"
            if env.get("proxy_router_dirty")
            else ""
        )
        + ".",
        "",
        "> **Read this first.** Everything runs on one "
        f"{env.get('cores', '?')}-core machine ({env.get('cpu', '?')}, "
        f"{env.get('memory_gb', '?')} GB): sysbench, the MariaDB servers and the proxy share "
        "the same two cores, so a proxy run has four busy processes (sysbench, proxy, two "
        "shards) where a direct run has two. Other work on the machine (other people's tests "
        "in the same checkout) is measured and shown as *others' cores*; runs with much of it are "
        "less reliable. The ratios are what this box gives, not what the proxy gives next to "
        "dedicated database servers.",
        "",
    ]
    out += _comparison(results, env)
    out += _targets(results)
    out += ["", f"![proxy/direct QPS ratio by workload and thread count]({png})", ""]
    out += _findings(results)
    out += _throughput(cases)
    out += _workers(results)
    out += _relay(results)
    out += _cpu(cases)
    out += _budget(cases)
    out += _server_work(cases)
    out += _checks(results)
    out += _failures(results)
    out += _memory(results)
    out += _profiles(results)
    out += _setup(results, env, profile)
    return out


def _comparison(results: dict, env: dict) -> list[str]:
    """Why this run's numbers can't be set against earlier versions of this file, and the A/B
    that measured the changes instead."""
    point = _find(results["cases"], "point_select", "text", 8)
    write = _find(results["cases"], "oltp_write_only", "text", 8)
    if not point:
        return []
    parts = ("client", "backends", "kernel")
    proxy_us = _per_query_us(point["proxy"], "proxy")
    direct_us = sum(_per_query_us(point["direct"], k) for k in parts)
    prev = PREVIOUS_RUN
    host = (
        f"this host has a different CPU ({env.get('cpu', '?')}; the previous full run, of "
        f"tree `{prev['commit']}`, ran on an {prev['cpu']})"
        if prev["cpu"].lower() not in str(env.get("cpu", "")).lower()
        else f"the machine differs from run to run (the previous full run was of tree "
        f"`{prev['commit']}`)"
    )
    text = (
        "> **Comparing with earlier runs.** Don't set this run's ratios or CPU times against "
        f"earlier versions of this file: {host}, and how fast a host runs MariaDB and the "
        "kernel's loopback TCP, relative to the proxy's Python, moves every ratio. Here the "
        f"proxy took {proxy_us:.0f} µs of CPU per text point select (8 threads) and a whole "
        f"direct query cost the machine {direct_us:.0f} µs; in the previous run "
        f"{prev['point_text_us']} µs and {prev['point_direct_us']} µs. The evidence for this "
        f"report's changes is a same-conditions A/B instead: `bench/hotpath.py`, alternating "
        f"runs of {AB['new']} and {AB['old']} against the same shards ({AB['when']}): proxy "
        f"CPU per {AB['what']}: {AB['new_min']} µs in the least disturbed run (median "
        f"{AB['new_median']}) against {AB['old_min']} µs (median {AB['old_median']}), "
        + _change(AB["new_min"] / AB["old_min"], "by the minimum")
        + f" ({_change(AB['new_median'] / AB['old_median'], 'by the median')})."
    )
    if write and write["proxy"]["sysbench"]["transactions"]:
        p = write["proxy"]
        statements, xa, logs = prev["write_text_8t"]
        text += (
            " What the servers do per transaction depends far less on the host: for "
            f"oltp_write_only (text, 8 threads) {_per_event(p, 'Questions'):.1f} statements, "
            f"{_xa_per_event(p):.1f} XA statements and "
            f"{_per_event(p, 'Innodb_log_writes'):.2f} redo-log writes, against {statements}, "
            f"{xa} and {logs:.2f} in the previous run."
        )
    return [text, ""]


def _change(ratio: float, how: str) -> str:
    """`ratio` of new to old CPU as words: "9% less by the minimum", "1% more by ..."."""
    return f"{_pct(abs(ratio - 1))} {'more' if ratio > 1 else 'less'} {how}"


def _targets(results: dict) -> list[str]:
    cases = results["cases"]
    rows = []

    def find(workload: str, mode: str | None = None, threads: int | None = None) -> list[dict]:
        return [
            c
            for c in cases
            if c["workload"] == workload
            and (mode is None or c["mode"] == mode)
            and (threads is None or c["threads"] == threads)
            and c["threads"] != 1
        ]

    point = find("point_select")
    if point:
        worst = min(point, key=_ratio)
        rows.append(
            [
                "Point SELECT by shard key, text + prepared, 8 and 32 threads: "
                "proxy >= 35% of direct (stretch 45%)",
                f"lowest {_ratio_pct(_ratio(worst))} ({_case_label(worst)}); "
                + ", ".join(f"{c['mode']} {c['threads']}t {_ratio_pct(_ratio(c))}" for c in point),
                _mark(_ratio(worst) >= 0.35) + (" (stretch met)" if _ratio(worst) >= 0.45 else ""),
            ]
        )
    for workload in ("oltp_read_only", "oltp_write_only"):
        found = find(workload)
        if not found:
            continue
        worst = min(found, key=_ratio)
        failed = [c for c in found if c["proxy"]["sysbench"]["fatal"]]
        wrong = (
            [c for c in results.get("checks", []) if (c["wrong"] or c["error"])]
            if workload == "oltp_read_only"
            else []
        )
        note = ""
        if failed:
            note += f"; {len(failed)} run(s) failed with errors"
        if wrong:
            note += "; **answers wrong or refused, see the check below**"
        ok = _ratio(worst) >= 0.25 and not failed and not wrong
        rows.append(
            [
                f"{workload} through the proxy (sharded over 2 backends): >= 25% of direct",
                f"lowest {_ratio_pct(_ratio(worst))} ({_case_label(worst)})" + note,
                _mark(ok),
            ]
        )
    multi = results.get("workers_cases", [])
    if multi:
        worst = min(multi, key=_ratio)
        rows.append(
            [
                f"The same point SELECT target with `listen.workers: {worst['workers']}` (8 "
                "threads; informational: the issue's runs are one worker's)",
                ", ".join(f"{c['mode']} 8t {_ratio_pct(_ratio(c))}" for c in multi),
                _mark(_ratio(worst) >= 0.35) + (" (stretch met)" if _ratio(worst) >= 0.45 else ""),
            ]
        )
    relay = results.get("relay_cases", [])
    if relay:
        rows.append(
            [
                "Ceiling: a bare Python byte relay to one server (bench/bare_relay.py), point "
                "select at 8 threads (informational: the best a Python proxy could reach here)",
                ", ".join(f"{c['mode']} {_ratio_pct(_ratio(c))}" for c in relay),
                "",
            ]
        )
    at8 = find("point_select", threads=8)
    if at8:
        added = max(
            c["proxy"]["sysbench"]["p95_ms"] - c["direct"]["sysbench"]["p95_ms"] for c in at8
        )
        rows.append(
            [
                "p95 latency added by the proxy, point select at 8 threads: <= 0.5 ms",
                ", ".join(f"{c['mode']} {_added_p95(c):+.2f} ms" for c in at8),
                _mark(added <= 0.5),
            ]
        )
    idle = results.get("idle")
    if idle:
        warm, fresh = idle["warm"], idle["fresh"]
        worst = max(warm["rss_idle"], fresh["rss_idle"])
        rows.append(
            [
                f"{warm['requested']:,} idle client connections: proxy RSS <= 150 MB",
                f"{_mb(warm['rss_idle'])} on the proxy that ran the workloads, "
                f"{_mb(fresh['rss_idle'])} on a fresh one"
                + (" (some failed to open)" if warm["failed"] or fresh["failed"] else ""),
                _mark(worst <= 150 * 2**20 and not warm["failed"] and not fresh["failed"]),
            ]
        )
    scatter = results.get("scatter")
    if scatter and "proxy" in scatter:
        proxy = scatter["proxy"]
        rows.append(
            [
                f"{scatter['rows_expected']:,}-row scatter SELECT streamed: proxy RSS < 200 MB",
                f"peak {_mb(proxy['rss_peak'])} ({proxy['rows']:,} rows)",
                _mark(proxy["rss_peak"] < 200 * 2**20 and proxy["rows"] == scatter["rows_expected"])
                if scatter["rows_expected"] >= 2_000_000
                else "n/a (quick run: fewer rows)",
            ]
        )
    return [
        "## Targets (issue 6)",
        "",
        *_table(["target", "measured", ""], rows),
        "",
        "The point-select targets are judged out of reach for a CPython proxy on this host, "
        "and issue 6 blocked on that ground: the evidence, what was tried and what would "
        "change it are in [docs/decisions.md](docs/decisions.md#issue-6s-point-select-"
        "targets-on-this-host-out-of-reach-for-this-stack-the-decision).",
    ]


def _workers(results: dict) -> list[str]:
    """The point-select cases run again through a proxy of several worker processes."""
    multi = results.get("workers_cases", [])
    if not multi:
        return []
    rows = []
    for c in multi:
        d, p = c["direct"], c["proxy"]
        dsb, psb = d["sysbench"], p["sysbench"]
        single = _find(results["cases"], c["workload"], c["mode"], c["threads"])
        rows.append(
            [
                c["mode"],
                str(c["threads"]),
                _qps(dsb["qps"]),
                _qps(psb["qps"]),
                f"**{_pct(_ratio(c))}**",
                _pct(_ratio(single)) if single else "",
                f"{_added_p95(c):+.2f}",
                f"{_per_query_us(p, 'proxy'):.0f}",
                f"{p['cpu'].get('proxy', 0) / p['wall'] if p['wall'] else 0:.2f}",
                f"{_others(d):.2f} / {_others(p):.2f}",
            ]
        )
    workers = multi[0]["workers"]
    return [
        f"## Point select with {workers} worker processes",
        "",
        "One event loop is one core: with `listen.workers: N` the proxy runs N worker "
        "processes on its port (SO_REUSEPORT; docs/decisions.md). These pairs ran after the "
        f"table above, direct again and then through a second proxy with {workers} workers on "
        "the same shards; *proxy CPU/query* and *proxy cores* count every worker. On this "
        "two-core box the workers share the cores with sysbench and three MariaDB servers, so "
        "this shows what a second worker buys when there is no spare core, not the scaling "
        "on a bigger machine.",
        "",
        *_table(
            [
                "mode",
                "threads",
                "direct QPS",
                "proxy QPS",
                "ratio",
                "ratio with 1 worker (table above)",
                "added p95 ms",
                "proxy CPU/query µs",
                "proxy cores",
                "others' cores (direct / proxy)",
            ],
            rows,
        ),
        "",
    ]


def _relay_sentence(results: dict) -> str:
    """What the bare relay's ratios say about the proxy's (for the point-select finding)."""
    relay = results.get("relay_cases", [])
    if not relay:
        return ""
    parts = ", ".join(
        f"{c['mode']} {_pct(_ratio(c))} at {_per_query_us(c['proxy'], 'proxy'):.0f} µs of CPU "
        "per query"
        for c in relay
    )
    return (
        " A bare Python byte relay in front of the direct server reached "
        f'{parts} (section "The ceiling" below): the distance from there to the proxy is '
        "the proxy's own Python per statement (reading packets, routing, pooling, sessions) "
        "and the second shard, not the language's I/O."
    )


def _relay(results: dict) -> list[str]:
    """The point selects through a bare byte relay: the ceiling of any Python proxy here."""
    relay = results.get("relay_cases", [])
    if not relay:
        return []
    rows = []
    for c in relay:
        d, r = c["direct"], c["proxy"]  # the relay's measures are kept as a case's proxy's
        proxied = _find(results["cases"], c["workload"], c["mode"], c["threads"])
        rows.append(
            [
                c["mode"],
                str(c["threads"]),
                _qps(d["sysbench"]["qps"]),
                _qps(r["sysbench"]["qps"]),
                f"**{_pct(_ratio(c))}**",
                _pct(_ratio(proxied)) if proxied else "",
                f"{_added_p95(c):+.2f}",
                f"{_per_query_us(r, 'proxy'):.0f}",
                f"{_per_query_us(proxied['proxy'], 'proxy'):.0f}" if proxied else "",
                f"{r['cpu'].get('proxy', 0) / r['wall'] if r['wall'] else 0:.2f}",
                f"{_others(d):.2f} / {_others(r):.2f}",
            ]
        )
    return [
        "## The ceiling: a bare Python relay",
        "",
        "bench/bare_relay.py relays bytes between each client connection and one connection "
        "of its own to the direct server: asyncio Protocols on uvloop, one event loop, no "
        'packet parsed, nothing routed or pooled (issue 6\'s "bare Python byte relay"). These '
        "pairs ran after the table above, direct again and then through the relay. Every "
        "query through the proxy takes at least the relay's reads, writes and event-loop "
        "turns, plus parsing, routing, pooling and session work, so the relay's ratio is the "
        "best a proxy written in Python could reach on this machine (the proxy's second "
        "shard adds a server, not capacity: the two cores are shared by everything); a "
        "target above it is out of reach here whatever the proxy does.",
        "",
        *_table(
            [
                "mode",
                "threads",
                "direct QPS",
                "relay QPS",
                "relay ratio",
                "proxy ratio (table above)",
                "relay added p95 ms",
                "relay CPU/query µs",
                "proxy CPU/query µs (table above)",
                "relay cores",
                "others' cores (direct / relay)",
            ],
            rows,
        ),
        "",
    ]


def _throughput(cases: list[dict]) -> list[str]:
    rows = []
    for c in cases:
        d, p = c["direct"], c["proxy"]
        dsb, psb = d["sysbench"], p["sysbench"]
        proxy_cores = sum(p["cpu"].get(k, 0) for k in ("proxy",)) / p["wall"] if p["wall"] else 0
        rows.append(
            [
                c["workload"],
                c["mode"],
                str(c["threads"]),
                _qps(dsb["qps"]),
                _qps(psb["qps"]),
                f"**{_pct(_ratio(c))}**",
                f"{dsb['p95_ms']:.2f}",
                f"{psb['p95_ms']:.2f}",
                f"{psb['p95_ms'] - dsb['p95_ms']:+.2f}",
                f"{_per_query_us(p, 'proxy'):.0f}",
                f"{proxy_cores:.2f}",
                _mb(p["proxy_rss_peak"]),
                _errors(dsb) + " / " + _errors(psb),
                f"{_others(d):.2f} / {_others(p):.2f}"
                + (" noisy" if max(_others(d), _others(p)) > NOISY else ""),
            ]
        )
    return [
        "## Throughput and latency",
        "",
        "QPS is sysbench's queries per second (for oltp_* that counts BEGIN/COMMIT too, "
        "identically on both sides). p95 is per sysbench event: one query for point_select, "
        "one whole transaction for oltp_*. *Proxy CPU/query* is the proxy's user+system CPU "
        "time over the run divided by the queries sysbench completed; *proxy cores* is its "
        "average CPU use (the benchmark runs one worker process, one asyncio thread, so 1.0 is "
        "its ceiling). The 1-thread row is "
        "context: latency without queueing. *others' cores*: CPU that other people's work "
        "took during the run (their processes, and the machine's busy time charged to none "
        f"of ours); above {NOISY} the case was measured again (up to a "
        "limit per run) and the quieter pair kept, and *noisy* marks pairs still above it.",
        "",
        *_table(
            [
                "workload",
                "mode",
                "threads",
                "direct QPS",
                "proxy QPS",
                "ratio",
                "direct p95 ms",
                "proxy p95 ms",
                "added p95 ms",
                "proxy CPU/query µs",
                "proxy cores",
                "proxy RSS peak",
                "errors (direct / proxy)",
                "others' cores (direct / proxy)",
            ],
            rows,
        ),
        "",
    ]


def _cpu(cases: list[dict]) -> list[str]:
    rows = []
    parts = ("client", "proxy", "backends", "kernel")
    for c in cases:
        for target in ("direct", "proxy"):
            m = c[target]
            wall = m["wall"] or 1
            system = m.get("proxy_system", 0.0)
            proxy_total = m["cpu"].get("proxy", 0.0)
            rows.append(
                [
                    _case_label(c),
                    target,
                    *(f"{_per_query_us(m, k):.0f}" for k in parts),
                    f"{sum(_per_query_us(m, k) for k in parts):.0f}",
                    f"{sum(m['cpu'].get(k, 0) for k in parts) / wall:.2f}",
                    f"{m['cpu'].get('others', 0) / wall:.2f}",
                    f"{m['cpu'].get('unattributed', 0) / wall:.2f}",
                    _pct(system / proxy_total) if target == "proxy" and proxy_total else "",
                ]
            )
    return [
        "## Where the CPU goes, per query",
        "",
        "CPU microseconds per completed query, by process, from /proc: *client* is sysbench, "
        "*backends* our MariaDB servers (only the direct one is busy in a direct run), "
        "*kernel* kernel threads (ksoftirqd, kworkers). Interrupt and softirq time (loopback "
        "TCP delivery) is in the other columns: this kernel charges it to the process it "
        "interrupted. *our "
        "cores* is the sum of those over the run divided by its length (2.0 is the "
        "machine's ceiling); *others' cores* is what everybody else's processes used in the "
        "same interval and *unattributed* the machine's remaining busy time (processes that "
        "came and went). *proxy in kernel* is the share of the proxy's own CPU time spent in "
        "system calls.",
        "",
        *_table(
            [
                "case",
                "target",
                "client µs",
                "proxy µs",
                "backends µs",
                "kernel µs",
                "total µs",
                "our cores",
                "others' cores",
                "unattributed cores",
                "proxy in kernel",
            ],
            rows,
        ),
        "",
    ]


def _checks(results: dict) -> list[str]:
    checks = results.get("checks")
    if not checks:
        return []
    rows = []
    for c in checks:
        if c["error"]:
            state = f"error {c['error']}"
        elif c["wrong"]:
            state = f"**wrong {c['wrong']}/{c['checked']}**"
        else:
            state = f"ok {c['checked']}/{c['checked']}"
        rows.append(
            [
                c["statement"],
                f"`{c['sql']}`",
                c["mode"],
                state,
                (c["example"] or "").replace("|", "\\|"),
            ]
        )
    data = results.get("data", {})
    spread = data.get("spread", {})
    out = [
        "## Are the answers right?",
        "",
        "sysbench never looks at what a query returns, so a fast wrong answer would look like "
        "a success. Before the timed runs each statement shape of oltp_read_only was run "
        f"through the proxy for {results['profile']['check_ranges']} random ranges of 100 ids "
        "and compared with the same statement on the direct server over a copy of the same "
        "rows (text protocol via PyMySQL, prepared via mysql-connector's prepared cursor). "
        "Plain ranges are compared as multisets (no ORDER BY), the rest exactly.",
        "",
        *_table(["statement", "SQL", "protocol", "result", "first difference"], rows),
        "",
    ]
    if spread:
        out += [
            "Rows per shard after prepare: "
            + ", ".join(f"{t} {'/'.join(str(n) for n in v)}" for t, v in spread.items())
            + ".",
        ]
    after = results.get("rows_after_writes")
    if after:
        same = all(v["direct"] == v["shards"] for v in after.values())
        out += [
            "After the write_only runs (each transaction deletes and re-inserts one id) the "
            "tables hold "
            + (
                "the same number of rows as before on both sides."
                if same
                else "different row counts: " + str(after)
            )
        ]
    out.append("")
    return out


def _failures(results: dict) -> list[str]:
    cases = results["cases"]
    failed = [(c, t) for c in cases for t in ("direct", "proxy") if c[t]["sysbench"]["fatal"]]
    out = ["## Errors", ""]
    if not failed:
        out += [
            "No sysbench run failed; ignored errors (deadlocks and lock wait timeouts, which "
            "sysbench retries by default) are counted in the throughput table.",
            "",
        ]
    else:
        out += [
            "These runs stopped on an error. Each was measured again with "
            "`--mysql-ignore-errors=all` so the table still has a throughput, next to the "
            "number of errors that took; the failure itself is:",
            "",
        ]
        for c, target in failed:
            out += [f"- {_case_label(c)} via {target}:", "", "  ```"]
            out += ["  " + line for line in c[target]["sysbench"]["fatal"].splitlines()[:6]]
            out += ["  ```"]
        out.append("")
    log = results.get("proxy_log")
    if log:
        if log["error_count"]:
            out += [
                f"The proxy logged {log['error_count']} ERROR line(s) during the run; the "
                "first ones:",
                "",
                "```",
                *(line[:300] for line in log["errors"][:8]),
                "```",
                "",
            ]
        else:
            out += ["The proxy logged no ERROR lines during the run.", ""]
    return out


def _memory(results: dict) -> list[str]:
    out = ["## Memory", ""]
    rows = []
    if "proxy_rss_start" in results:
        rows.append(["proxy just started", _mb(results["proxy_rss_start"])])
    if "proxy_rss_after_prepare" in results:
        rows.append(["after sysbench prepare through it", _mb(results["proxy_rss_after_prepare"])])
    peaks = [c["proxy"]["proxy_rss_peak"] for c in results["cases"]]
    if peaks:
        rows.append(["peak during the sysbench runs", _mb(max(peaks))])
    idle = results.get("idle")
    if idle:
        for kind, label in (
            ("warm", "the proxy that ran the workloads"),
            ("fresh", "a freshly started proxy"),
        ):
            i = idle[kind]
            per = (i["rss_idle"] - i["rss_before"]) / max(1, i["opened"])
            if kind == "fresh":
                rows.append(["fresh proxy, just started", _mb(idle["fresh_start"])])
            rows += [
                [f"{label}: before opening idle connections", _mb(i["rss_before"])],
                [
                    f"... {i['opened']:,} idle connections open (opened in {i['open_seconds']} s)",
                    f"**{_mb(i['rss_idle'])}** ({per / 1024:+.0f} KB per connection)"
                    + (f", {i['failed']} failed to open: {i['failure']}" if i["failed"] else ""),
                ],
                [
                    "... after a COM_PING on each",
                    _mb(i["rss_after_ping"])
                    + (f" ({i['ping_failures']} pings failed)" if i["ping_failures"] else ""),
                ],
                ["... 2 s after closing them", _mb(i["rss_after_close"])],
            ]
    scatter = results.get("scatter")
    if scatter and "proxy" in scatter:
        p, d = scatter["proxy"], scatter.get("direct", {})
        rows += [
            [
                f"fresh proxy, streaming a {scatter['rows_expected']:,}-row scatter SELECT: before",
                _mb(p["rss_before"]),
            ],
            ["... peak while streaming", _mb(p["rss_peak"])],
            ["... after", _mb(p["rss_after"])],
        ]
        out += _table(["proxy RSS", ""], rows)
        out += [
            "",
            f"The scatter SELECT (`SELECT id, k, c FROM big`, ~150 bytes a row, over both "
            f"shards) was read with PyMySQL's unbuffered SSCursor: {p['rows']:,} rows in "
            f"{p['seconds']} s through the proxy ({p['rows_per_second']:,} rows/s, first row "
            f"after {p['first_row_seconds']} s, proxy CPU {p['cpu_seconds']} s) versus "
            f"{d.get('rows', 0):,} rows in {d.get('seconds', '?')} s direct "
            f"({d.get('rows_per_second', 0):,} rows/s). The client decoding rows in Python is "
            "the slowest part either way, so this shows the proxy keeps its memory bounded "
            "under a slow reader more than it measures its streaming speed.",
            "",
        ]
        return out
    out += _table(["proxy RSS", ""], rows)
    out.append("")
    return out


def _profiles(results: dict) -> list[str]:
    profiles = results.get("profiles") or []
    if not profiles:
        return []
    summaries = [(p, summarise_profile(p["raw"])) for p in profiles]
    costs = [centre_cost_us(p, s) for p, s in summaries]
    labels = [f"{p['workload']} {p['mode']} {p['threads']}t" for p in profiles]
    out = [
        "## Profile of the hot path",
        "",
        f"`py-spy record --native --function --rate {profiles[0]['rate']}` on the proxy during "
        "extra runs, not the timed ones (py-spy pauses the proxy at each sample to unwind its "
        "native stack: the QPS under the profiler is given). py-spy samples the proxy's thread "
        "whenever it is running *or runnable*; on two shared cores a runnable thread often "
        "waits for a core, and that wait lands on what it was doing, mostly a write(2) that "
        "has just woken its peer. So raw sample shares overstate system calls. The table "
        "therefore turns samples into CPU: system-call centres share the proxy's measured "
        "*system* CPU time in proportion to their samples, the others share its *user* time, "
        "both per query (from /proc during the same run). Raw sample shares are in brackets.",
        "",
        "### Cost centres (proxy CPU µs per query)",
        "",
        "Each sample is charged to the first matching centre, from its innermost frame out.",
        "",
    ]
    header = ["cost centre", *labels, "what was done / what is open"]
    rows = []
    for name, _test, _is_sys, note in COST_CENTRES:
        shares = [s["centres"].get(name, 0) / max(1, s["total"]) for _, s in summaries]
        if max(shares) < 0.005 and max(cost.get(name, 0) for cost in costs) < 1.0:
            continue
        cells = [
            f"{cost.get(name, 0):.1f} ({_pct(share)})" if cost else _pct(share)
            for cost, share in zip(costs, shares, strict=True)
        ]
        rows.append([name, *cells, note])
    rows.append(
        [
            "**proxy CPU per query** (user + system)",
            *(
                f"**{(p['proxy_user'] + p['proxy_system']) / p['queries'] * 1e6:.0f}** "
                f"({_pct(p['proxy_system'] / max(1e-9, p['proxy_user'] + p['proxy_system']))} "
                "system)"
                if p.get("queries")
                else ""
                for p, _ in summaries
            ),
            "",
        ]
    )
    rows.append(
        [
            "*samples (QPS under py-spy)*",
            *(f"{s['total']:,} ({_qps(p['qps'])})" for p, s in summaries),
            "",
        ]
    )
    out += _table(header, rows)
    for p, s in summaries:
        label = f"{p['workload']} {p['mode']} {p['threads']} threads"
        out += ["", f"### {label}: top frames (raw sample shares)", ""]
        self_rows = [
            [f"`{frame}`", _pct(count / s["total"])] for frame, count in s["self"].most_common(12)
        ]
        incl_rows = [
            [f"`{frame}`", _pct(count / s["total"])]
            for frame, count in s["inclusive"].most_common(14)
        ]
        out += [
            "Self (native frames charged to their nearest Python caller, system calls "
            "shown as themselves):",
            "",
        ]
        out += _table(["frame", "self"], self_rows)
        out += ["", "Inclusive, proxy/ and router/ frames:", ""]
        out += _table(["frame", "inclusive"], incl_rows)
    out.append("")
    return out


def _find(cases: list[dict], workload: str, mode: str, threads: int) -> dict | None:
    for c in cases:
        if (c["workload"], c["mode"], c["threads"]) == (workload, mode, threads):
            return c
    return None


def _per_event(m: dict, counter: str) -> float:
    events = m["sysbench"]["transactions"]
    return (m.get("server") or {}).get(counter, 0) / events if events else 0.0


# What is still open about each point-select cost centre (same names as COST_CENTRES); what
# was done is in COST_CENTRES' notes.
SUGGESTIONS = {
    "session and executor (proxy/session.py, executor.py, server.py)": (
        "trim per-statement Python in the session and relay path (status flags, pool "
        "acquire/release, per-call objects): after the point-query fast path it is spread over "
        "many small calls, so this is many small cuts"
    ),
    "routing (router/, plan cache hits)": (
        "a text statement is still normalized whole at every execution before its cached "
        "route is found, then bound and instantiated (`normalize`, `ShardedRoute.instantiate`); "
        "a leaner path for one-shard routes (bind only the shard key, splice the literals into "
        "a ready template) would cut the rest"
    ),
    "packets and buffers (proxy/channel.py, backend.py, packets.py, names.py)": (
        "fewer Python steps per packet when cutting frames and checking sequence ids "
        "(`buffered_frame`, `read_packet`)"
    ),
    "prepared statements (proxy/prepared.py)": (
        "pass the client's parameter block through to the backend unchanged when the "
        "backend statement takes the same parameters in the same order"
    ),
}


def _suggestions(results: dict) -> str:
    """The suggestions for the point-select profiles' largest cost centres, largest first."""
    totals: collections.Counter[str] = collections.Counter()
    for prof in results.get("profiles") or []:
        if prof["workload"] == "point_select":
            for name, us in centre_cost_us(prof, summarise_profile(prof["raw"])).items():
                totals[name] += us
    picked = [name for name, _ in totals.most_common() if name in SUGGESTIONS][:4]
    if not picked:
        return ""
    items = "; ".join(f"({chr(ord('a') + i)}) {SUGGESTIONS[name]}" for i, name in enumerate(picked))
    return f"Suggestions, for the largest costs first: {items}. "


def _cores_sentence(case: dict) -> str:
    p = case["proxy"]
    cores = p["cpu"].get("proxy", 0) / max(1e-9, p["wall"])
    if cores >= 0.9:
        return f"In the timed 8-thread run it used {cores:.2f} of a core: it is the bottleneck. "
    return (
        f"In the timed 8-thread run it used only {cores:.2f} of a core: one thread among many "
        "runnable ones (sysbench's, MariaDB's, other people's) gets less than a core when "
        "the machine is crowded. "
    )


def _profile_events(prof: dict) -> int:
    """Transactions sysbench completed during a profiled run (not stored: derived)."""
    return prof.get("transactions") or 0


def _xa_per_event(m: dict) -> float:
    return sum(_per_event(m, f"Com_xa_{k}") for k in ("start", "end", "prepare", "commit"))


def _findings(results: dict) -> list[str]:
    """The conclusions, with the numbers of this run."""
    cases = results["cases"]
    out = ["## Findings and suggestions", ""]
    point = _find(cases, "point_select", "text", 8)
    if point:
        d, p = point["direct"], point["proxy"]
        parts = ("client", "backends", "kernel")
        direct_us = sum(_per_query_us(d, k) for k in parts)
        rest_us = sum(_per_query_us(p, k) for k in parts)
        proxy_us = _per_query_us(p, "proxy")
        need = _proxy_budget(direct_us, rest_us, d["sysbench"]["qps"], 0.35)
        system = p.get("proxy_system", 0.0) / max(1e-9, p["cpu"].get("proxy", 0.0))
        top = ""
        profiles = results.get("profiles") or []
        # (the suggestions below follow the same profiles)
        prof = next(
            (x for x in profiles if (x["workload"], x["mode"]) == ("point_select", "text")), None
        )
        if prof:
            cost = centre_cost_us(prof, summarise_profile(prof["raw"]))
            ranked = sorted(cost.items(), key=lambda kv: -kv[1])[:5]
            top = "; ".join(f"{name} {us:.0f} µs" for name, us in ranked)
        out += [
            "1. **Point select is bounded by CPU per query.** In the text 8-thread case the "
            f"proxy spends {proxy_us:.0f} µs "
            f"of CPU per point select ({_pct(system)} of it in system calls) on one asyncio "
            f"thread, so it can't pass {1e6 / proxy_us:,.0f} QPS whatever the machine; here, "
            f"where everything shares two cores, a proxied query also costs {rest_us:.0f} µs "
            f"outside the proxy against {direct_us:.0f} µs for a whole direct query (the "
            f"two shards alone {_per_query_us(p, 'backends'):.0f} µs against "
            f"{_per_query_us(d, 'backends'):.0f} µs for the direct server, and twice the "
            "loopback TCP hops). "
            + (
                f"Reaching 35% in this case needs the proxy at about {need:.0f} µs per query "
                "or less "
                f"(see the bounds below), a {_pct(1 - need / proxy_us)} cut; where "
                "clients and servers have cores of their own only the one-core ceiling "
                "counts. "
                if 0 < need < proxy_us
                else f"By the bounds below, 35% in this case allows the proxy about {need:.0f} "
                "µs per query here, so on this run's host the two-core sharing, not the proxy's "
                "own CPU, decides it; where clients and servers have cores of their own only "
                "the one-core ceiling counts. "
                if need > 0
                else "On this box 35% is out of reach even with a free proxy while the rest "
                "costs that much (other people's jobs inflate it); where clients and servers "
                "have cores of their own only the proxy's ceiling counts. "
            )
            + (f"Largest costs (profile, µs per query): {top}. " if top else "")
            + _cores_sentence(point)
            + _suggestions(results)
            + "The write(2) calls, one to the client and one to the backend per query, are "
            "the minimum for a relay; their cost is the kernel's (a loopback TCP write runs "
            "the receiver's TCP input), and backends over a Unix socket did not reduce it on "
            "this machine. Beyond one core: one event loop is one core, and `listen.workers` "
            "runs N worker processes on the port (SO_REUSEPORT); this benchmark's matrix "
            "runs one worker, since its two cores are already shared with sysbench and "
            "MariaDB, and the point selects are measured again with more workers in their "
            "own section below. On a machine with spare cores, more workers raise the "
            "one-core ceiling until MariaDB or the clients become the limit."
            + _relay_sentence(results),
            "",
        ]
    ro = _find(cases, "oltp_read_only", "text", 8)
    read_only_2pc = False
    if ro:
        d, p = ro["direct"], ro["proxy"]
        log_writes = _per_event(p, "Innodb_log_writes")
        read_only_2pc = log_writes >= 0.1
        counts = (
            f"{_per_event(p, 'Questions'):.0f} statements on the servers per transaction "
            f"against {_per_event(d, 'Questions'):.0f} direct (of them {_xa_per_event(p):.0f} "
            f"XA statements) and {log_writes:.1f} redo-log writes per transaction against "
            f"{_per_event(d, 'Innodb_log_writes'):.1f}"
        )
        if read_only_2pc:
            out += [
                "2. **Read-only transactions pay for two-phase commit.** sysbench wraps every "
                "oltp_read_only event in BEGIN ... COMMIT; its random ids reach both shards, "
                f"so the proxy runs XA on both: {counts}: XA PREPARE and the decision-log "
                "insert are durable writes for a transaction that changed nothing. "
                "Suggestion: remember per branch whether it wrote; at COMMIT end branches "
                "that only read with `XA END` + `XA COMMIT ... ONE PHASE` and run two-phase "
                "commit, with its decision-log row, only among branches that wrote.",
                "",
            ]
        else:
            out += [
                "2. **Read-only transactions don't pay for two-phase commit** (branches that "
                "only read end with XA END + XA COMMIT ONE PHASE): sysbench's BEGIN ... COMMIT "
                f"around oltp_read_only costs {counts}. What is left is round trips and "
                "statements: per shard an XA START and, at COMMIT, one packet with XA END + "
                "XA COMMIT ONE PHASE. XA START already travels in the packet of the branch's "
                "first text statement (one round trip less per shard; the server still counts "
                "it as a statement). Open: prepared statements still start a branch with a "
                "round trip of its own, since a COM_STMT_EXECUTE can't share a packet and "
                "pipelining it behind XA START would run it outside the branch if XA START "
                "failed.",
                "",
            ]
    merge_name = next(name for name, *_ in COST_CENTRES if name.startswith("cross-shard merge"))
    for prof in results.get("profiles") or []:
        if prof["workload"] != "oltp_read_only" or not prof.get("queries"):
            continue
        cost = centre_cost_us(prof, summarise_profile(prof["raw"]))
        total = (prof["proxy_user"] + prof["proxy_system"]) / prof["queries"] * 1e6
        merge = cost.get(merge_name, 0.0)
        events = _profile_events(prof)
        per_txn = (
            f", about {merge * prof['queries'] / events / 1000:.1f} ms of CPU per transaction "
            "for its four range statements of 100 rows"
            if events
            else ""
        )
        out += [
            f"3. **Merging cross-shard results is oltp_read_only's largest proxy cost**: in "
            f"the {prof['mode']} profile it took {merge:.0f} of the proxy's {total:.0f} µs "
            f"per query ({_pct(merge / total)}){per_txn}. Rows are no longer decoded and "
            "encoded again: a merge that only picks and orders rows (ORDER BY, DISTINCT) "
            "relays each shard row's own bytes cut to the client's columns and decodes only "
            "its key cells (`KeyRows`, one loop per row; string keys as padded weight bytes "
            "compared in C), "
            "a plain range is relayed a received chunk at a time, and only SUM's aggregate "
            "decodes, one row per group. Rows are read in batches (every row a connection has "
            "received, in one loop) and a merge sort orders what is ready with one stable C "
            "sort instead of a heap step per row (1,135 -> 775 µs of proxy CPU per 100-row "
            "ORDER BY over two shards, one client; prepared rows read in one loop like text "
            "ones: 675 -> 555 µs). What remains is per-row Python: walking each row's cells "
            "(`KeyRows`) and computing its sort key; "
            "compiling these loops with mypyc cut oltp_read_only's CPU by 27% in a trial, "
            "but was not adopted (docs/decisions.md).",
            "",
        ]
        break
    wo = _find(cases, "oltp_write_only", "text", 8)
    if wo:
        d, p = wo["direct"], wo["proxy"]
        out += [
            "3. **Write transactions spanning both shards are two-phase by design**: "
            f"{_per_event(p, 'Innodb_log_writes'):.1f} redo-log writes per oltp_write_only "
            f"transaction through the proxy against {_per_event(d, 'Innodb_log_writes'):.2f} "
            "direct (MariaDB's group commit shares one log write among many concurrent "
            f"commits), and {_per_event(p, 'Questions'):.1f} statements on the servers "
            f"against {_per_event(d, 'Questions'):.0f}. Done: the log backend's branch "
            "carries the decision row and commits in one phase (one XA PREPARE fewer and no "
            "separate decision insert when a writing branch is on the log backend), "
            "decisions that can't be carried are group-committed (one multi-row INSERT for "
            "concurrent commits), finished decisions are deleted in batches off the commit "
            "path, and XA START goes in the packet of a branch's first text statement. What "
            "is left is two-phase commit itself: the other shard's XA PREPARE and the "
            "carrier's commit are each a durable write"
            + (
                "; and the read-only rule above should also cover write transactions whose "
                "other branch only read."
                if read_only_2pc
                else "."
            ),
            "",
        ]
    prep_p, prep_d = results.get("prepare_proxy_seconds"), results.get("prepare_direct_seconds")
    if prep_p and prep_d:
        out += [
            f"4. **Bulk loading**: sysbench prepare took {prep_p} s through the proxy against "
            f"{prep_d} s direct. Multi-row INSERTs are planned by the forms of their rows (one "
            "cached route per head, row forms and tail whatever the row count; each shard's "
            "rows formatted at once), so what is left is splitting the rows by shard, relaying "
            "the text and an XA commit across both shards per INSERT"
            + (
                ". Still slow: load big data sets into the shards directly, or in "
                "single-shard batches."
                if prep_p > 5 * prep_d
                else "."
            ),
            "",
        ]
    idle, scatter = results.get("idle"), results.get("scatter")
    if idle and scatter and "proxy" in scatter:
        fresh, warm = idle["fresh"], idle["warm"]
        per = (fresh["rss_idle"] - fresh["rss_before"]) / max(1, fresh["opened"])
        text = (
            f"5. **Memory**: about {per / 1024:.0f} KB per idle client connection on a fresh "
            f"proxy ({_mb(fresh['rss_idle'])} with {fresh['opened']:,} open), and streaming "
            f"{scatter['proxy']['rows']:,} rows moved its RSS from "
            f"{_mb(scatter['proxy']['rss_before'])} to a peak of "
            f"{_mb(scatter['proxy']['rss_peak'])}: streaming is bounded. "
        )
        start, after = results.get("proxy_rss_start"), results.get("proxy_rss_after_prepare")
        cache = results.get("plan_cache_bulk_insert") or {}
        if start and after:
            grown = warm["rss_idle"] - start
            close = " (close to the 150 MB target)" if warm["rss_idle"] > 120 * 2**20 else ""
            share = _pct(min(1.0, (after - start) / grown)) if grown > 0 else "none"
            text += (
                f"The proxy that ran the workloads held {_mb(warm['rss_idle'])} with the same "
                f"connections{close}; "
                f"{share} of its growth over "
                f"a fresh one came from `sysbench prepare` ({_mb(start)} at start, "
                f"{_mb(after)} after it). "
            )
            if "per_shape" in cache:
                text += (
                    f"Planning one ~{cache['rows']:,}-row INSERT like prepare's "
                    f"({cache.get('text_chars', 0) / 1024:.0f} KB of text, row counts growing "
                    f"with the ids) grows a Router's RSS by about {_size(cache['per_shape'])} "
                    "per statement. "
                )
                if cache.get("cached"):
                    text += (
                        f"Yet {cache['cached']} of the {cache['shapes']} went into the "
                        "router's shape cache, where a whole-shape plan holds a template per "
                        "row: bulk INSERTs should be cached by their row forms, and texts "
                        "over 64 KB not by shape at all (router/planner.py). "
                    )
                elif cache.get("cached") == 0:
                    text += (
                        "None went into the shape cache: bulk INSERTs are cached by their "
                        "row forms, so these share one small route whatever their row count, "
                        "and what stays is the allocator's memory from planning big "
                        "statements. "
                    )
        out += [text, ""]
    checks = results.get("checks") or []
    bad = [c for c in checks if c["wrong"] or c["error"]]
    out += [
        (
            f"6. **Answers**: {len(bad)} of {len(checks)} statement/protocol checks differ "
            "from the direct server: see *Are the answers right?*; their throughput means "
            "nothing until they are right."
            if bad
            else f"6. **Answers**: all {len(checks)} statement/protocol checks of "
            "oltp_read_only's queries match the direct server."
        ),
        "",
    ]
    number = 0
    for i, line in enumerate(out):
        if re.match(r"\d+\. \*\*", line):
            number += 1
            out[i] = f"{number}." + line.split(".", 1)[1]
    return out


def _server_work(cases: list[dict]) -> list[str]:
    """Statements and fsyncs the MariaDB servers did per sysbench event."""
    rows = []
    for c in cases:
        if c["threads"] == 1:
            continue
        cells = []
        for target in ("direct", "proxy"):
            m = c[target]
            events = m["sysbench"]["transactions"]
            server = m.get("server") or {}
            if not events or not server:
                cells += ["", "", "", ""]
                continue
            xa = sum(server.get(f"Com_xa_{k}", 0) for k in ("start", "end", "prepare", "commit"))
            cells += [
                f"{server.get('Questions', 0) / events:.1f}",
                f"{xa / events:.1f}",
                f"{server.get('Innodb_log_writes', 0) / events:.2f}",
                f"{server.get('Innodb_data_fsyncs', 0) / events:.2f}",
            ]
        rows.append([_case_label(c), *cells])
    if not rows:
        return []
    return [
        "## What the servers did per sysbench event",
        "",
        "From `SHOW GLOBAL STATUS` before and after each run, summed over the servers that "
        "did the work (the direct server, or both shards), divided by sysbench's events "
        "(transactions; one query for point_select). *statements* is `Questions` (every "
        "statement a server executed, the proxy's XA statements and decision-log inserts "
        "included); *XA* is XA START + END + PREPARE + COMMIT; *log writes* is "
        "`Innodb_log_writes` (redo log writes, about one per durable commit or XA PREPARE) "
        "and *fsyncs* `Innodb_data_fsyncs`.",
        "",
        *_table(
            [
                "case",
                "direct: statements",
                "direct: XA",
                "direct: log writes",
                "direct: fsyncs",
                "proxy: statements",
                "proxy: XA",
                "proxy: log writes",
                "proxy: fsyncs",
            ],
            rows,
        ),
        "",
    ]


def _proxy_budget(direct_us: float, rest_us: float, direct_qps: float, ratio: float) -> float:
    """Proxy CPU µs per query that allows `ratio`: both the machine's bound and one core's."""
    return min(direct_us / ratio - rest_us, 1e6 / (ratio * direct_qps))


def _needed(us: float) -> str:
    return f"{us:.0f}" if us > 0 else "unreachable (R alone is too much)"


def _budget(cases: list[dict]) -> list[str]:
    """What the proxy's CPU per query would have to be for the point-select targets."""
    parts = ("client", "backends", "kernel")
    rows = []
    for c in cases:
        if c["workload"] != "point_select" or c["threads"] == 1:
            continue
        d, p = c["direct"], c["proxy"]
        direct_us = sum(_per_query_us(d, k) for k in parts)
        rest_us = sum(_per_query_us(p, k) for k in parts)
        proxy_us = _per_query_us(p, "proxy")
        if not direct_us or not proxy_us:
            continue
        rows.append(
            [
                _case_label(c),
                f"{direct_us:.0f}",
                f"{rest_us:.0f}",
                f"{proxy_us:.0f}",
                _pct(direct_us / (rest_us + proxy_us)),
                _pct(1e6 / proxy_us / d["sysbench"]["qps"]),
                _needed(_proxy_budget(direct_us, rest_us, d["sysbench"]["qps"], 0.35)),
                _needed(_proxy_budget(direct_us, rest_us, d["sysbench"]["qps"], 0.45)),
            ]
        )
    if not rows:
        return []
    return [
        "## What bounds the point-select ratio on this machine",
        "",
        "With every process sharing two cores, a direct query costs the machine *D* µs of CPU "
        "(sysbench + MariaDB + kernel threads) and a proxied one *R* µs outside the proxy plus the "
        "proxy's *P*. If the machine is the bottleneck, the ratio can't exceed D / (R + P); "
        "the proxy, one asyncio thread in one worker process, also can't exceed 1 / P queries "
        "per second. The last "
        "two columns give the proxy CPU per query that satisfies both bounds for 35% and "
        "45% here, all else equal (R itself shrinks somewhat as throughput rises: busier "
        "servers and clients do more per wake-up).",
        "",
        *_table(
            [
                "case",
                "D: direct µs/q",
                "R: proxied, outside the proxy µs/q",
                "P: proxy µs/q",
                "bound D/(R+P)",
                "bound from one proxy core",
                "P for 35%",
                "P for 45%",
            ],
            rows,
        ),
        "",
    ]


def _setup(results: dict, env: dict, profile: dict) -> list[str]:
    cases = results["cases"]
    seconds = profile["seconds"]
    return [
        "## Setup",
        "",
        "- **Servers**: three private `mariadbd` (scripts/mariadb_instances.py) with identical "
        "settings: two shards and one *direct* reference server the proxy never touches "
        "(a separate server rather than a third database on a shard, so the direct run has a "
        "server to itself exactly as each shard does). Options: the repository's test settings "
        "(utf8mb4, no binary log, InnoDB default durability: a flush per commit) plus "
        "`--innodb-buffer-pool-size=768M` so every table is in memory on every server.",
        f"- **Data**: `sysbench oltp_read_write prepare --tables={profile['tables']} "
        f"--table-size={profile['table_size']} --auto-inc=off`, once through the proxy "
        f"({results.get('prepare_proxy_seconds', '?')} s: every multi-row INSERT is split by "
        "shard and commits with XA) and once on the direct server "
        f"({results.get('prepare_direct_seconds', '?')} s). `sbtest1..N` and `big` are sharded "
        "by `id` with `mod` over the two shards (`tables_per_backend: 1`): even ids on shard 0, "
        "odd on shard 1. Pools at their defaults (at most 32 connections per backend).",
        f"- **Runs**: for each case a discarded {profile['warmup']} s warm-up, then "
        f"{seconds} s measured, direct first, then proxy; `--rand-type=uniform`, "
        "`--db-ps-mode=disable` (text) or `auto` (prepared), sysbench's default error handling "
        "(deadlocks and lock waits are retried and counted). oltp_read_only and "
        "oltp_write_only run as sysbench defines them: BEGIN ... COMMIT around each transaction "
        "of 14 (read) or 4 (write) statements with random ids, so most transactions touch both "
        "shards (the proxy runs them as XA; read_only's ranges, SUM, ORDER BY and DISTINCT "
        "over `id BETWEEN` go to both shards).",
        f"- **Cases**: {len(cases)} (workload x protocol x threads), "
        f"{env.get('sysbench', 'sysbench')}, MariaDB {env.get('mariadb', '?')}, Python "
        f"{env.get('python', '?')}, kernel {env.get('kernel', '?')}; load average before the "
        f"run {', '.join(f'{x:.2f}' for x in env.get('load_before', []))}.",
        (
            "- **Other people's jobs**: a quick run neither waits for them nor re-measures."
            if results["quick"]
            else "- **Other people's jobs**: before each case the run waits (up to 3 minutes "
            f"in all) while other processes use more than {NOISY} cores, and re-measures a "
            "noisy case (up to 4 times per run), keeping the quieter pair; it waited "
            f"{results.get('waited_for_quiet_seconds', 0)} s this time."
        ),
        "- **Reproduce**: `.venv/bin/python bench/run.py` (15-20 minutes; `--quick` for a "
        "3-minute smaller run). It installs sysbench (apt-get) and bench/requirements.txt "
        "when missing, keeps servers, logs, raw py-spy output and `results.json` in "
        "`bench/.run/`, and `--report-only` rewrites this file from them.",
        "",
    ]
