"""Contender: this app's job, `ReminderRun.remind_definitions()` over every definition.

It runs as the function app does: the real ManagedIdentityTokenProvider against the identity
emulator, a GraphClient with default batching and pacing, and the pending check on.

    python bench/contenders/product.py --max-concurrency 4
"""

from __future__ import annotations

import _common  # first: installs the loopback guard

# isort: split

import argparse
import asyncio
import logging
import time
from collections import Counter
from typing import Any

from review_reminders.auth import ManagedIdentityTokenProvider
from review_reminders.graph import GraphClient
from review_reminders.jobs import ReminderRun, RunOptions
from review_reminders.settings import Settings

# How often the pacer's state is sampled for the timeline in the report.
SAMPLE_EVERY_S = 1.0


class _PacerLog(logging.Handler):
    """Logging handler that keeps the pacer's warnings, with the time since the job started."""

    def __init__(self, started: float) -> None:
        super().__init__(logging.WARNING)
        self.started = started
        self.lines: list[tuple[float, str]] = []
        self.other_warnings: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        at = record.created - self.started
        if record.name == "review_reminders.pacer":
            self.lines.append((round(at, 2), record.getMessage()))
        else:
            # Group by the message's format string, so counts do not split per URL.
            self.other_warnings[f"{record.name}: {record.msg}"] += 1


async def _sample_pacer(graph: GraphClient, started: float, out: list[dict[str, Any]]) -> None:
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        pace = graph.pacer.pace_per_s
        out.append(
            {
                "t": round(time.perf_counter() - started, 1),
                "pace_per_s": None if pace is None else round(pace, 1),
                "throttled": graph.pacer.throttled,
                "batches": graph.batches_sent,
            }
        )


async def run(max_concurrency: int) -> _common.Report:
    settings = Settings(graph_endpoint=_common.graph_endpoint(), max_concurrency=max_concurrency)
    tokens = ManagedIdentityTokenProvider(settings.graph_scope)
    graph = GraphClient(settings, tokens)

    timeline: list[dict[str, Any]] = []
    wall_started = time.time()
    started = time.perf_counter()
    log = _PacerLog(wall_started)
    logging.getLogger("review_reminders").addHandler(log)
    sampler = asyncio.create_task(_sample_pacer(graph, started, timeline))
    try:
        results = await ReminderRun(graph, RunOptions(pending_check=True)).remind_definitions()
        wall_s = time.perf_counter() - started
    finally:
        sampler.cancel()
        await graph.aclose()
        await tokens.close()

    outcomes = Counter(result.outcome.value for result in results)
    return _common.Report(
        wall_s=wall_s,
        sent=outcomes.get("sent", 0),
        failed=outcomes.get("failed", 0),
        extra={
            "outcomes": dict(outcomes),
            "batches_sent": graph.batches_sent,
            "pacer_throttled": graph.pacer.throttled,
            "final_pace_per_s": graph.pacer.pace_per_s,
            "pacer_log": log.lines,
            "other_warnings": dict(log.other_warnings),
            "timeline": timeline,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-concurrency", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.max_concurrency)).emit()


if __name__ == "__main__":
    main()
