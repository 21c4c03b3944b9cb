//! mDNS discovery for real, between two network namespaces this test makes
//! (a veth pair, 10.231.0.0/24 inside the namespaces only), so that no
//! multicast ever leaves on the machine's own interfaces. A host advertises
//! with `kefu-lan-probe advertise` in one namespace, a browser lists it with
//! `kefu-lan-probe browse` in the other.
//!
//! Making namespaces needs root and iproute2. Where that is impossible the
//! tests print "SKIPPED: …" and pass; .config/nextest.toml shows their
//! output even when they pass, so a skip is visible in every run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kefu_tests::serde_json::{self, Value};

/// mDNS probes, announces and resolves over a few seconds; generous for a
/// loaded machine (this is a deadline for a condition, not a timing).
const DISCOVERY_WAIT: Duration = Duration::from_secs(40);
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair; deleted on drop, even when the
/// test fails (deleting a namespace deletes its end of the pair).
pub(crate) struct Namespaces {
    pub(crate) names: [String; 2],
    pub(crate) interfaces: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let namespaces = Namespaces {
            names: [format!("kefu-t-{tag}-a"), format!("kefu-t-{tag}-b")],
            // Interface names are at most 15 bytes.
            interfaces: [format!("kt{tag}a"), format!("kt{tag}b")],
        };
        if namespaces.interfaces[0].len() > 15 {
            return Err("interface name too long".to_owned());
        }
        let [a, b] = &namespaces.names;
        let [va, vb] = &namespaces.interfaces;
        ip(&["netns", "add", a])?;
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", b])?;
        // Both ends are made inside the namespaces: nothing appears, even
        // briefly, in the machine's own network.
        ip(&[
            "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
        ])?;
        for (ns, dev, addr) in [(a, va, "10.231.0.1/24"), (b, vb, "10.231.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        eprintln!("mDNS test inside the network namespaces {a} and {b} (veth {va} ↔ {vb})");
        Ok(namespaces)
    }

    /// Runs the probe inside namespace `index` (0 = a, 1 = b).
    pub(crate) fn probe(&self, index: usize, args: &[&str]) -> Probe {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.names[index]])
            .arg(env!("CARGO_BIN_EXE_kefu-lan-probe"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the probe");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("probe said: {line}");
                    continue;
                };
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        Probe {
            child,
            stdin,
            lines,
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            if let Err(error) = ip(&["netns", "del", name]) {
                eprintln!("cleanup: {error}");
            }
        }
    }
}

/// A probe process (`ip netns exec` execs it, so this is its pid); killed
/// on drop if still running.
pub(crate) struct Probe {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
}

impl Probe {
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write to the probe");
        stdin.flush().expect("flush");
    }

    /// Lines until one satisfies `done`; every line goes through `each`.
    pub(crate) fn until(
        &mut self,
        what: &str,
        mut each: impl FnMut(&Value),
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + DISCOVERY_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) => {
                    each(&value);
                    if done(&value) {
                        return value;
                    }
                }
                Err(_) => panic!("waited {DISCOVERY_WAIT:?} for {what}"),
            }
        }
    }

    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + DISCOVERY_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The namespaces, or None after saying clearly why the test is skipped.
pub(crate) fn namespaces_or_skip(test: &str) -> Option<Namespaces> {
    match Namespaces::create() {
        Ok(namespaces) => Some(namespaces),
        Err(reason) => {
            eprintln!(
                "SKIPPED: {test}: cannot make network namespaces ({reason}); \
                 mDNS is only ever tested inside namespaces, never on this machine's interfaces"
            );
            None
        }
    }
}

pub(crate) fn host_with<'a>(snapshot: &'a Value, id: &str) -> Option<&'a Value> {
    snapshot["hosts"]
        .as_array()?
        .iter()
        .find(|host| host["device_id"] == id)
}

#[test]
fn a_host_is_found_updated_and_forgotten_across_namespaces() {
    let Some(ns) = namespaces_or_skip("lan_discovery::a_host_is_found_updated_and_forgotten")
    else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    let data_dir_text = data_dir.path().to_str().expect("utf8").to_owned();
    let mut host = ns.probe(
        0,
        &[
            "advertise",
            "--data-dir",
            &data_dir_text,
            "--interface",
            &ns.interfaces[0],
            "--port",
            "5339",
            "--shop",
            "小林茶馆",
        ],
    );
    let started = host.until(
        "the host to advertise",
        |_| {},
        |v| v.get("advertising").is_some(),
    );
    let id = started["device_id"].as_str().expect("id").to_owned();

    let mut browser = ns.probe(1, &["browse", "--interface", &ns.interfaces[1]]);
    let found = browser.until(
        "the host to be found",
        |_| {},
        |v| host_with(v, &id).is_some(),
    );
    let entry = host_with(&found, &id).expect("entry");
    assert_eq!(entry["shop"], "小林茶馆");
    assert_eq!(entry["term"], 1);
    assert_eq!(entry["addresses"], serde_json::json!(["10.231.0.1:5339"]));
    assert!(
        entry["instance"]
            .as_str()
            .expect("instance")
            .starts_with("小林茶馆 ("),
        "{entry}"
    );

    // A new term is announced and seen.
    host.send("term 2");
    browser.until(
        "term 2",
        |_| {},
        |v| host_with(v, &id).is_some_and(|h| h["term"] == 2),
    );

    // Goodbye: the browser forgets the host.
    host.send("quit");
    host.until("the host to stop", |_| {}, |v| v.get("stopped").is_some());
    assert!(host.wait_exit(), "the advertiser exits cleanly");
    browser.until(
        "the host to be forgotten",
        |_| {},
        |v| host_with(v, &id).is_none(),
    );
}

