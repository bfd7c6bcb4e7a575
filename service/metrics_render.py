"""The /metrics text of prometheus_client's multiprocess files, without rebuilding it each scrape.

prometheus_client's `MultiProcessCollector` re-reads every worker's file on each scrape, parses
every key (a JSON document per series: ~500 of them, most of them the request latency buckets),
merges the workers' series and formats every line again: 3.5 ms of a replica's CPU per scrape,
which at one scrape a second is a fifth of a 0.05-CPU replica's quota before any request.

Here the expensive part is done once per change of the files' layout: the workers' files only
ever grow (a new series appends its key, values are overwritten in place), so a file's
`used` size says whether it holds new series. For a layout, `_Plan` knows which output line
each stored value adds to and where the value sits in its file. A scrape then reads the files,
sums the values per line (numpy), accumulates the histogram buckets and formats only the lines
whose value changed since the previous scrape.

The text is the one `generate_latest(MultiProcessCollector)` writes, line for line (the plan
renders its first text with prometheus_client's own `generate_latest`), for the file kinds this
service writes: counters, histograms and gauges in the summing modes. A file of another kind
(another gauge mode) makes the renderer hand the scrape to prometheus_client.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

# Gauge modes whose value is the sum over the files (live: a dead worker's file is deleted).
SUMMED_GAUGE_MODES = ("sum", "livesum")
_HEADER = 8  # a file starts with its used size (4 bytes) and 4 bytes of padding
# A directory's mtime moves when a file is created or deleted in it, but in steps of the kernel's
# clock tick: a file created in the tick of a listing leaves it unchanged. So a listing is only
# trusted when it began at least this long after the mtime it saw; until then it is made again.
_MTIME_SETTLE_NS = 1_000_000_000


class UnsupportedFile(Exception):
    """A multiprocess file kind this renderer does not merge."""


@dataclass
class _File:
    """One worker file, mapped read-only: its kind and where each series' value sits.

    The mapping shares the writer's pages, so a scrape reads the current values without a
    system call; it is made again when the file has grown past it (the writer doubles it).
    """

    kind: str  # counter, histogram, gauge
    mode: str  # the gauge's multiprocess mode, "" otherwise
    inode: int
    data: mmap.mmap | None = None
    used: int = _HEADER
    # (key, index of the value in the file as float64s), in file order
    entries: list[tuple[str, int]] = field(default_factory=list)
    rendered: bytes = b""  # the file's used bytes as the last render read them

    def map(self, path: str) -> None:
        if self.data is not None:
            self.data.close()
        with open(path, "rb") as stored:
            self.data = mmap.mmap(stored.fileno(), 0, access=mmap.ACCESS_READ)

    def stored_used(self) -> int:
        assert self.data is not None
        return int.from_bytes(self.data[:4], "little")

    def parse(self, used: int) -> None:
        """Reads the entries appended since the last call (the format of mmap_dict.py)."""
        data = self.data
        assert data is not None
        pos = self.used
        while pos < used:
            length = int.from_bytes(data[pos : pos + 4], "little")
            key = data[pos + 4 : pos + 4 + length].decode("utf-8")
            pos += 4 + length + (8 - (length + 4) % 8)  # padded to 8 bytes
            self.entries.append((key, pos // 8))
            pos += 16  # value, timestamp
        self.used = used


def _file_kind(name: str) -> tuple[str, str]:
    """(kind, gauge mode) from a file name: counter_PID.db, gauge_livesum_PID.db, ..."""
    parts = name[: -len(".db")].split("_")
    if parts[0] == "gauge":
        if len(parts) != 3 or parts[1] not in SUMMED_GAUGE_MODES:
            raise UnsupportedFile(name)
        return "gauge", parts[1]
    if parts[0] not in ("counter", "histogram") or len(parts) != 2:
        raise UnsupportedFile(name)
    return parts[0], ""


@dataclass
class _Plan:
    """For one layout of the files: how stored values become the output lines."""

    lines: list[bytes]  # the whole text, one entry per line (with its newline)
    prefixes: list[bytes]  # per output value: the line up to its value
    line_of: list[int]  # per output value: its index in `lines`
    sources: list[np.ndarray]  # per file: the positions of its values (float64 indices)
    targets: np.ndarray  # per value read (files in order): the output value it adds to
    cumulative: list[tuple[int, int]]  # bucket ranges [start, end) whose values accumulate
    counts: list[tuple[int, int]]  # (output value of a histogram's _count, its last bucket)
    values: np.ndarray  # the values the lines hold now


ParsedKey = tuple[str, str, dict[str, str], str]  # metric name, sample name, labels, help
Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


def _go_float(value: float) -> str:
    # floatToGoString is repr() below 1e6 (Go writes exponents from there); counts and sums
    # of seconds almost always are, and repr() costs a tenth of it.
    if -math.inf < value < 1e6:
        return repr(value)
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]  # untyped upstream
    return text


def _parse_key(key: str, cache: dict[str, ParsedKey]) -> ParsedKey:
    parsed = cache.get(key)
    if parsed is None:
        metric_name, name, labels, help_text = json.loads(key)
        parsed = cache[key] = (metric_name, name, labels, help_text)
    return parsed


class _Collector:
    """Yields given metric families to generate_latest."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def _build_plan(files: list[_File], key_cache: dict[str, ParsedKey]) -> _Plan:
    """How the values of these files, in this order, make the text."""
    # metric name -> (kind, help, series key -> output slot); series keep first-seen order.
    metrics: dict[str, tuple[str, str, dict[tuple[str, Labels], int]]] = {}
    slot_names: list[tuple[str, Labels]] = []
    sources: list[np.ndarray] = []
    targets: list[int] = []
    for known in files:
        sources.append(np.asarray([index for _, index in known.entries], dtype=np.intp))
        for key, _ in known.entries:
            metric_name, name, labels, help_text = _parse_key(key, key_cache)
            kind, _, series = metrics.setdefault(metric_name, (known.kind, help_text, {}))
            labels_key = tuple(sorted(labels.items()))
            slot = series.get((name, labels_key))
            if slot is None:
                slot = series[(name, labels_key)] = len(slot_names)
                slot_names.append((name, labels_key))
            targets.append(slot)
    # Output order: per metric; a histogram's buckets per label set in `le` order, then its
    # _count (the accumulated total, as MultiProcessCollector writes it), then its _sum.
    order: list[int] = []  # output position -> slot, -1 for a _count
    families: list[Metric] = []
    cumulative: list[tuple[int, int]] = []
    counts: list[tuple[int, int]] = []
    for metric_name, (kind, help_text, series) in metrics.items():
        family = Metric(metric_name, help_text, kind)
        if kind == "histogram":
            groups: dict[Labels, list[tuple[float, int]]] = {}
            sums: dict[Labels, int] = {}
            for (name, labels_key), slot in series.items():
                le = dict(labels_key).get("le")
                without_le = tuple(item for item in labels_key if item[0] != "le")
                if name == metric_name + "_bucket" and le is not None:
                    groups.setdefault(without_le, []).append((float(le), slot))
                else:
                    sums[labels_key] = slot
            for labels_key in dict.fromkeys([*groups, *sums]):
                buckets = sorted(groups.get(labels_key, []))
                start = len(order)
                for bound, slot in buckets:
                    order.append(slot)
                    family.add_sample(
                        metric_name + "_bucket",
                        dict(labels_key) | {"le": _go_float(bound)},
                        0.0,
                    )
                if buckets:
                    cumulative.append((start, len(order)))
                    counts.append((len(order), len(order) - 1))
                    order.append(-1)
                    family.add_sample(metric_name + "_count", dict(labels_key), 0.0)
                if labels_key in sums:
                    slot = sums[labels_key]
                    order.append(slot)
                    family.add_sample(slot_names[slot][0], dict(labels_key), 0.0)
        else:
            for (name, labels_key), slot in series.items():
                order.append(slot)
                family.add_sample(name, dict(labels_key), 0.0)
        families.append(family)
    registry = CollectorRegistry()
    registry.register(_Collector(families))
    lines = generate_latest(registry).splitlines(keepends=True)
    line_of = [i for i, line in enumerate(lines) if not line.startswith(b"#")]
    if len(line_of) != len(order):
        raise RuntimeError("prometheus_client wrote a sample line per value no more")
    position_of_slot = {slot: position for position, slot in enumerate(order) if slot >= 0}
    prefixes = [lines[i][: lines[i].rindex(b" ") + 1] for i in line_of]
    return _Plan(
        lines=lines,
        prefixes=prefixes,
        line_of=line_of,
        sources=sources,
        targets=np.asarray([position_of_slot[slot] for slot in targets], dtype=np.intp),
        cumulative=cumulative,
        counts=counts,
        values=np.zeros(len(order)),
    )


