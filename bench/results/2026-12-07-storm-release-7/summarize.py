#!/usr/bin/env python3
"""Prints the tables of docs/PERFORMANCE.md from this folder's JSON.
The first row of each run (or first two rows, throughput: os and fsync)
is the warm-up system and is left out. usage: summarize.py"""
import glob, json, os, re

def rows(name):
    d = json.load(open(name))
    return [r for s in d["sections"] for r in s["rows"]]

def ms(us):
    return us / 1000.0

def order(name):
    return "Kefu first" if name.endswith("af.json") else "Kefu-B first"

here = os.path.dirname(os.path.abspath(__file__))
os.chdir(here)
names = sorted(glob.glob("*.json"), key=lambda n: (n.split("-")[0], re.sub(r"\D", "", n), n))

print("throughput (100 visitors x 8 in flight, 10 s; warm-up B1 left out)")
print("| run | order | durability | Kefu acks/s | Kefu-B acks/s | A÷B acks/s | Kefu ack p99 ms | Kefu-B ack p99 ms | A÷B p99 | Kefu CPU s / 100k acks | Kefu-B CPU s / 100k acks | load A / B |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    if not n.startswith("tp-"):
        continue
    rs = [r for r in rows(n) if r["system"] in ("Kefu", "Kefu-B")]
    for dur in ("os", "fsync"):
        a = next(r for r in rs if r["system"] == "Kefu" and r["durability"] == dur)
        b = next(r for r in rs if r["system"] == "Kefu-B" and r["durability"] == dur)
        cpa = a["server_cpu_seconds"] / a["acked"] * 1e5
        cpb = b["server_cpu_seconds"] / b["acked"] * 1e5
        print(f"| {n[:-5]} | {order(n)} | {dur} | {a['acks_per_second']:.0f} | {b['acks_per_second']:.0f} | "
              f"{a['acks_per_second']/b['acks_per_second']:.2f} | {ms(a['ack_us']['p99']):.1f} | {ms(b['ack_us']['p99']):.1f} | "
              f"{a['ack_us']['p99']/b['ack_us']['p99']:.2f} | {cpa:.2f} | {cpb:.2f} | {a['load']} / {b['load']} |")

print()
print("storm (200 new/s for 20 s on 10,000 msg/s over 1,000 chats, fsync; warm-up B1f left out)")
print("| run | system | load | missing acks | ack p50 / p99 / p99.9 / max ms | first-message ack p99 ms | visible / assigned p99 s | server CPU s | log answer / queue wait / write p99 ms | ÷ Kefu-B | ÷ B1f | ÷ B1 | ÷ N |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    if not n.startswith("storm-"):
        continue
    rs = rows(n)[1:]
    by = {}
    for r in rs:
        by.setdefault(r["system"], r)
    for r in rs:
        a = r["ack_us"]
        log = r.get("log_us")
        logs = (f"{ms(log['answer']['p99']):.2f} / {ms(log['queue_wait']['p99']):.2f} / {ms(log['write']['p99']):.2f}" if log else "—")
        vis = r.get("visible_us"); asg = r.get("assigned_us")
        va = f"{vis['p99']/1e6:.2f} / " + (f"{asg['p99']/1e6:.2f}" if asg else "—")
        ratios = []
        for other in ("Kefu-B", "B1f", "B1", "N"):
            if r["system"] in ("Kefu", "Kefu-B") and other in by and other != r["system"] and not (r["system"] == "Kefu-B" and other == "Kefu-B"):
                ratios.append(f"{a['p99']/by[other]['ack_us']['p99']:.2f}")
            else:
                ratios.append("")
        if r["system"] == "Kefu-B":
            ratios[0] = ""
        print(f"| {n[:-5]} | {r['system']} | {r['load']} | {r['missing_acks']} | {ms(a['p50']):.2f} / **{ms(a['p99']):.2f}** / {ms(a['p999']):.2f} / {ms(a['max']):.2f} | "
              f"{ms(r['first_ack_us']['p99']):.2f} | {va} | {r['server_cpu_seconds']} | {logs} | " + " | ".join(ratios) + " |")

print()
print("opening 5,000 conversations (latency scenario's opening phase; warm-up B1 left out)")
print("| run | system | load | open s | ÷ B1 | latency p50 / p99 ms |")
print("|---|---|---|---|---|---|")
for n in names:
    if not n.startswith("open-"):
        continue
    rs = rows(n)[1:]
    b1 = next(r for r in rs if r["system"] == "B1")
    for r in rs:
        l = r["latency_us"]
        print(f"| {n[:-5]} | {r['system']} | {r['load']} | {r['open_seconds']} | {r['open_seconds']/b1['open_seconds']:.2f} | {ms(l['p50']):.2f} / {ms(l['p99']):.2f} |")
