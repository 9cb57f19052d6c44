"""``bench/results.md``: the readable tables of ``bench/results.json`` (see ``run.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _spread(figure: dict[str, Any], digits: int = 2, scale: float = 1.0) -> str:
    if not figure or not figure.get("n"):
        return "-"
    median, low, high = (figure[k] * scale for k in ("median", "min", "max"))
    if figure["n"] == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _met(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return "-"
    return "met" if verdict.get("met") else "**missed**"


def _header(name: str, section: dict[str, Any]) -> list[str]:
    machine = section["machine"]
    return [
        f"Command: `{section['command']}` ({section['seconds']} s, {section['ran_at']}). "
        f"Machine: {machine['cpus']} CPUs ({machine['cpu'] or machine['machine']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, load average {machine['load_average']} before, "
        f"{section.get('load_average_after')} after.",
        "",
    ]


def _copy(section: dict[str, Any]) -> list[str]:
    result = section["result"]
    lines = ["## 1. Media copy into S3 (moto server), ours against the obvious alternatives", ""]
    lines += _header("copy", section)
    lines += [
        "Each run is a fresh process; medians (min-max) over the repeats; ratios are ours ÷ peer of the "
        "medians. Peak RSS growth: the copying process's peak RSS minus its RSS just before the copy "
        "(after a warm-up copy). Disk: bytes the process wrote to storage (/proc/self/io).",
        "",
    ]
    for key, description in result["description"].items():
        lines.append(f"- `{key}`: {description}")
    lines.append("")
    for size, entry in result["by_size_mib"].items():
        lines.append(f"### {size} MiB")
        lines.append("")
        rows = []
        for variant, figures in entry["variants"].items():
            wall_ratio = "1" if variant == "ours" else entry.get("wall_ratio_vs_peer", {}).get(variant, "-")
            rows.append(
                [
                    f"`{variant}`",
                    _spread(figures["wall_s"]),
                    wall_ratio,
                    _spread(figures["cpu_s"]),
                    _spread(figures["peak_rss_growth_mib"], 1),
                    _spread(figures["disk_write_mib"], 0),
                    figures["mib_per_s"],
                    ", ".join(f"{op} {s:.2f}" for op, s in figures.get("s3_s", {}).items()),
                ]
            )
        lines += _table(
            [
                "variant",
                "wall s",
                "ours ÷ this (wall)",
                "CPU s",
                "peak RSS growth MiB",
                "disk MiB",
                "MiB/s",
                "S3 time by operation, s (parts summed over threads)",
            ],
            rows,
        )
        if "ours_tagging_s" in entry:
            lines.append(
                f"Fastest peer: `{entry['fastest_peer']}`; ours ÷ fastest = **{entry['wall_ratio_vs_fastest_peer']}**. "
                f"Of our time, the final PutObjectTagging (the `sha256` tag of a multipart object, which no peer "
                f"sets; a single-part object gets it inline) took {entry['ours_tagging_s']} s; without it ours ÷ "
                f"fastest would be {entry['wall_ratio_vs_fastest_peer_without_tagging']}."
            )
            lines.append("")
        elif "ours_copyobject_s" in entry:
            # Figures measured before the copier dropped its self-copy (an older results.json that a
            # partial run re-renders): described as what they measured.
            lines.append(
                f"Fastest peer: `{entry['fastest_peer']}`; ours ÷ fastest = **{entry['wall_ratio_vs_fastest_peer']}**. "
                f"Measured when the copier still copied a multipart object onto itself (so that S3 hashed it and "
                f"it carried the `sha256` metadata; dropped since): of our time, that final CopyObject "
                f"took {entry['ours_copyobject_s']} s; without "
                f"it ours ÷ fastest would be {entry['wall_ratio_vs_fastest_peer_without_copyobject']}."
            )
            lines.append("")
    targets = result.get("targets") or {}
    if targets:
        lines.append(f"Targets at {targets['largest_size_mib']} MiB:")
        lines.append("")
        growth, flat = targets["peak_growth_at_largest"], targets["peak_growth_flat"]
        wall = targets["wall_vs_fastest_peer"]
        lines += _table(
            ["target", "measured", "verdict"],
            [
                ["peak RSS growth <= 64 MiB", f"{growth['value_mib']} MiB", _met(growth)],
                [
                    "flat across sizes (rises by <= 2% of the added bytes)",
                    " / ".join(f"{v} MiB" for v in flat["values_mib"]) + f" ({flat['slope']:.1%} of the added bytes)",
                    _met(flat),
                ],
                ["no disk", f"{targets['no_disk']['max_write_mib']} MiB written", _met(targets["no_disk"])],
                [
                    "wall <= 1.1x the fastest peer",
                    f"{wall['ratio']}x `{wall['fastest_peer']}`",
                    _met(wall),
                ],
                ["bytes exact (sha256, size)", "", _met(targets["integrity"])],
            ],
        )
    return lines


def _cold(section: dict[str, Any]) -> list[str]:
    result = section["result"]
    lines = ["## 2. Cold start, each function against its floor", ""]
    lines += _header("cold", section)
    lines += [
        f"Import path: {result['import_path']}.",
        "",
        f"Definition: {result['definition']}. Medians (min-max) over fresh interpreters, in ms.",
        "",
    ]
    rows = []
    for function, f in result["by_function"].items():
        rows.append(
            [
                function,
                _spread(f["init_ms"], 1),
                _spread(f["first_call_extra_ms"], 1),
                _spread(f["cold_ms"], 1),
                _spread(f["floor_ms"], 1),
                f"**{f['cold_ratio']}**",
                _met(result["targets"].get(function)),
                f"{f['cold_ratio_of_medians']} / {f['cold_ratio_of_minimums']} / {f['init_ratio']}",
                f"{f['cold_with_aws_ratio']} (+{f['first_call_extra_aws_ms']['median']:.1f} ms)",
                ", ".join(f["heavy_modules"]) or "neither",
            ]
        )
    lines += _table(
        [
            "function",
            "init",
            "first-call extra",
            "cold",
            "floor",
            "cold ÷ floor (paired)",
            "<= 1.2x",
            "cold ÷ floor of medians / of minimums; init ÷ floor",
            "with first-call AWS time",
            "httpx / pydantic",
        ],
        rows,
    )
    parts = [(fn, f["over_floor"]) for fn, f in result["by_function"].items() if "over_floor" in f]
    if parts:
        lines += [
            "Where the time over the floor goes (ms; import parts are differences of minimums over the runs, "
            "first-call parts medians; diagnostic floors: the floor plus the Powertools pieces the function "
            "imports and creates):",
            "",
        ]
        lines += _table(
            [
                "function",
                "Powertools",
                "own init",
                "own first call",
                "first call in AWS",
            ],
            [
                [
                    fn,
                    p["powertools_ms"],
                    p["own_init_ms"],
                    p["first_call_extra_ms"],
                    p["first_call_extra_aws_ms"],
                ]
                for fn, p in parts
            ],
        )
    webhook = result["targets"].get("webhook_imports_neither_httpx_nor_pydantic")
    if webhook:
        lines += [f"Webhook imports neither httpx nor pydantic: {_met(webhook)} (imported: {webhook['imported']}).", ""]
    return lines


def _cost(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = ["## 3. Cost per delivered job", ""]
    lines += _header("cost", section)
    lines += [
        f"{r['delivered']} of {r['jobs']} jobs delivered through the local stack in {r['elapsed_s']} s "
        f"(one event per job: {r['one_event_per_job']}). Terminal webhook mode, one 1 MiB media file per job, "
        "RECONCILE_AFTER_SECONDS=3600 so the reconciler finds nothing to do during the count.",
        "",
    ]
    aws = r["aws_calls"]
    rows = [
        [
            service,
            figures["per_job"],
            aws["minimum"]["by_service"].get(service, 0),
            ", ".join(f"{op} {n}" for op, n in figures["operations_per_job"].items()),
        ]
        for service, figures in aws["by_service"].items()
    ]
    rows.append(["**all**", f"**{aws['per_job']}**", f"**{aws['minimum']['per_job']}**", ""])
    lines += _table(["AWS service", "calls per job", "minimum", "by function and operation"], rows)
    gateway = r["gateway_calls"]
    lines += _table(
        ["gateway", "per job", "minimum"],
        [
            *[[kind, n, gateway["minimum"]["by_kind"].get(kind, 0)] for kind, n in gateway["by_kind"].items()],
            ["**all**", f"**{gateway['per_job']}**", f"**{gateway['minimum']['per_job']}**"],
            ["callbacks received (gateway -> us)", gateway["callbacks_received_per_job"], 1],
        ],
    )
    targets = r["targets"]
    lines += [
        f"Targets (<= minimum + 2): AWS calls {targets['aws_calls_per_job']['value']} <= "
        f"{targets['aws_calls_per_job']['limit']}: {_met(targets['aws_calls_per_job'])}; gateway calls "
        f"{targets['gateway_calls_per_job']['value']} <= {targets['gateway_calls_per_job']['limit']}: "
        f"{_met(targets['gateway_calls_per_job'])}.",
        "",
        "Not per job: secret reads "
        + ", ".join(f"{k} x{v}" for k, v in aws["per_container_not_per_job"].items())
        + " for containers "
        + ", ".join(f"{k} {v}" for k, v in aws["containers"].items())
        + "; reconciler runs during the count: "
        + (", ".join(f"{k} x{v}" for k, v in aws["reconciler_runs_not_per_job"].items()) or "none")
        + ".",
        "",
        "The minimum, and why:",
        "",
    ]
    lines += [f"- {reason}" for reason in r["minimum_reasons"]]
    lines.append("")
    wru = r["dynamodb_write_units"]
    lines += [
        f"DynamoDB write request units per job: **{wru['per_job']}** ({wru['table_per_job']} table, "
        f"{wru['indexes_per_job']} GSIs: "
        + ", ".join(f"{k} {v}" for k, v in wru["by_index_per_job"].items())
        + f") over {wru['writes_per_job']} writes; ${wru['usd_per_1000_jobs']} per 1,000 jobs on demand. "
        f"Method: {wru['method']}.",
        "",
    ]
    lam = r["lambda"]
    lines += _table(
        ["function", "memory MB", "invocations per job", "median ms", "mean billed ms", "USD per 1,000 jobs"],
        [
            [fn, f["memory_mb"], f["invocations_per_job"], f["median_ms"], f["mean_billed_ms"], f["usd_per_1000_jobs"]]
            for fn, f in lam["by_function"].items()
        ]
        + [["**all**", "", "", "", "", f"**{lam['usd_per_1000_jobs']}**"]],
    )
    lines += [f"Lambda estimate: {lam['assumptions']}.", ""]
    return lines


def _webhook(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = ["## 4. Webhook handling in one process", ""]
    lines += _header("webhook", section)
    rows = []
    for variant, f in r["by_variant"].items():
        rows.append(
            [
                "ours (functions/webhook)" if variant == "ours" else "bare boto3 handler, same AWS calls",
                _spread(f["callbacks_per_s"], 0),
                _spread(f["ms_per_callback"], 2),
                _spread(f["aws_share"], 3),
                _spread(f["ms_outside_aws_per_callback"], 2),
                _spread(f["cpu_ms_per_callback"], 2),
                ", ".join(f"{op} {n}" for op, n in f["aws_calls_per_callback"].items()),
            ]
        )
    lines += _table(
        [
            "handler",
            "callbacks/s",
            "ms per callback",
            "share in AWS calls",
            "ms outside AWS calls",
            "CPU ms per callback",
            "AWS calls per callback",
        ],
        rows,
    )
    lines += [
        f"Ours ÷ bare (rate, per repeat, median): {r['ratio_ours_to_bare_rate']}; ours - bare: "
        f"{r['ours_extra_ms_per_callback']} ms per "
        "callback. One callback at a time, as one Lambda container serves them. AWS calls = botocore's before-call "
        "to after-call (signing, sending, waiting on moto, parsing); moto runs on the same two cores.",
        "",
    ]
    profile = r["profile_ours"]
    lines += [
        f"cProfile of ours (one pass; {profile['profiled_s']} s profiled, `_make_api_call` cumulative share "
        f"{profile['aws_calls_cumulative_share']}), own time by package:",
        "",
    ]
    lines += _table(["package", "share"], [[k, v] for k, v in profile["share_by_package"].items()])
    lines += ["Largest own times outside the AWS SDK:", ""]
    lines += [f"- {entry}" for entry in profile["top_outside_aws_sdk"]]
    lines.append("")
    return lines


def _capacity(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = ["## 5. Capacity: DynamoDB writes per partition key, and the ceiling they allow", ""]
    lines += _header("capacity", section)
    runs = r["runs"]
    labels = list(runs)
    lines += [
        f"{r['jobs_per_run']} jobs per run through the local stack, one caller per run, runs: "
        + ", ".join(f"`{label}` ({runs[label]['delivered']}/{runs[label]['jobs']} delivered)" for label in labels)
        + ". Typical input: a 400-character prompt; largest: the widest request the catalog accepts "
        f"(4-byte characters, metadata at its limit). Ceiling = {r['partition_wcu_per_second']:,} WCU/s per "
        "partition ÷ the hottest partition key's WCU per job. Method: " + r["method"] + ".",
        "",
    ]
    header = ["index", "partition key", "scope (measured)", "projection"]
    header += [f"WCU/job {label}" for label in labels]
    header += [f"ceiling jobs/s {label}" for label in labels]
    rows = []
    for row in r["table"]:
        keys = row.get("keys") or []
        rows.append(
            [row["index"], f"`{keys[0]}`" if keys else "-", row["scope"], row["projection"]]
            + [row[label]["wcu_per_job"] for label in labels]
            + [row[label]["ceiling_jobs_per_s"] for label in labels]
        )
    lines += _table(header, rows)
    lines += _table(
        ["run", "ceiling, one caller (jobs/s)", "set by", "ceiling, per deployment (jobs/s)", "set by"],
        [
            [
                label,
                c["one_caller_jobs_per_s"],
                ", ".join(c["one_caller_limited_by"]),
                c["per_deployment_jobs_per_s"],
                ", ".join(c["per_deployment_limited_by"]),
            ]
            for label, c in r["ceilings"].items()
        ],
    )
    lines += _table(
        [
            "run",
            "writes/job",
            "status changes/job",
            "failed conditions/job",
            "callbacks/job",
            "largest item bytes",
            "table WCU/job",
            "index writes/job",
            "index WCU/job",
        ],
        [
            [
                label,
                s["writes_per_job"],
                s["status_changes_per_job"],
                s["failed_conditions_per_job"],
                s["callbacks_per_job"],
                s["largest_item_bytes"],
                s["table_wcu_per_job"],
                ", ".join(f"{k} {v}" for k, v in s["index_writes_per_job"].items()),
                ", ".join(f"{k} {v}" for k, v in s["index_wcu_per_job"].items()),
            ]
            for label, s in runs.items()
        ],
    )
    for kind, entry in r.get("sync_extrapolation", {}).items():
        lines += [
            f"Sync mode, {kind} input: the simulator sent {entry['measured_progress_callbacks_per_job']} progress "
            "callbacks per job (its 0.2 s poll cycle); the gateway polls at most every ~15 s, so a job generating "
            "for T s gets about T/15. Each one adds, and the ceiling at 4 / 8 of them: "
            + "; ".join(
                f"{index} {e['wcu_per_progress_callback']} WCU -> "
                + " / ".join(f"{v} jobs/s" for v in e["ceiling_jobs_per_s"].values())
                for index, e in entry["by_index"].items()
            )
            + ".",
            "",
        ]
    polls = r.get("reconciler_per_poll")
    if polls:
        lines += [
            "The reconciler's writes are per poll, not per job (the jobs above had their callbacks and were never "
            f"polled; a job whose callback is lost is polled about 30 times in its day): one UpdateItem of the job "
            f"({polls['item_bytes']} bytes here) that sets its next look, the unfinished index's sort key. "
            + "; ".join(
                f"{kind}: table {p['table_wcu']} WCU, "
                + ", ".join(f"{name} {'+'.join(i['writes'])} {i['wcu']} WCU" for name, i in p["index"].items())
                + f"; on its u#NN key {p['hottest_key_wcu_per_s_at_100_polls_s']} WCU/s at 100 polls/s, a ceiling "
                f"of {p['ceiling_polls_per_s_per_key']} polls/s per key, "
                f"{p['ceiling_polls_per_s_per_deployment']} over the 16"
                for kind, p in ((k, polls[k]) for k in ("unchanged", "outcome"))
            )
            + ". A callback writes the next look only when it was due within half of ReconcileAfterSeconds (a job "
            "generating longer than 7.5 min: one more UpdateItem and a delete + put on its u#NN key per 7.5 min); "
            "the runs above had none.",
            "",
        ]
    for label in labels[:1] + [label for label in labels if label.endswith("largest")][:1]:
        lines += [f"The writes of one job, `{label}`:", ""]
        lines += _table(
            ["operation", "status", "item bytes", "table WCU", "index writes (WCU)"],
            [
                [w["operation"], w["status"], w["item_bytes"], w["table_wcu"], w["index"]]
                for w in runs[label]["sample_job_writes"]
            ],
        )
    lines += ["The issue's figures (BEFORE, on paper) against the measurement:", ""]
    lines += [f"- {verdict}" for verdict in r["verdicts"]]
    lines.append("")
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{label}: {n}" for label, n in counts.items()) or "-"


def _burst_figures(s: dict[str, Any]) -> list[tuple[str, Any]]:
    """One burst run's figures, in the report's order."""
    c, posts, g, d, t = s["config"], s["posts"], s["gateway"], s["delivery"], s["timing"]
    latency, quiet_latency, quiet_wait = posts["latency_all"], posts["latency_quiet"], t["quiet_job_latency_s"]
    drained = t["burst_drain_s"] or f"not within the budget (last final event {t['last_noisy_final_s']} s)"
    return [
        ("submit path", s["submit_path"]),
        ("jobs (noisy + quiet), window", f"{c['jobs']} + {c['quiet_jobs']}, {c['seconds']:g} s"),
        ("POSTs sent / not sent", f"{posts['sent']} / {posts['not_sent']}"),
        ("offered rate, noisy (jobs/s)", posts["offered_rate_per_s"]),
        ("POSTs started late: p99 behind schedule (s)", posts["schedule_slip_p99_s"]),
        ("last POST answered at (s)", posts["last_post_answered_s"]),
        ("answers, noisy", _counts(posts["answers_noisy"])),
        ("answers, quiet", _counts(posts["answers_quiet"])),
        ("POST latency p50 / p99 / max (ms)", f"{latency['p50_ms']} / {latency['p99_ms']} / {latency['max_ms']}"),
        ("quiet POST latency p50 / max (ms)", f"{quiet_latency['p50_ms']} / {quiet_latency['max_ms']}"),
        (
            "gateway submits received / accepted / answered 429",
            f"{g['submits_received']} / {g['submits_accepted']} / {g['answered_429']}",
        ),
        ("gateway submits per job POSTed (mean / max)", f"{g['submits_per_job_posted']} / {g['submits_per_job_max']}"),
        (
            "jobs submitted more than once / accepted more than once (duplicates)",
            f"{g['jobs_submitted_more_than_once']} / {g['jobs_accepted_more_than_once']}",
        ),
        ("peak gateway concurrency (limit)", f"{g['peak_in_flight']} ({g['max_in_flight']})"),
        (
            "delivered exactly once / jobs POSTed",
            f"{d['delivered_exactly_once']} / {posts['sent'] + posts['not_sent']}",
        ),
        ("jobs with more than one final event", d["jobs_with_more_than_one_final_event"]),
        ("not delivered, by table status", _counts(d["not_delivered_by_table_status"])),
        ("burst drained: its last taken job's final event (s)", drained),
        (
            "quiet caller: jobs taken, all ended at (s)",
            f"{t['quiet_taken']}/{c['quiet_jobs']}, {t['quiet_done_s'] or 'not all ended'}",
        ),
        ("quiet job, POST to final event (s, median / max)", f"{quiet_wait['median']} / {quiet_wait['max']}"),
        ("quiet done ÷ burst drained", t["quiet_share_of_drain"]),
    ]


def _burst(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    runs: dict[str, Any] = r["runs"]
    lines = ["## 6. Burst: one caller's 2,000 jobs in 60 s against a gateway that admits 8 at once", ""]
    lines += _header("burst", section)
    c = runs[r["latest"]]["config"]
    lines += [
        f"The local stack in its own process, its gateway simulator admitting {c['max_in_flight']} jobs at once "
        "(QUEUED or PROCESSING) and answering 429 with the doc's error body and no Retry-After beyond that; the "
        f"pipeline is not told the limit. Each job generates for {c['generation_s']} s (the simulator's defaults: "
        f"0.2 s QUEUED, 0.6 s PROCESSING) with {c['media_bytes']}-byte media. The noisy caller POSTs on a fixed "
        f"schedule from {c['workers']} threads; the quiet caller POSTs {c['quiet_jobs']} jobs at once "
        f"{c['quiet_at_s']:g} s in. Final events are counted from a queue subscribed to the events topic; times are "
        f"seconds after the burst began, when the event was received. LOCAL_TIME_SCALE: {c['local_time_scale']}. "
        f"The wait for delivery ends {c['budget_s']:g} s after the burst began. `before`: POST calls the gateway "
        "itself; `after`: POST records and answers 202 ACCEPTED, a submitter feeds the gateway. The driver is a "
        "closed loop of a bounded pool: when POSTs are slow it falls behind its schedule (shown), and locally a "
        "function runs at most 16 containers at once on a shared 2-core machine, so slow POSTs queue here where "
        "Lambda would start more. Latest run: "
        f"`{r['latest']}`; targets from `{r['targets_from']}`.",
        "",
    ]
    labels = list(runs)
    columns = {label: _burst_figures(runs[label]) for label in labels}
    names = [name for name, _ in columns[labels[0]]]
    rows = [[name, *(dict(columns[label]).get(name, "-") for label in labels)] for name in names]
    lines += _table(["figure", *[f"`{label}`" for label in labels]], rows)
    targets = runs[r["targets_from"]]["targets"]
    lines += _table(
        ["target", *[f"`{label}`" for label in labels]],
        [
            [name]
            + [
                f"{_met(runs[label]['targets'].get(name))} ({runs[label]['targets'].get(name, {}).get('value')})"
                for label in labels
            ]
            for name in targets
        ],
    )
    return lines


def _built(section: dict[str, Any]) -> list[str]:
    result = section["result"]
    lines = ["", "## Cold import from the built artifacts (Lambda's 1980 file dates)", ""]
    lines += _header("built", section)
    lines += [f"Definition: {result['definition']}.", ""]
    rows = []
    for function, f in result["by_function"].items():
        rows.append(
            [
                function,
                f"{f['handler_instructions'] / 1e6:.0f} M",
                f"**{f['ratio']}** ({f['floor_instructions'] / 1e6:.0f} M)",
                f"**{f['own_floor_ratio']}** ({f['own_floor_instructions'] / 1e6:.0f} M)",
                f"{f['stale_bytecode_ratio']}",
                f"{f['handler_wall_ms']} / {f['floor_wall_ms']} ms ({f['wall_ratio_paired']})",
            ]
        )
    lines += _table(
        [
            "function",
            "import app",
            "÷ boto3 + one client",
            "÷ own floor (its clients)",
            "÷ one client, timestamp bytecode (before)",
            "wall: app / one-client floor (paired ratio)",
        ],
        rows,
    )
    return lines


def _reconcile_backlog(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = ["## 6. Reconciler over a backlog of unfinished jobs", ""]
    lines += _header("reconcile_backlog", section)
    lines += [
        "Jobs whose callbacks never came, written straight into the jobs table (due for a look), their requests "
        "seeded into the gateway simulator; ReconcileFunction invoked through the local stack's Lambda emulation "
        "(300 s timeout, its time budget) until a run finds nothing due. `generating`: every job still PROCESSING "
        "at the gateway (each poll pushes its next look: one write); `callbacks_lost`: half FAILED at the gateway "
        "(the poll moves the job and sends its copy request; the copier publishes the failed event alongside, on "
        "the same emulator). Method: " + r["method"] + ".",
        "",
    ]
    lines += _table(
        [
            "backlog",
            "jobs",
            "gateway ms/poll",
            "polls/s",
            "polls/s once under way (10-90%)",
            "time to clear (s)",
            "runs",
            "still due",
            "actions",
            "reconciler calls/job",
            "reconciler CPU ms/job",
            "vCPU at 100 polls/s",
            "machine CPU ms/job: stack, moto",
            "load 1m before, after",
        ],
        [
            [
                s["backlog"],
                s["jobs"],
                s["latency_ms"],
                s["polls_per_s"],
                s.get("sustained_polls_per_s"),
                s["clear_s"],
                len(s["runs"]),
                s["still_due_after"],
                ", ".join(f"{k} {v}" for k, v in s["actions"].items()),
                ", ".join(f"{k} {v}" for k, v in s["reconciler_calls_per_job"].items()),
                s["reconciler_cpu_ms_per_job"],
                s["vcpu_at_100_polls_s"],
                f"{s['local_cpu_ms_per_job']['stack_process']}, {s['local_cpu_ms_per_job']['moto_server']}",
                ", ".join(str(v) for v in s["load_average_1m"]),
            ]
            for s in r["scenarios"]
        ],
    )
    for s in r["scenarios"]:
        lines += [
            f"`{s['backlog']}` runs: "
            + "; ".join(
                f"{run['seconds']} s, {run['examined']} looked at, {run['polls_per_s']} polls/s"
                + (
                    f" (first poll after {run['first_poll_after_s']} s, {run['sustained_polls_per_s']} polls/s "
                    "once under way)"
                    if run.get("sustained_polls_per_s")
                    else ""
                )
                + (f", {run['deferred']} deferred" if run.get("deferred") else "")
                for run in s["runs"]
            )
            + ".",
            "",
        ]
    return lines


def _deadline(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = ["## 7. Deadlines: how late a job with deadline_seconds ends", ""]
    lines += _header("deadline", section)
    lines += ["Method: " + r["method"] + ".", ""]
    late = r["late_seconds"]
    lines += _table(
        ["jobs", "CANCELLED deadline_exceeded", "early", "late min (s)", "median", "p95", "max", "rounding median (s)"],
        [
            [
                r["jobs"],
                r["cancelled_deadline_exceeded"],
                r["early"],
                late["min"],
                late["median"],
                late["p95"],
                late["max"],
                r["rounding_seconds_median"],
            ]
        ],
    )
    return lines


def _clips(section: dict[str, Any]) -> list[str]:
    r = section["result"]
    lines = ["## 8. Real MP4 media: clip generation and the copier's box walker", ""]
    lines += _header("clips", section)
    lines += ["Method: " + r["method"] + ".", ""]
    lines += _table(
        ["resolution", "frame", "seconds", "frames/s", "bytes", "make (s, median)", "all runs (s)"],
        [
            [
                c["resolution"],
                f"{c['width']}x{c['height']}",
                c["seconds"],
                c["frame_rate"],
                c["bytes"],
                c["make_seconds_median"],
                ", ".join(str(t) for t in c["make_seconds_all"]),
            ]
            for c in r["clips"]
        ],
    )
    w = r["walker"]
    lines += [""]
    lines += _table(
        ["bytes walked (MiB)", "box walker (MiB/s)", "SHA-256 (MiB/s)", "walker time / SHA-256 time"],
        [[w["mib"], w["walker_mib_per_s"], w["sha256_mib_per_s"], w["walker_share_of_sha256"]]],
    )
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report."""
    benchmarks = results["benchmarks"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated {results['generated_at']} by `make bench` (`.venv/bin/python bench/run.py`); "
        "raw figures in `bench/results.json`. The machine is shared and noisy: every figure is a median of "
        "several runs, taken side by side with its peers in the same run, and compared as a ratio.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["target", "verdict"], [[name, "met" if met else "**missed**"] for name, met in results["targets"].items()]
    )
    renderers = {
        "copy": _copy,
        "cold": _cold,
        "built": _built,
        "cost": _cost,
        "webhook": _webhook,
        "capacity": _capacity,
        "burst": _burst,
        "reconcile_backlog": _reconcile_backlog,
        "deadline": _deadline,
        "clips": _clips,
    }
    for name, section in benchmarks.items():
        lines += renderers[name](section)
    return "\n".join(lines).rstrip() + "\n"
