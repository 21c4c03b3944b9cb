// Memory of the app as a user would count it: the RSS of the kefu-desktop
// process and all its descendants (WebKitGTK's web and network processes),
// read from /proc (Linux only; the figure is for docs/DESKTOP.md).
import { readdirSync, readFileSync } from "node:fs";

function procs() {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${name}/status`, "utf8"));
      out.push({ pid: Number(name), ppid, comm, rssKb: rss ? Number(rss[1]) : 0 });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * { total_mb, total_pss_mb, processes: [{comm, rss_mb, pss_mb, …}] } of
 * every kefu-desktop tree; with `dataDir`, only the instances started with
 * that data dir (other Kefus on the machine are not counted).
 */
export function appMemory(dataDir) {
  const all = procs();
  const roots = all
    .filter((p) => p.comm.startsWith("kefu-desktop"))
    .filter((p) => !dataDir || environ(p.pid).includes(`KEFU_DESKTOP_DATA_DIR=${dataDir}`));
  const seen = new Set();
  const queue = roots.map((p) => p.pid);
  while (queue.length) {
    const pid = queue.shift();
    if (seen.has(pid)) continue;
    seen.add(pid);
    for (const child of all) if (child.ppid === pid) queue.push(child.pid);
  }
  const tree = all.filter((p) => seen.has(p.pid));
  const mb = (kb) => Math.round((kb / 1024) * 10) / 10;
  const rollups = new Map(tree.map((p) => [p.pid, rollup(p.pid)]));
  return {
    total_mb: mb(tree.reduce((sum, p) => sum + p.rssKb, 0)),
    // PSS: shared pages (libraries mapped by several processes) counted
    // once across the system, so the processes' PSS add up honestly.
    total_pss_mb: mb(tree.reduce((sum, p) => sum + (rollups.get(p.pid).Pss ?? 0), 0)),
    processes: tree.map((p) => {
      const r = rollups.get(p.pid);
      return {
        comm: p.comm,
        rss_mb: mb(p.rssKb),
        pss_mb: mb(r.Pss ?? 0),
        // Anonymous: heaps, stacks, caches; the rest is file-backed (code
        // and data of the binary and its libraries) or shared memory.
        anon_mb: mb(r.Anonymous ?? 0),
        file_mb: mb((r.Rss ?? 0) - (r.Anonymous ?? 0) - (r.Pss_Shmem ?? 0)),
        ...(p.comm.startsWith("kefu-desktop") ? { top: topMappings(p.pid) } : {}),
      };
    }),
  };
}

/** /proc/PID/smaps_rollup as { field: kB }. */
function rollup(pid) {
  const out = {};
  try {
    for (const m of readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").matchAll(/^(\w+):\s+(\d+) kB/gm)) out[m[1]] = Number(m[2]);
  } catch {
    // gone meanwhile
  }
  return out;
}

/** The largest mappings of a process by RSS, grouped by file ("[anon]" for anonymous ones). */
function topMappings(pid, count = 10) {
  const sizes = new Map();
  let name = null;
  try {
    for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
      const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (head) {
        name = head[1] || "[anon]";
        continue;
      }
      const rss = /^Rss:\s+(\d+) kB/.exec(line);
      if (rss && name) sizes.set(name, (sizes.get(name) ?? 0) + Number(rss[1]));
    }
  } catch {
    return [];
  }
  return [...sizes.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([file, kb]) => ({ file: file.split("/").pop(), rss_mb: Math.round((kb / 1024) * 10) / 10 }));
}

function environ(pid) {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
  } catch {
    return [];
  }
}

/**
 * Ends every app process started with `dataDir` (SIGTERM, SIGKILL after
 * 10 s) and returns how many were still running. An instance that outlives
 * its WebDriver session would keep the test runner's output pipe open, and
 * the runner would wait for it forever. Only this test's instances are
 * touched: a Kefu the developer runs has another data dir.
 */
export async function stopApps(dataDir) {
  const mine = () =>
    procs()
      .filter((p) => p.comm.startsWith("kefu-desktop"))
      .filter((p) => environ(p.pid).includes(`KEFU_DESKTOP_DATA_DIR=${dataDir}`))
      .map((p) => p.pid);
  const signal = (pids, name) => {
    for (const pid of pids) {
      try {
        process.kill(pid, name);
      } catch {
        // gone meanwhile
      }
    }
  };
  const left = mine();
  signal(left, "SIGTERM");
  const until = Date.now() + 10000;
  while (Date.now() < until && mine().length > 0) await new Promise((r) => setTimeout(r, 100));
  signal(mine(), "SIGKILL");
  return left.length;
}