class MultiprocessRenderer:
    """The merged exposition text of a multiprocess directory; one per worker process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._known: dict[str, _File] = {}
        self._key_cache: dict[str, ParsedKey] = {}
        self._layout: tuple[tuple[str, int], ...] = ()
        self._plan: _Plan | None = None
        self._entries: list[tuple[str, int]] = []
        self._text = b""
        self._listed_mtime_ns = -1
        self._listing_trusted = False

    def _list(self) -> list[tuple[str, int]]:
        """The files (name, inode) in name order; listed again only when the directory changed.

        Listing it was the render's costliest step inside the worker, ~0.1 ms of a ~1 ms scrape
        (one scrape per 50 ms; a stat instead saves ~65 µs of it), and between scrapes of a
        running replica the directory only changes when a worker starts or dies.
        """
        mtime_ns = os.stat(self.directory).st_mtime_ns
        if mtime_ns != self._listed_mtime_ns or not self._listing_trusted:
            self._listing_trusted = time.time_ns() - mtime_ns >= _MTIME_SETTLE_NS
            self._entries = sorted(
                (e.name, e.inode()) for e in os.scandir(self.directory) if e.name.endswith(".db")
            )
            self._listed_mtime_ns = mtime_ns
        return self._entries

    def render(self) -> bytes:
        try:
            return self._render()
        except UnsupportedFile:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry, str(self.directory))  # type: ignore[no-untyped-call]
            return generate_latest(registry)

    def _render(self) -> bytes:
        chunks: list[np.ndarray] = []
        files: list[_File] = []
        layout: list[tuple[str, int]] = []
        changed = False
        entries = self._list()
        for name, inode in entries:
            kind, mode = _file_kind(name)
            known = self._known.get(name)
            try:
                if known is None or known.inode != inode:  # new, or re-created
                    known = _File(kind, mode, inode)
                    known.map(os.path.join(self.directory, name))
                    self._known[name] = known
                used = known.stored_used()
                if known.data is not None and used > len(known.data):
                    known.map(os.path.join(self.directory, name))  # the writer grew it
            except FileNotFoundError:
                if mode.startswith("live"):
                    continue  # a dead worker's live gauge, deleted since the listing
                raise
            except ValueError:  # an empty file (mmap refuses it) is being created: no series
                continue
            if used > known.used:
                known.parse(used)
            # Read before the values below: a write landing in between shows at the next scrape.
            current = known.data[:used]  # type: ignore[index]
            if current != known.rendered:
                known.rendered = current
                changed = True
            chunks.append(np.frombuffer(known.data, dtype=np.float64, count=used // 8))  # type: ignore[arg-type]
            files.append(known)
            layout.append((name, used))
        for gone in self._known.keys() - {name for name, _ in entries}:
            stale = self._known.pop(gone)
            if stale.data is not None:
                stale.data.close()
        if self._plan is not None and tuple(layout) == self._layout and not changed:
            # An idle replica: no request since the last scrape (scrapes count nowhere,
            # service/metrics.py), so not one stored byte moved: the same text, none of the
            # render's steps, each of which costs tens of µs when scrapes arrive alone.
            return self._text
        if self._plan is None or tuple(layout) != self._layout:
            self._plan = _build_plan(files, self._key_cache)
            self._layout = tuple(layout)
        plan = self._plan
        read = [chunk[sources] for chunk, sources in zip(chunks, plan.sources, strict=True)]
        values = np.bincount(
            plan.targets,
            weights=np.concatenate(read) if read else np.zeros(0),
            minlength=len(plan.values),
        )
        for start, end in plan.cumulative:
            values[start:end] = np.cumsum(values[start:end])
        for count, last_bucket in plan.counts:
            values[count] = values[last_bucket]
        lines, prefixes, line_of = plan.lines, plan.prefixes, plan.line_of
        for position in np.flatnonzero(values != plan.values).tolist():
            text = _go_float(float(values[position]))
            lines[line_of[position]] = prefixes[position] + text.encode("ascii") + b"\n"
        plan.values = values
        self._text = b"".join(lines)
        return self._text
