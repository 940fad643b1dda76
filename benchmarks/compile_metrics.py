"""What torch.compile did in this process, graph by graph, from dynamo's own records: where a cold start goes.

torch keeps one `CompilationMetrics` record per frame compile (dynamo tracing, AOTAutograd, inductor's forward),
per lazy backward compile (inductor, at the first backward) and per runtime autotune
(`torch._dynamo.utils.get_compilation_metrics()`, a deque of 64 by default: `start` raises the limit and clears it).
`summary` turns the records since `start` into JSON-ready rows and totals:

    graphs       forward frame compiles that produced code (one per region and guard set)
    recompiles   compiles of a code object that already had compiled code in this process, from this or an
                 earlier variant (the `[frame/k]` ids with k > 0 in torch's logs), each with torch's
                 `recompile_reason` (the guards that failed); `frames` counts the graphs per code object
    restarts     compiles that traced their frame twice (`[frame/k_1]`: a graph break or a float dynamo could not
                 keep symbolic), `graph_breaks` (dynamo's counter) and `failed` frames (dynamo gave up: run eagerly)
    seconds      per record and summed: the whole compile, dynamo tracing alone, AOTAutograd (which includes
                 inductor's forward), inductor, Triton kernel compilation, autotuning; backward compiles apart

plus the FX-graph and AOTAutograd cache hits and misses, so a warm start shows what it read. Field names follow
torch 2.11-2.14; a field a torch lacks reads as None.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

RECORD_LIMIT = 4096
_US = {"dynamo_s": "dynamo_cumulative_compile_time_us", "aot_s": "aot_autograd_cumulative_compile_time_us",
       "inductor_s": "inductor_cumulative_compile_time_us", "triton_s": "triton_compile_time_us",
       "autotune_s": "compile_time_autotune_time_us", "runtime_autotune_s": "runtime_triton_autotune_time_us",
       "backward_s": "backward_cumulative_compile_time_us"}
_CACHE = {"fx_hit": "inductor_fx_local_cache_hit_count", "fx_miss": "inductor_fx_local_cache_miss_count",
          "aot_hit": "aotautograd_local_cache_hit_count", "aot_miss": "aotautograd_local_cache_miss_count"}
_graph_breaks_at_start: Counter = Counter()


def start() -> None:
    """Forget earlier records (and keep up to `RECORD_LIMIT`): `summary` then covers what compiles from here on."""
    from torch._dynamo import utils

    if hasattr(utils, "set_compilation_metrics_limit"):
        utils.set_compilation_metrics_limit(RECORD_LIMIT)
    utils.clear_compilation_metrics()
    _graph_breaks_at_start.clear()
    _graph_breaks_at_start.update(_graph_break_counts())


def _graph_break_counts() -> Counter:
    from torch._dynamo.utils import counters

    return Counter(dict(counters["graph_break"]))


def _seconds(value: Any) -> float | None:
    return None if value is None else value / 1e6


def record_row(record: Any) -> dict[str, Any]:
    """One `CompilationMetrics` record as a flat dict: which frame, which kind of compile, its seconds by stage."""
    get = lambda name: getattr(record, name, None)  # noqa: E731 - fields differ between torch versions
    kind = "runtime" if get("is_runtime") else ("backward" if get("is_forward") is False else "forward")
    seconds = _seconds(get("duration_us"))
    if seconds is None and get("entire_frame_compile_time_s") is not None:
        seconds = get("entire_frame_compile_time_s")
    row = dict(compile_id=str(get("compile_id")), kind=kind,
               frame=f"{get('co_name')} {Path(get('co_filename') or '?').name}:{get('co_firstlineno')}",
               seconds=seconds, **{k: _seconds(get(v)) for k, v in _US.items()})
    if row["dynamo_s"] is not None and row["aot_s"] is not None:
        row["trace_s"] = row["dynamo_s"] - row["aot_s"]  # dynamo's own tracing: its cumulative time holds AOT's
    row.update({k: get(v) for k, v in _CACHE.items()})
    row.update(graph_ops=get("graph_op_count"), guards=get("guard_count"), recompile_reason=get("recompile_reason"),
               restart_reasons=sorted(get("restart_reasons") or []), fail_type=get("fail_type"),
               fail_reason=(get("fail_reason") or "")[:300] or None, has_code=get("has_guarded_code"))
    return row


def summary() -> dict[str, Any]:
    """The records since `start` (`rows`) and their totals (see the module docstring)."""
    from torch._dynamo import utils

    rows = [record_row(r) for r in utils.get_compilation_metrics()]
    forward = [r for r in rows if r["kind"] == "forward"]
    frames = {r["compile_id"]: r["frame"] for r in forward}
    for row in rows:  # torch names the frame in forward records only; a backward record shares its compile id
        if row["kind"] != "forward":
            row["frame"] = frames.get(row["compile_id"], row["frame"])
    per_frame = Counter(r["frame"] for r in forward if r["has_code"] is not False and not r["fail_type"])
    total = lambda rs, key: round(sum(r[key] or 0.0 for r in rs), 3)  # noqa: E731
    breaks = _graph_break_counts() - _graph_breaks_at_start
    out = dict(graphs=sum(per_frame.values()), frames=dict(per_frame),
               recompiles=sum(1 for r in forward if r["recompile_reason"]),
               restarts=sum(1 for r in forward if r["restart_reasons"]),
               graph_breaks=sum(breaks.values()), graph_break_reasons=dict(breaks.most_common(10)),
               failed=[f"{r['frame']}: {r['fail_type']}: {r['fail_reason']}" for r in forward if r["fail_type"]],
               forward_s=total(forward, "seconds"), trace_s=total(forward, "trace_s"),
               aot_s=total(forward, "aot_s"), inductor_s=total(rows, "inductor_s"),
               triton_s=total(rows, "triton_s"), autotune_s=total(rows, "autotune_s"),
               backward_s=total([r for r in rows if r["kind"] == "backward"], "seconds"),
               runtime_autotune_s=total(rows, "runtime_autotune_s"),
               **{k: sum(r[k] or 0 for r in rows) for k in _CACHE}, rows=rows)
    out["compile_s"] = round(out["forward_s"] + out["backward_s"], 3)
    return out


def format_summary(stats: dict[str, Any], *, indent: str = "    ") -> str:
    """A few log lines: totals, then one line per compile (frame, kind, seconds by stage, why it recompiled)."""
    lines = [f"{indent}compiled {stats['graphs']} graphs ({stats['recompiles']} recompiles, {stats['restarts']} "
             f"restarts, {stats['graph_breaks']} graph breaks, {len(stats['failed'])} failed frames) in "
             f"{stats['compile_s']:.1f} s: forward {stats['forward_s']:.1f} s (tracing {stats['trace_s']:.1f}, "
             f"AOT+inductor {stats['aot_s']:.1f}), backward {stats['backward_s']:.1f} s, Triton "
             f"{stats['triton_s']:.1f} s, autotune {stats['autotune_s']:.1f} s (+{stats['runtime_autotune_s']:.1f} at "
             f"run time); FX cache {stats['fx_hit']} hit / {stats['fx_miss']} miss, AOT cache {stats['aot_hit']} "
             f"hit / {stats['aot_miss']} miss"]
    for row in stats["rows"]:
        stages = " ".join(f"{k[:-2]} {row[k]:.1f}" for k in ("trace_s", "inductor_s", "triton_s", "autotune_s")
                          if row.get(k))
        why = f"  <- {row['recompile_reason'][:160]}" if row["recompile_reason"] else ""
        why += f"  restarted: {'; '.join(row['restart_reasons'])[:120]}" if row["restart_reasons"] else ""
        why += f"  FAILED: {row['fail_type']}" if row["fail_type"] else ""
        seconds = f"{row['seconds']:.1f} s" if row["seconds"] is not None else "? s"
        lines.append(f"{indent}  [{row['compile_id']}] {row['kind']:<8} {row['frame']:<48} {seconds:>8} {stages}{why}")
    for reason, count in stats["graph_break_reasons"].items():
        lines.append(f"{indent}  graph break x{count}: {reason[:200]}")
    return "\n".join(lines)

