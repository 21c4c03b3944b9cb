#!/usr/bin/env python3
"""Per pair: one row per run pair (tp-N + lat-N of one order), ratios after (Kefu) / before (Kefu-B).
usage: summarize.py TAG [TAG...]   (reads TAG-tp-*.json, TAG-lat-*.json in this folder)"""
import json, sys, glob, os, math
os.chdir(os.path.dirname(os.path.abspath(__file__)))
def rows(p):
    return [r for s in json.load(open(p))['sections'] for r in s['rows']]
for tag in sys.argv[1:]:
    print(f"\n#### {tag}\n")
    print("| run (order) | os acks/s A÷B | os ack p99 A÷B | fsync acks/s A÷B | fsync ack p99 A÷B | lat p99 A÷B | lat p50 A÷B | load A / B (os, fsync, lat) |")
    print("|---|---|---|---|---|---|---|---|")
    allr, names = [], []
    runs = sorted({p.split('-')[-1][:-5] for p in glob.glob(f"{tag}-tp-*.json") + glob.glob(f"{tag}-lat-*.json")})
    for run in runs:
        tp = f"{tag}-tp-{run}.json"
        t = {(r['system'], r['durability']): r for r in rows(tp) if r['system'] in ('Kefu', 'Kefu-B')} if os.path.exists(tp) else {}
        lp = f"{tag}-lat-{run}.json"
        l = {r['system']: r for r in rows(lp)} if os.path.exists(lp) else {}
        def q(a, b): return f"{a/b:.2f}" if a and b else "–"
        cells = []
        for d in ('os', 'fsync'):
            A, B = t.get(('Kefu', d)), t.get(('Kefu-B', d))
            if not A:
                cells += ["–", "–"]; continue
            cells += [q(A['acks_per_second'], B['acks_per_second']) + f" ({A['acks_per_second']:.0f}/{B['acks_per_second']:.0f})",
                      q(A['ack_us']['p99'], B['ack_us']['p99']) + f" ({A['ack_us']['p99']/1000:.1f}/{B['ack_us']['p99']/1000:.1f})"]
        if l:
            A, B = l['Kefu'], l['Kefu-B']
            cells += [q(A['latency_us']['p99'], B['latency_us']['p99']) + f" ({A['latency_us']['p99']/1000:.2f}/{B['latency_us']['p99']/1000:.2f})",
                      q(A['latency_us']['p50'], B['latency_us']['p50']) + f" ({A['latency_us']['p50']/1000:.2f}/{B['latency_us']['p50']/1000:.2f})"]
            ll = f"{l['Kefu']['load']} / {l['Kefu-B']['load']}"
        else:
            cells += ["–", "–"]; ll = "–"
        loads = (f"{t[('Kefu','os')]['load']} / {t[('Kefu-B','os')]['load']}, {t[('Kefu','fsync')]['load']} / {t[('Kefu-B','fsync')]['load']}, " if t else "–, –, ") + ll
        print(f"| {run} | " + " | ".join(cells) + f" | {loads} |")
        allr.append([float(c.split()[0]) if c != "–" else None for c in cells])
        names.append(run)
    def gm(xs):
        xs = [x for x in xs if x]
        import statistics
        return f"{statistics.median(xs):.2f} [{min(xs):.2f}–{max(xs):.2f}]" if xs else "–"
    # Order-balanced: per repetition, the geometric mean of its af and bf
    # ratios (the measured-first / measured-second effect cancels).
    for rep in sorted({n[:-2] for n in names}):
        if rep + "af" in names and rep + "bf" in names:
            a, b = allr[names.index(rep + "af")], allr[names.index(rep + "bf")]
            print(f"| √(af·bf) rep {rep} | " + " | ".join(f"{math.sqrt(x*y):.2f}" if x and y else "–" for x, y in zip(a, b)) + " | |")
    print("| median [min–max] | " + " | ".join(gm([r[i] for r in allr]) for i in range(6)) + " | |")
