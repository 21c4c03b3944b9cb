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

/** { total_mb, processes: [{comm, rss_mb}] } of every kefu-desktop tree. */
export function appMemory() {
  const all = procs();
  const roots = all.filter((p) => p.comm.startsWith("kefu-desktop"));
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
  return {
    total_mb: mb(tree.reduce((sum, p) => sum + p.rssKb, 0)),
    processes: tree.map((p) => ({ comm: p.comm, rss_mb: mb(p.rssKb) })),
  };
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
