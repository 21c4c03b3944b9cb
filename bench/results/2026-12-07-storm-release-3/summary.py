import json,re,os,sys
d='/work/wt24/bench/results/2026-12-07-storm-release-3'
runs=[l for l in open(f'{d}/runs.log')]
starts={}
for l in runs:
    m=re.match(r'run (\S+) .*start (\S+) (\S+) (\S+) (\S+)',l)
    if m: starts[m.group(1)]=(m.group(2),m.group(3))
ms=lambda v: '%.1f'%(v/1e3) if isinstance(v,(int,float)) else '—'
print('| run (UTC, load 1 min) | variant | system | ack p50 / p99 / p99.9 ms | log: queue wait / write / answer p99 ms | WAL fdatasync p50 / p99 ms, over 10 ms | server CPU s |')
print('|---|---|---|---|---|---|---|')
for name in sys.argv[1:]:
    f=f'{d}/{name}.json'
    if not os.path.exists(f): continue
    j=json.load(open(f))
    t,load=starts.get(name,('?','?'))
    variant='base'
    if 'recycle' in name: variant='`recycle_log_file_num=4`'
    elif 'bps' in name: variant='`bytes_per_sync=1 MiB` + auto-tuned rate limiter'
    elif 'shim' in name: variant='SQLite syncs removed (LD_PRELOAD)'
    sy=open(f'{d}/{name}.syncs.txt').read() if os.path.exists(f'{d}/{name}.syncs.txt') else ''
    for sec in j['sections']:
        for r in sec['rows']:
            a=r['ack_us']; l=r.get('log_us') or None
            lg=f"{ms(l['queue_wait']['p99'])} / {ms(l['write']['p99'])} / {ms(l['answer']['p99'])}" if l else ''
            wal=''
            who='kefu:kefu-log-writer' if r['system']=='Kefu' else ('kefu:b1-writer' if r['system']=='B1f' else None)
            if who and sy:
                m=re.search(re.escape(who)+r'\s+n=\s*\d+.*?p50\s+([\d.]+) p90\s+[\d.]+ p99\s+([\d.]+)',sy)
                o=re.search(re.escape(who)+r': syncs over 10 ms ([\d.]+) %',sy)
                if m: wal=f"{m.group(1)} / {m.group(2)}, {o.group(1) if o else '?'} %"
            print(f"| {name} ({t}, {load}) | {variant} | {r['system']} | {ms(a['p50'])} / {ms(a['p99'])} / {ms(a['p999'])} | {lg} | {wal} | {r['server_cpu_seconds']} |")
