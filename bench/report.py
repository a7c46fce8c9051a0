#!/usr/bin/env python3
"""Combine a scripts/bench scratch dir into bench/results/<stamp>.{json,md,png}.

Inputs in --work: baseline.json (fjord-bench baseline --json), run-<w>.json
(fjord-bench run --json) and broker-<w>.json (written by scripts/bench from /proc).
"""

import argparse
import json
import os
import platform
import subprocess
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def host_info():
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "mem_gib": round(mem_kb / 2**20, 1) if mem_kb else None,
            "kernel": platform.release(), "python": platform.python_version()}


def fmt(v, spec=".1f", dash="-"):
    return dash if v is None else format(v, spec)


def combine(args):
    baseline = load(os.path.join(args.work, "baseline.json")) or {}
    tcp = baseline.get("tcp_loopback_mb_s")
    fsync = baseline.get("file_write_fdatasync_mb_s")
    workloads = []
    for name in args.workloads.split(","):
        run = load(os.path.join(args.work, f"run-{name}.json"))
        broker = load(os.path.join(args.work, f"broker-{name}.json")) or {}
        entry = {"name": name, "ok": run is not None, "broker": broker}
        if run:
            entry.update(run)
            moved = run["produce"]["bytes"] + run["consume"]["bytes"]
            cpu = broker.get("cpu_seconds")
            broker["gb_moved"] = moved / 1e9
            broker["cpu_seconds_per_gb"] = cpu / (moved / 1e9) if cpu is not None and moved else None
            node_cpu = broker.get("node_cpu_seconds") or []
            broker["node_cpu_seconds_per_gb"] = [c / (moved / 1e9) for c in node_cpu] if moved else []
            client_cpu = broker.get("client_cpu_seconds")
            broker["client_cpu_seconds_per_gb"] = (
                client_cpu / (moved / 1e9) if client_cpu is not None and moved else None)
            entry["ratios"] = {
                "produce_vs_tcp_loopback": run["produce"]["mb_per_s"] / tcp if tcp else None,
                "consume_vs_tcp_loopback": run["consume"]["mb_per_s"] / tcp if tcp else None,
                "produce_vs_fdatasync_write": run["produce"]["mb_per_s"] / fsync if fsync else None,
            }
        idle = broker.get("idle_partitions")
        if idle:
            idle["rss_growth_per_partition_kb"] = (idle["rss_after_kb"] - idle["rss_before_kb"]) / idle["partitions"]
        workloads.append(entry)
    return {"date": os.path.basename(args.out), "mode": args.mode, "git_commit": git_rev(),
            "suite_seconds": args.suite_seconds, "host": host_info(), "baseline": baseline,
            "workloads": workloads}


