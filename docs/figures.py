"""The README blocks whose figures come from a committed run, each rendered from its report.

A block is a function of the run's report and of the link from the README to the report folder;
its text is what stands between the README's markers (docs/render.py). The sentences around the
figures live here too, so that a conclusion drawn from a figure changes with it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from docs.reports import KNEE_MARK, Report, load_report, number
from matrix.analyse.analysis import HOST_SATURATION
from matrix.report.report import fmt

QUICK_RUN = "quick-run"
WORKSHOP_RUN = "workshop-run"
SPIKE_RUN = "spike-run"
# The worked example's run (examples/tutorial-api), compared with the quick run of ours.
EXAMPLE_RUN = "example-run"
# The CPU a knee is compared per: the quick run's smallest step of CPU.
PER_CPU = 0.1
# Failure kinds the workshop table names apart; any other kind counts as "other".
TIMEOUTS = "timeouts"
CONNECTION_ERRORS = "connection errors"
REFUSED = "503 refused (p95 ms)"


@dataclass(frozen=True)
class Block:
    run: str
    render: Callable[[Report, str], str]


def whole(value: float) -> str:
    """Thousands apart with a space, as the READMEs write them (3 214, 966)."""
    return f"{value:,.0f}".replace(",", " ")


def span(low: str, high: str) -> str:
    return low if low == high else f"{low}-{high}"


def _percent(share: float) -> str:
    return f"{100.0 * share:.0f} %"


def _started(report: Report) -> str:
    match = report.header_match(r"Run started (\d{4}-\d\d-\d\d)T(\d\d:\d\d)")
    return f"{match.group(1)} {match.group(2)} UTC"


def _report_link(report: Report, link: str) -> str:
    return f"[docs/{report.folder.name}/report.md]({link}/report.md)"


def _cores(report: Report) -> str:
    return report.header_match(r"This host has (\d+) CPU cores").group(1)


def _knee_row(rows: list[dict[str, str]]) -> dict[str, str]:
    for row in rows:
        if KNEE_MARK in row["step"]:
            return row
    raise ValueError("a trial without a knee step")


def _all_steps(report: Report) -> list[dict[str, str]]:
    return [
        step
        for row in report.summary
        for trial in report.trial_steps(row["cell"])
        for step in trial
    ]


# --- the quick run ---------------------------------------------------------------------------


def _has_interval(report: Report) -> bool:
    """A summary with the knee's 95 % interval (adaptive trials), or an older one with the
    trials' range only."""
    return all(row.get("knee_rps_ci_low") for row in report.summary)


def _trial_count(report: Report) -> str:
    counts = sorted({int(row["trials"]) for row in report.summary})
    return f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def _knee(row: dict[str, str], unit: str = "") -> str:
    """A cell's knee: the median with its 95 % interval, or with the trials' range."""
    low, high = (
        (row["knee_rps_ci_low"], row["knee_rps_ci_high"])
        if row.get("knee_rps_ci_low")
        else (row["knee_rps_low"], row["knee_rps_high"])
    )
    return (
        f"{whole(float(row['knee_rps_median']))}{unit} ({whole(float(low))}-{whole(float(high))})"
    )


def quick_run_method(report: Report, link: str) -> str:
    objective = report.header_match(r"Objective for every step: (.*?)\. Target load")
    target = report.header_match(r"Target load: \*\*(\d+) req/s\*\*")
    step = report.header_match(r"Steps of ([0-9.]+) s")
    search = report.header_match(
        r"from ([0-9.]+) req/s, x([0-9.]+) per step .*? within ([0-9.]+) % of"
    )
    return (
        f"The report of a real `scripts/run_matrix.sh --quick` (run started {_started(report)}, "
        f"on a {_cores(report)}-core machine), in full: {_report_link(report, link)} "
        "(with `summary.csv` and plots). Locust, Nginx and the API shared the cores, so the "
        "absolute figures describe this machine only; the method carries over. Each cell was "
        f"measured in {_trial_count(report)} trials, the first a search: open-model steps of "
        "constant arrival rate "
        f"({step.group(1)} s each), from {search.group(1)} req/s, x{search.group(2)} per step, "
        f"until a step failed the objective ({objective.group(1)}), then bisecting to within "
        f"{search.group(3)} %.{_later_trials(report)} The knee is the rate the cell *served* "
        "at its highest passing step; latency is counted from each request's intended send "
        f"time. Target load: {target.group(1)} req/s."
    )