#[test]
fn a_flood_of_announcements_stays_bounded() {
    let Some(ns) = namespaces_or_skip("lan_discovery::a_flood_of_announcements_stays_bounded")
    else {
        return;
    };
    let mut flood = ns.probe(
        0,
        &["flood", "--interface", &ns.interfaces[0], "--count", "40"],
    );
    flood.until(
        "the flood to start",
        |_| {},
        |v| v.get("flooding").is_some(),
    );
    let mut browser = ns.probe(
        1,
        &[
            "browse",
            "--interface",
            &ns.interfaces[1],
            "--max-new-per-minute",
            "16",
        ],
    );
    let mut most = 0;
    let last = browser.until(
        "the rate limit and the malformed announcements to show",
        |v| most = most.max(v["hosts"].as_array().map_or(0, Vec::len)),
        |v| {
            let stats = &v["stats"];
            stats["admitted"] == 16
                && stats["refused_rate"].as_u64() >= Some(1)
                && stats["malformed"].as_u64() >= Some(4)
        },
    );
    assert!(most <= 16, "at most 16 new hosts a minute, saw {most}");
    // The browser still answers (it is not stuck): ask it to stop.
    drop(browser.stdin.take());
    assert!(browser.wait_exit(), "the browser stops cleanly: {last}");
}

/// Kills the server process on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_server_started_with_lan_bind_announces_itself_as_host() {
    kefu_tests::in_process_only("runs the Linux build inside a network namespace");
    let Some(ns) = namespaces_or_skip("lan_discovery::a_server_started_with_lan_bind_announces")
    else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    let interfaces = format!("[\"{}\"]", ns.interfaces[0]);
    let _server = Server(
        Command::new("ip")
            .args(["netns", "exec", &ns.names[0]])
            .arg(env!("CARGO_BIN_EXE_kefu-server-under-test"))
            .args(["serve", "--data-dir"])
            .arg(data_dir.path())
            .args(["--bind", "127.0.0.1:5338", "--lan-bind", "10.231.0.1:5339"])
            .args(["--durability", "os"])
            .env("RUST_LOG", "warn")
            .env("KEFU_LAN__MDNS__ENABLED", "true")
            .env("KEFU_LAN__MDNS__INTERFACES", &interfaces)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the server"),
    );
    let mut browser = ns.probe(1, &["browse", "--interface", &ns.interfaces[1]]);
    let found = browser.until(
        "the server to be found",
        |_| {},
        |v| v["hosts"].as_array().is_some_and(|hosts| !hosts.is_empty()),
    );
    let entry = &found["hosts"][0];
    let (identity, _) =
        kefu_server::lan::Identity::open(data_dir.path()).expect("the server's identity");
    assert_eq!(entry["device_id"], identity.device_id().to_string());
    assert_eq!(entry["term"], 1);
    assert_eq!(entry["addresses"], serde_json::json!(["10.231.0.1:5339"]));
    assert_eq!(entry["shop"], serde_json::Value::Null);

    // Renamed on the running host (`lan shop-name` reaches it with its
    // operator token, inside its namespace): the TXT record says so at once.
    let output = Command::new("ip")
        .args(["netns", "exec", &ns.names[0]])
        .arg(env!("CARGO_BIN_EXE_kefu-server-under-test"))
        .args(["lan", "shop-name", "小林茶馆", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .expect("lan shop-name");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("announced over mDNS now"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let id = identity.device_id().to_string();
    let renamed = browser.until(
        "the new shop name in the TXT record",
        |_| {},
        |v| host_with(v, &id).is_some_and(|h| h["shop"] == "小林茶馆"),
    );
    let entry = host_with(&renamed, &id).expect("entry");
    assert!(
        entry["instance"]
            .as_str()
            .expect("instance")
            .starts_with("小林茶馆 ("),
        "{entry}"
    );
}
