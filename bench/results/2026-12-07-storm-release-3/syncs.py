#!/usr/bin/env python3
# perf script output -> per-thread-name sync latency distribution, and jbd2 commit stats
import sys, re, collections, subprocess
data, pid = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
txt = subprocess.run(['perf','script','-i',data,'-F','comm,pid,tid,time,event,trace'],capture_output=True,text=True).stdout
open_ = {}
dur = collections.defaultdict(list)
starts = collections.defaultdict(list)
jbd = []
for line in txt.splitlines():
    m = re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if not m: continue
    comm, p, tid, t, ev, rest = m.groups(); t = float(t)
    if 'jbd2_run_stats' in ev:
        f = dict(re.findall(r'(\w+) (\d+)', rest)); jbd.append((t, f)); continue
    who = ('kefu:' if pid and p == pid else ('other:' if pid else '')) + comm
    if 'sys_enter' in ev: open_[tid] = t
    elif 'sys_exit' in ev and tid in open_:
        s = open_.pop(tid); dur[who].append((t - s) * 1000); starts[who].append(s)
def pct(v, q):
    v = sorted(v); return v[min(len(v)-1, int(q*len(v)))]
span = None
for who, v in sorted(dur.items(), key=lambda x: -len(x[1])):
    st = starts[who]; secs = max(st)-min(st) if len(st) > 1 else 0
    print(f"{who:32s} n={len(v):6d} ({len(v)/secs if secs else 0:6.1f}/s) p50 {pct(v,.5):6.2f} p90 {pct(v,.9):6.2f} p99 {pct(v,.99):6.2f} p99.9 {pct(v,.999):6.2f} max {max(v):7.2f} ms")
if jbd:
    for k in ('running','locked','flushing','logging','handle_count','blocks','blocks_logged'):
        v=[int(f.get(k,0)) for _,f in jbd]
        print(f"jbd2 {k:14s} n={len(v)} p50 {pct(v,.5)} p90 {pct(v,.9)} p99 {pct(v,.99)} max {max(v)}")
# Model: sends arriving evenly (every 0.1 ms) during the run; each is acked when the
# first WAL sync that starts after it ends (the writer's syncs only; CPU ignored).
import bisect
for who in dur:
    if who not in ('kefu:kefu-log-writer', 'kefu:b1-writer'): continue
    # rebuild (start, end) pairs
    pairs = sorted(zip(starts[who], [s + d/1000 for s, d in zip(starts[who], dur[who])]))
    ss = [p[0] for p in pairs]
    over = sum(1 for d in dur[who] if d > 10) / len(dur[who]) * 100
    lat = []
    t = ss[0]; end = ss[-1]
    while t < end:
        j = bisect.bisect_left(ss, t)
        # only while the writer is busy: the next sync starts within 50 ms
        if j < len(pairs) and pairs[j][0] - t < 0.05: lat.append((pairs[j][1] - t) * 1000)
        t += 0.0001
    print(f"{who}: syncs over 10 ms {over:.2f} %; modelled sync-only ack (arrivals every 0.1 ms while busy): p50 {pct(lat,.5):.2f} p90 {pct(lat,.9):.2f} p99 {pct(lat,.99):.2f} p99.9 {pct(lat,.999):.2f} ms")
# Which WAL syncs overlapped another sync of the same process (a RocksDB flush/compaction's SST
# sync, SQLite's commits), and how slow each group was.
iv = {}
for who in dur:
    iv[who] = sorted(zip(starts[who], [s + d/1000 for s, d in zip(starts[who], dur[who])]))
def overlaps(a, b, lst):
    i = bisect.bisect_left(lst, (a - 1.0,))
    for s, e in lst[i:]:
        if s > b: break
        if e > a and s < b: return True
    return False
for who in dur:
    if who not in ('kefu:kefu-log-writer', 'kefu:b1-writer'): continue
    others = {w: iv[w] for w in iv if w != who and w.startswith('kefu:')}
    groups = collections.defaultdict(list)
    for s, e in iv[who]:
        tags = [w.split(':', 1)[1] for w, lst in others.items() if overlaps(s, e, lst)]
        groups['+'.join(sorted(set(t.split(':')[0] if t.startswith('rocksdb') else t for t in tags))) or 'alone'].append((e - s) * 1000)
    for g, v in sorted(groups.items(), key=lambda x: -len(x[1])):
        print(f"  WAL syncs overlapping [{g}]: n={len(v)} p50 {pct(v,.5):.2f} p90 {pct(v,.9):.2f} p99 {pct(v,.99):.2f} max {max(v):.2f} ms; over 10 ms {sum(1 for d in v if d > 10)/len(v)*100:.1f} %")