def _later_trials(report: Report) -> str:
    """How the report says its other cells' first searches and later trials started."""
    predicted = report.header_search(
        r"first search after the run's first cell starts at ([0-9.]+) x the knee the capacity "
        r"model predicts"
    )
    holds = report.header_search(r"a later trial only holds, from the median rate")
    text = ""
    if predicted:
        text += (
            f" Only the first cell's first search started there: each later cell's started at "
            f"{predicted.group(1)} x the knee the capacity model predicted from the earlier "
            "cells' demand."
        )
    if holds:
        text += (
            " A cell's later trials only held (a longer step), from the rate its earlier "
            "trials held, up or down until a passing and a failing hold bracketed the knee."
        )
    return text


def quick_run_table(report: Report, link: str) -> str:
    spread = "95 % interval" if _has_interval(report) else "range"
    lines = [
        f"| cell | replicas x CPU | knee: served req/s, median ({spread} of "
        f"{_trial_count(report)} trials) "
        "| p95 at knee: clients (lowest trial) / replicas | CPU periods throttled at knee "
        "| restarts / OOM |",
        "|---|---|---|---|---|---|",
    ]
    for row in report.summary:
        server = sorted(
            number(_knee_row(trial)["server p95 ms"]) for trial in report.server_side(row["cell"])
        )
        lines.append(
            f"| {row['cell']} | {row['replicas']} x {fmt(float(row['cpus']))} "
            f"| {_knee(row)} "
            f"| {fmt(float(row['knee_p95_ms']))} ms / "
            f"{span(f'{server[0]:.1f}', f'{server[-1]:.1f}')} ms "
            f"| {_percent(float(row['knee_throttled_share']))} "
            f"| {row['restarts']} / {row['oom_kills']} |"
        )
    return "\n".join(lines)


def quick_run_recommendation(report: Report, link: str) -> str:
    recommendation = report.section("Recommendation").paragraphs()
    scaling = report.section("Horizontal against vertical scaling").paragraphs()
    text = " ".join(paragraph.removeprefix("- ") for paragraph in [*recommendation, *scaling])
    return f"**Recommendation (the report's own words):** {text}"


def quick_run_spread(report: Report, link: str) -> str:
    widest = max(
        report.summary,
        key=lambda row: float(row["knee_rps_high"]) / float(row["knee_rps_low"]),
    )
    low, high = float(widest["knee_rps_low"]), float(widest["knee_rps_high"])
    return (
        f"The widest spread between one cell's trials in this run was {widest['cell']}'s, "
        f"{whole(low)} to {whole(high)} req/s (the higher {_percent(high / low - 1)} above "
        "the lower)."
    )


def quick_run_where_time_goes(report: Report, link: str) -> str:
    clients = [float(row["knee_p95_ms"]) for row in report.summary]
    servers = [
        number(_knee_row(trial)["server p95 ms"])
        for row in report.summary
        for trial in report.server_side(row["cell"])
    ]
    steps = _all_steps(report)
    generator = max(number(step["gen CPU"]) for step in steps) / 100.0
    host = max(number(step["host CPU"]) for step in steps) / 100.0
    late = max(number(step["late"]) for step in steps) / 100.0
    limit = (
        "the cells, not Locust, were the limit"
        if generator < HOST_SATURATION and host < HOST_SATURATION and late < 0.01
        else "the generator or the host may have been part of the limit"
    )
    return (
        f"The clients' p95 at the knee ({fmt(min(clients))}-{fmt(max(clients))} ms, lowest "
        f"trials) against the replicas' own ({min(servers):.1f}-{max(servers):.1f} ms, from "
        "the stack's Prometheus, in the report's *Server side* section) says where the time "
        "goes: queueing before the application, mostly waiting for the next 100 ms CPU period "
        "once the quota runs out. The load generator used at most "
        f"{_percent(generator)} of its cores and the host at most {_percent(host)}, and no step "
        f"sent more than {100.0 * late:.2f} % of its requests late: {limit}."
    )


def quick_run_memory(report: Report, link: str) -> str:
    peaks = [float(row["api_mem_peak_mb"]) for row in report.summary]
    return (
        "An api replica (Gunicorn master and one worker, all three models loaded) peaked at "
        f"{span(whole(min(peaks)), whole(max(peaks)))} MB in this run."
    )