def markdown(res):
    b = res["baseline"]
    lines = [f"# Fjord benchmark {res['date']} ({res['mode']})", "",
             f"commit `{res['git_commit']}`, {res['host']['cpus']} CPUs, {res['host']['mem_gib']} GiB, "
             f"kernel {res['host']['kernel']}; broker and load generator on the same machine; "
             f"suite took {res['suite_seconds']} s. MB = 10^6 bytes of payload; latencies in ms.", "",
             "## Physical limits", "",
             "| baseline | MB/s |", "|---|---:|",
             f"| TCP loopback copy ({b.get('tcp_bytes', 0) >> 20} MiB, 1 MiB writes) | {fmt(b.get('tcp_loopback_mb_s'), '.0f')} |",
             f"| sequential write, page cache ({b.get('file_bytes', 0) >> 20} MiB) | {fmt(b.get('file_write_page_cache_mb_s'), '.0f')} |",
             f"| sequential write + fdatasync | {fmt(b.get('file_write_fdatasync_mb_s'), '.0f')} |", "",
             "## Workloads", "",
             "| workload | produce MB/s | produce msg/s | consume MB/s | e2e p50 / p99 / p99.9 / max | ack p50 / p99 / p99.9 | produce / TCP | consume / TCP | broker CPU s/GB | client CPU s/GB | peak RSS MiB | RSS after MiB |",
             "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for w in res["workloads"]:
        br = w.get("broker", {})
        if not w["ok"]:
            lines.append(f"| {w['name']} | failed | | | | | | | | | | |")
            continue
        p, c = w["produce"], w["consume"]
        e, a = w.get("e2e_latency_ms"), w.get("ack_latency_ms")
        e_s = "-" if not e else f"{e['p50_ms']:.1f} / {e['p99_ms']:.1f} / {e['p999_ms']:.1f} / {e['max_ms']:.1f}"
        a_s = "-" if not a else f"{a['p50_ms']:.1f} / {a['p99_ms']:.1f} / {a['p999_ms']:.1f}"
        r = w["ratios"]
        name = w["name"] + (" (fill / drain)" if w["workload"].get("backlog_bytes") else "")
        hwm = br.get("vm_hwm_kb")
        end = br.get("rss_end_kb")
        lines.append(
            f"| {name} | {p['mb_per_s']:.1f} | {p['msgs_per_s']:,.0f} | {c['mb_per_s']:.1f} | {e_s} | {a_s} | "
            f"{fmt(r['produce_vs_tcp_loopback'], '.3f')} | {fmt(r['consume_vs_tcp_loopback'], '.3f')} | "
            f"{fmt(br.get('cpu_seconds_per_gb'), '.1f')} | {fmt(br.get('client_cpu_seconds_per_gb'), '.1f')} | "
            f"{fmt(hwm / 1024 if hwm else None, '.0f')} | "
            f"{fmt(end / 1024 if end else None, '.0f')} |")
        for warning in w.get("warnings", []):
            notes.append(f"- {w['name']}: {warning}")
        if br.get("exit_code"):
            notes.append(f"- {w['name']}: fjord-bench exited with {br['exit_code']}")
        if br.get("log_warn_error_lines"):
            notes.append(f"- {w['name']}: {br['log_warn_error_lines']} WARN/ERROR lines in the broker log")
        if (br.get("nodes") or 1) > 1:
            per_node = " / ".join(f"{c:.1f}" for c in br.get("node_cpu_seconds_per_gb", []))
            notes.append(f"- {w['name']}: {br['nodes']} local nodes (scripts/cluster), replication factor "
                         f"{w['workload'].get('replication_factor', 1)}; broker CPU s/GB summed over the nodes "
                         f"(per node: {per_node}); peak RSS and RSS after are the largest node's")
        protocol = w["workload"].get("security_protocol", "PLAINTEXT")
        if protocol != "PLAINTEXT":
            how = ("`fjord serve --secure`: TLS, SCRAM-SHA-512 logins, authorizer on" if protocol == "SASL_SSL"
                   else "an SSL listener, server authentication only")
            notes.append(f"- {w['name']}: clients over {protocol} ({how}); compare with 16p-1kb")
        quota = w.get("quota")
        if quota:
            notes.append(f"- {w['name']}: producer_byte_rate quota {quota['quota_mb_s']:.1f} MB/s, achieved "
                         f"{quota['achieved_mb_s']:.2f} MB/s = {quota['achieved_vs_quota']:.2f}x the quota "
                         f"(Kafka's windowed rate allows up to {quota['kafka_ceiling_vs_quota']:.2f}x over this run)")
        idle = br.get("idle_partitions")
        if idle:
            notes.append(f"- {w['name']}: broker RSS {idle['rss_before_kb'] / 1024:.1f} MiB -> "
                         f"{idle['rss_after_kb'] / 1024:.1f} MiB after creating {idle['partitions']} idle partitions: "
                         f"{idle['rss_growth_per_partition_kb']:.1f} KiB per idle partition")
    lines += ["", "Ratios compare payload MB/s with the TCP loopback copy. Broker CPU s/GB = broker "
              "utime+stime during the workload / (produced + consumed payload GB); client CPU s/GB is the same for "
              "the fjord-bench process (producers and consumers), which shares the machine's CPUs with the broker. "
              "Peak RSS is the broker's "
              "VmHWM (a fresh broker per workload).", ""]
    if notes:
        lines += ["## Notes", ""] + notes + [""]
    return "\n".join(lines)


def chart(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = [w for w in res["workloads"] if w["ok"]]
    names = [w["name"] for w in ws]
    x = range(len(ws))
    fig, axes = plt.subplots(1, 3, figsize=(19, 6.5))
    ax = axes[0]
    width = 0.38
    prod = [w["produce"]["mb_per_s"] for w in ws]
    cons = [w["consume"]["mb_per_s"] for w in ws]
    ax.bar([i - width / 2 for i in x], prod, width, label="produce")
    ax.bar([i + width / 2 for i in x], cons, width, label="consume")
    for i, (p, c) in enumerate(zip(prod, cons)):
        ax.text(i - width / 2, p, f"{p:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(i + width / 2, c, f"{c:.0f}", ha="center", va="bottom", fontsize=8)
    tcp = res["baseline"].get("tcp_loopback_mb_s")
    fsync = res["baseline"].get("file_write_fdatasync_mb_s")
    if fsync:
        ax.axhline(fsync, color="gray", linestyle="--", linewidth=1, label=f"write+fdatasync {fsync:.0f}")
    ax.set_title(f"Throughput, MB/s (TCP loopback: {tcp:.0f} MB/s)" if tcp else "Throughput, MB/s")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    for ax, key, title in ((axes[1], "e2e_latency_ms", "End-to-end latency, ms (log)"),
                           (axes[2], "ack_latency_ms", "Produce-ack latency, ms (log)")):
        pct = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"), ("max_ms", "max"))
        bw = 0.2
        for j, (k, label) in enumerate(pct):
            # Missing percentiles (catch-up has no end-to-end latency) are left out, not drawn as 0.
            vals = [(w.get(key) or {}).get(k) or float("nan") for w in ws]
            ax.bar([i + (j - 1.5) * bw for i in x], vals, bw, label=label)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)
        ax.set_title(title)
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3, which="both")
    fig.suptitle(f"Fjord benchmark {res['date']} ({res['mode']}, commit {res['git_commit']})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", required=True, help="scratch dir written by scripts/bench")
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--suite-seconds", type=int, default=None)
    ap.add_argument("--workloads", required=True, help="comma-separated workload names")
    args = ap.parse_args()
    res = combine(args)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    with open(args.out + ".md", "w") as f:
        f.write(markdown(res))
    try:
        chart(res, args.out + ".png")
    except ImportError as e:
        print(f"report.py: no chart ({e}); install matplotlib", file=sys.stderr)


if __name__ == "__main__":
    main()