def _example_trial(report: Report) -> tuple[str, list[dict[str, str]]]:
    """The cell the report recommends (else the first), and its first trial's steps: its
    search (later trials only hold, or bracket the earlier ones' limit)."""
    paragraph = " ".join(report.section("Recommendation").paragraphs())
    chosen = report.summary[0]
    for row in report.summary:
        shape = f"**{row['replicas']} replica(s) x {fmt(float(row['cpus']))} CPU"
        if shape in paragraph:
            chosen = row
            break
    trials = report.trial_steps(chosen["cell"])
    return chosen["cell"], trials[0]


def _search_start(report: Report, steps: list[dict[str, str]]) -> str:
    """Where the example's search started: the file's start rate, or (a cell after the run's
    first) near the knee the capacity model predicted from the earlier cells' demand."""
    start = number(report.header_match(r"from ([0-9.]+) req/s, x[0-9.]+ per step").group(1))
    first = number(steps[0]["offered"])
    if abs(first - start) < 0.5:
        return "a full search from the file's start rate"
    return (
        f"a search from {whole(first)} req/s, below the knee the capacity model predicted from "
        "the earlier cells' demand"
    )


def _rates(steps: list[dict[str, str]]) -> str:
    return ", ".join(whole(number(step["offered"])) for step in steps) or "none"


def quick_run_worked_example(report: Report, link: str) -> str:
    cell, steps = _example_trial(report)
    row = report.summary_row(cell)
    objective = report.header_match(r"Objective for every step: (p95 <= [0-9.]+ ms)")
    step_seconds = report.header_match(r"Steps of ([0-9.]+) s").group(1)
    precision = report.header_match(r"within ([0-9.]+) % of").group(1)
    lines = [
        f"**A worked example** from the quick run in [docs/{report.folder.name}]({link}/report.md) "
        f"(run started {_started(report)}; Locust, Nginx and the API on the same "
        f"{_cores(report)} cores), cell `{cell}` ({row['replicas']} x {fmt(float(row['cpus']))} "
        f"CPU), its first trial ({_search_start(report, steps)}), "
        f"objective {objective.group(1)}, "
        f"{step_seconds} s steps:",
        "",
        "| step | offered req/s | served req/s | p50 / p95 ms | throttled periods "
        "| api CPU (cores) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        verdict = step["verdict"] if step["verdict"] == "pass" else f"fail: {step['verdict']}"
        lines.append(
            f"| {step['step']} | {step['offered']} | {step['served']} | {step['p50']} / "
            f"{step['p95']} | {step['throttled']} | {step['api CPU']} | {verdict} |"
        )
    first_fail = next((i for i, step in enumerate(steps) if step["verdict"] != "pass"), None)
    knee = _knee_row(steps)
    knee_offered = number(knee["offered"])
    if first_fail is None:
        search = "Every step passed, so the search ended at its ceiling"
    else:
        later = steps[first_fail + 1 :]
        # The confirmation holds are told apart from the bisection's short steps.
        short = [step for step in later if "confirmation" not in step["step"]]
        holds = [step for step in later if "confirmation" in step["step"]]
        passed = [step for step in short if step["verdict"] == "pass"]
        failed = [step for step in short if step["verdict"] != "pass"]
        outcomes = []
        if passed:
            outcomes.append(f"{_rates(passed)} passed")
        if failed:
            outcomes.append(f"{_rates(failed)} failed")
        bisection = ", ".join(outcomes)
        held = ", ".join(
            f"{_rates([s])} {'passed' if s['verdict'] == 'pass' else 'failed'}" for s in holds
        )
        above = [number(s["offered"]) for s in steps if s["verdict"] != "pass"]
        nearest = min(rate for rate in above if rate > knee_offered)
        search = (
            f"The rate grew until {whole(number(steps[first_fail]['offered']))} req/s failed, "
            "then bisected"
            + (f": {bisection}" if bisection else "")
            + (f"; held longer (the confirmation): {held}" if held else "")
            + f"; {whole(nearest)} is within {precision} % of {whole(knee_offered)}, so the "
            "search ended"
        )
    throttled = next((s for s in steps if number(s["throttled"]) >= 100.0), None)
    throttling = (
        ""
        if throttled is None
        else (
            f" Throttling explains the latency below the knee: from "
            f"{whole(number(throttled['offered']))} req/s on the replicas used their whole "
            f"{fmt(float(row['cpus']))} CPU quota in every 100 ms period, so a request that "
            "arrived after the quota ran out waited for the next period (p50 "
            f"{throttled['p50']} ms, p95 {throttled['p95']} ms at that rate)."
        )
    )
    generator = max(number(s["gen CPU"]) for t in report.trial_steps(cell) for s in t)
    host = max(number(s["host CPU"]) for t in report.trial_steps(cell) for s in t)
    lines += [
        "",
        f"{search} with a knee of **{knee['served']} req/s served** "
        f"(at {knee['offered']} offered).{throttling} With all its trials the report gives this "
        f"cell **{_knee(row, ' req/s')}**"
        + (
            " (median and 95 % interval), and recommends on the interval's low end."
            if _has_interval(report)
            else ", and recommends on the lowest."
        )
        + f" The generator used at most {generator:.0f} % of its cores "
        f"and the host at most {host:.0f} % in this cell's trials.",
    ]
    return "\n".join(lines)


def quick_run_example_plot(report: Report, link: str) -> str:
    cell, _ = _example_trial(report)
    return f"![one cell's search]({link}/plots/steps-{cell}.png)"


# --- the workshop run ------------------------------------------------------------------------


def _workshop_rows(report: Report) -> list[tuple[dict[str, str], dict[str, str]]]:
    """Per configuration, its row with admission on and its row with admission off."""
    rows = report.section("The workshop, side by side").tables()[0].records()
    pairs: list[tuple[dict[str, str], dict[str, str]]] = []
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        if not first["admission"].startswith("on") or second["admission"] != "off":
            raise report.fail("the side-by-side table is not in on/off pairs")
        pairs.append((first, {**second, "configuration": first["configuration"]}))
    return pairs


def _workshop_cell(report: Report, row: dict[str, str], admission: str) -> str:
    """The cell id of a side-by-side row: the summary's cell of that shape and admission."""
    replicas, cpus, memory = re.findall(r"[0-9.]+M?", row["configuration"])[:3]
    return f"r{replicas}-c{cpus}-m{memory}-adm{admission}"


def _failures(report: Report, row: dict[str, str], cell: str) -> str:
    refused = re.match(r"([0-9.]+) % \(([^)]*)\)", row[REFUSED])
    parts: list[str] = []
    if refused and float(refused.group(1)) > 0:
        parts.append(f"{refused.group(1)} % refused with 503 (p95 {refused.group(2)} ms)")
    for kind in (TIMEOUTS, CONNECTION_ERRORS):
        if number(row[kind]) > 0:
            parts.append(f"{row[kind]} {kind}")
    if number(row["other"]) > 0:
        hold = report.trial_steps(cell)[0][0]["failures"]
        kinds = sorted(
            {k for k in re.findall(r"(HTTP \d+)", hold) if k != "HTTP 503"}
            | ({"503 without admission control"} if "HTTP 503" in hold else set())
        )
        parts.append(f"{row['other']} other ({', '.join(kinds)})")
    return ", ".join(parts) if parts else "no failures"


def workshop_run_intro(report: Report, link: str) -> str:
    return (
        f"The full report of a real run (started {_started(report)}, on the "
        f"{_cores(report)}-core machine): {_report_link(report, link)}."
    )


def workshop_table(report: Report, link: str) -> str:
    lines = [
        "| configuration | the workshop saw | ours, admission on: served req/s; p95 ms; "
        "failures | ours, admission off: served req/s; p95 ms; failures |",
        "|---|---|---|---|",
    ]
    for on, off in _workshop_rows(report):
        sides = []
        for row, admission in ((on, "on"), (off, "off")):
            cell = _workshop_cell(report, row, admission)
            sides.append(
                f"{row['served req/s'].strip('*')}; {row['p95 ms']}; {_failures(report, row, cell)}"
            )
        lines.append(
            f"| {on['configuration']} | {on['the workshop saw']} | {sides[0]} | {sides[1]} |"
        )
    return "\n".join(lines)


def workshop_conclusions(report: Report, link: str) -> str:
    holds = report.section("What holds of the workshop's conclusions")
    bullets = [line for line in holds.lines if line.strip()]
    targets = next(s for s in report.sections if s.title.startswith("Targets for "))
    table = [line for line in targets.lines if line.startswith("|")]
    return "\n".join(
        [
            "What the report itself concludes from these numbers "
            "(`matrix/analyse/workshop.py` writes it from the cell records):",
            "",
            *bullets,
            "",
            f"*{targets.title}* (from the report):",
            "",
            *table,
        ]
    )


def workshop_generator_load(report: Report, link: str) -> str:
    pairs = _workshop_rows(report)
    on = [row for row, _ in pairs]
    generator = [number(row["gen CPU"]) for row in on]
    host = [number(row["host CPU"]) for pair in pairs for row in pair]
    answers = [
        number(row["served req/s"].strip("*")) / (1.0 - number(row[REFUSED]) / 100.0) for row in on
    ]
    busy = [row for row in on if "busy" in row["host CPU"]]
    busy_text = ""
    if busy:
        clients = [number(row["p95 ms"]) for row in busy]
        servers = [number(row["server p95 ms"]) for row in busy]
        busy_text = (
            f" In that run {len(busy)} of the {len(on)} rows with admission on were flagged busy:"
            f" the clients' p95 {whole(min(clients))}-{whole(max(clients))} ms, the replicas' own "
            f"{fmt(min(servers))}-{fmt(max(servers))} ms."
        )
    return (
        f"In [docs/{report.folder.name}]({link}/report.md) the workers took "
        f"{span(f'{min(generator):.0f}', f'{max(generator):.0f}')} % of their cores with "
        f"admission on while {whole(round(min(answers), -2))}-{whole(round(max(answers), -2))} "
        "answers a second went through (successes and refusals), and the host's CPU was "
        f"{min(host):.0f}-{max(host):.0f} % busy over a hold.{busy_text}"
    )


def _seconds(text: str) -> str:
    return "never" if text == "-" else f"{text} s"


def spike_run(report: Report, link: str) -> str:
    """The autoscaler against the same spike without it, and issue 20's bounds checked."""
    rows = report.section("Spike").tables()[0].records()
    on = next((row for row in rows if row["autoscaler"] == "on"), None)
    if on is None:
        raise report.fail("the Spike table has no cell with the autoscaler on")
    spike = report.header_match(r"then \*\*([0-9.]+) req/s \(([0-9.]+)x the knee\)\*\*")
    checks = report.section(f"{on['cell']}: spike").tables()[0]
    cell = report.summary_row(on["cell"])
    lines = [
        f"A real run of `matrix/matrix-spike.yaml` (started {_started(report)}, on the "
        f"{_cores(report)}-core machine): {_report_link(report, link)}. "
        f"{cell['replicas']} replica(s) at {cell['cpus']} CPU and {cell['memory']}, a spike to "
        f"{spike.group(1)} req/s ({spike.group(2)}x its quick-run knee). With the autoscaler "
        f"the api went {on['replicas: start -> most']} replicas: the first one added "
        f"{_seconds(on['up s'].split(' ')[0])} after the jump (running "
        f"{_seconds(on['up s'].split('(')[1].rstrip(')'))} after it), the objective met again "
        f"from {_seconds(on['objective again s'])} after the jump, back to the start "
        f"{_seconds(on['back to min s'])} after the fall; {on['503s in the peak']} requests "
        f"were refused with 503 in the peak and {on['failed on the way down']} failed or went "
        f"unsent on the way down (the host's CPU {on['host CPU in the peak']} busy in the peak)."
    ]
    for off in (row for row in rows if row["autoscaler"] == "off"):
        again = off["objective again s"]
        met = (
            "never met the objective again during the peak"
            if again == "-"
            else f"met the objective again from {again} s after the jump"
        )
        most = off["replicas: start -> most"].split("->")[-1].strip()
        lines.append(
            f" Without it ({off['cell']}) the api stayed at {most} replica(s) and {met}: "
            f"{off['503s in the peak']} requests refused with 503 in the peak, "
            f"{off['failed on the way down']} failed on the way down "
            f"(host CPU {off['host CPU in the peak']})."
        )
    table = [
        "| " + " | ".join(checks.header) + " |",
        "|" + "---|" * len(checks.header),
        *("| " + " | ".join(row) + " |" for row in checks.rows),
    ]
    return "".join(lines) + "\n\n" + "\n".join(table)


# --- the worked example beside ours ---------------------------------------------------------


def _per_cpu(row: dict[str, str]) -> float:
    """The cell's median knee per PER_CPU of its total CPU."""
    return float(row["knee_rps_median"]) * PER_CPU / float(row["total_cpus"])


def _side_rows(service: str, report: Report) -> list[str]:
    return [
        f"| {service} | {row['cell']} | {row['replicas']} x {fmt(float(row['cpus']))} "
        f"| {whole(float(row['knee_rps_median']))} "
        f"({whole(float(row['knee_rps_low']))}-{whole(float(row['knee_rps_high']))}"
        f"{_of_trials(row)}) "
        f"| **{whole(_per_cpu(row))}** | {_demand(row)} | {fmt(float(row['knee_p95_ms']))} ms |"
        for row in report.summary
    ]


def _of_trials(row: dict[str, str]) -> str:
    """How many trials the range spans (each run's own count: the two files differ)."""
    trials = row.get("trials") or ""
    return f", {trials} trials" if trials else ""


def _demand(row: dict[str, str]) -> str:
    """The api's CPU per request at the knee (µs), or - for a report from before it was kept."""
    text = row.get("demand_us_per_request") or ""
    return f"{whole(float(text))} µs" if text else "-"


def example_side_by_side(report: Report, link: str) -> str:
    """The example's run and the quick run of ours (its sibling folder), per CPU."""
    ours = load_report(report.folder.parent / QUICK_RUN)
    ours_link = posixpath.join(posixpath.dirname(link), QUICK_RUN)
    theirs_per_cpu = [_per_cpu(row) for row in report.summary]
    ours_per_cpu = [_per_cpu(row) for row in ours.summary]
    if min(ours_per_cpu) > max(theirs_per_cpu):
        verdict = (
            f"even ours' lowest cell served {min(ours_per_cpu) / max(theirs_per_cpu):.0f} times "
            "the tutorial's highest per CPU."
        )
    elif min(theirs_per_cpu) > max(ours_per_cpu):
        verdict = (
            f"even the tutorial's lowest cell served "
            f"{min(theirs_per_cpu) / max(ours_per_cpu):.1f} times ours' highest per CPU."
        )
    else:
        verdict = "the two overlap, so per CPU neither is clearly ahead."
    lines = [
        "| service | cell | replicas x CPU | knee: served req/s, median (range of its trials) "
        f"| knee per {fmt(PER_CPU)} CPU | api CPU per request at the knee "
        "| p95 at knee (lowest trial) |",
        "|---|---|---|---|---|---|---|",
        *_side_rows("the tutorial's (FastAPI + scikit-learn)", report),
        *_side_rows("ours (own ASGI layer, C evaluators)", ours),
    ]
    return "\n".join(
        [
            f"The report of a real `scripts/run_matrix.sh --matrix "
            f"examples/tutorial-api/matrix.yaml` (run started {_started(report)}, on a "
            f"{_cores(report)}-core machine), {_report_link(report, link)}, beside the quick run "
            f"of ours, [docs/{QUICK_RUN}/report.md]({ours_link}/report.md) (run started "
            f"{_started(ours)}, on a {_cores(ours)}-core machine): the same objective and 3 s "
            "search steps (each report's header says how many trials ran and whether knees "
            "were held longer to confirm them).",
            "",
            *lines,
            "",
            f"Per {fmt(PER_CPU)} CPU at the knee, the tutorial's service served "
            f"{span(whole(min(theirs_per_cpu)), whole(max(theirs_per_cpu)))} req/s and ours "
            f"{span(whole(min(ours_per_cpu)), whole(max(ours_per_cpu)))}: {verdict}",
        ]
    )


BLOCKS: dict[str, Block] = {
    "quick-run-method": Block(QUICK_RUN, quick_run_method),
    "quick-run-table": Block(QUICK_RUN, quick_run_table),
    "quick-run-recommendation": Block(QUICK_RUN, quick_run_recommendation),
    "quick-run-spread": Block(QUICK_RUN, quick_run_spread),
    "quick-run-where-time-goes": Block(QUICK_RUN, quick_run_where_time_goes),
    "quick-run-memory": Block(QUICK_RUN, quick_run_memory),
    "quick-run-worked-example": Block(QUICK_RUN, quick_run_worked_example),
    "quick-run-example-plot": Block(QUICK_RUN, quick_run_example_plot),
    "workshop-run-intro": Block(WORKSHOP_RUN, workshop_run_intro),
    "workshop-table": Block(WORKSHOP_RUN, workshop_table),
    "workshop-conclusions": Block(WORKSHOP_RUN, workshop_conclusions),
    "workshop-generator-load": Block(WORKSHOP_RUN, workshop_generator_load),
    "spike-run": Block(SPIKE_RUN, spike_run),
    "example-side-by-side": Block(EXAMPLE_RUN, example_side_by_side),
}
