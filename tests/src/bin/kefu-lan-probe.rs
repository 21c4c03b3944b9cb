//! A small driver of `kefu_server::lan` for tests that need separate
//! processes: mDNS discovery between network namespaces (run with
//! `ip netns exec`), and kill -9 during term writes. It prints one JSON
//! object per line on stdout and takes commands on stdin.
//!
//! - `advertise --data-dir D --interface IF --port P [--shop NAME]`:
//!   advertises this device as a host (term 1); stdin `term N` re-announces
//!   with term N, `quit` says goodbye and exits.
//! - `flood --interface IF --count N`: advertises N made-up hosts and four
//!   malformed announcements; runs until stdin closes.
//! - `browse --interface IF [--max-new-per-minute N]`: prints the list of
//!   hosts found each time it changes; runs until stdin closes.
//! - `bump-terms --data-dir D`: bumps the term forever, printing each term
//!   once it is durable.
//!
//! Never run the mDNS modes outside a network namespace made for the test:
//! they multicast on the interface they are given.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kefu_server::lan::config::MdnsConfig;
use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::discovery::txt::Announcement;
use kefu_server::lan::discovery::{Advertiser, Browser, SERVICE_TYPE};
use kefu_server::lan::identity::Identity;
use kefu_server::lan::state::{LanStateFile, Role};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kefu-lan-probe: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `--key value` pairs after the mode.
fn options(args: &[String]) -> Result<HashMap<String, String>> {
    let mut options = HashMap::new();
    let mut iter = args.iter();
    while let Some(key) = iter.next() {
        let key = key.strip_prefix("--").ok_or(format!("unexpected {key}"))?;
        let value = iter.next().ok_or(format!("--{key} needs a value"))?;
        options.insert(key.to_owned(), value.clone());
    }
    Ok(options)
}

fn required<'a>(options: &'a HashMap<String, String>, key: &str) -> Result<&'a String> {
    Ok(options.get(key).ok_or(format!("--{key} is required"))?)
}

fn say(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn mdns_config(options: &HashMap<String, String>) -> Result<MdnsConfig> {
    let mut config = MdnsConfig {
        enabled: true,
        interfaces: vec![required(options, "interface")?.clone()],
        ..MdnsConfig::default()
    };
    if let Some(limit) = options.get("max-new-per-minute") {
        config.max_new_per_minute = limit.parse()?;
    }
    Ok(config)
}

async fn run(args: Vec<String>) -> Result<()> {
    let (mode, rest) = args
        .split_first()
        .ok_or("usage: kefu-lan-probe MODE --key value …")?;
    let options = options(rest)?;
    match mode.as_str() {
        "advertise" => advertise(&options).await,
        "flood" => flood(&options).await,
        "browse" => browse(&options).await,
        "bump-terms" => bump_terms(&options),
        other => Err(format!("unknown mode {other}").into()),
    }
}

async fn advertise(options: &HashMap<String, String>) -> Result<()> {
    let data_dir = PathBuf::from(required(options, "data-dir")?);
    let (identity, _) = Identity::load_or_create(&data_dir, &[])?;
    let port: u16 = required(options, "port")?.parse()?;
    let mut announcement = Announcement {
        device_id: identity.device_id(),
        shop: options.get("shop").map(|s| s.parse()).transpose()?,
        term: 1,
        role: Role::Host,
    };
    let mut advertiser = Advertiser::start(&mdns_config(options)?, &announcement, port, &[])?;
    say(json!({"advertising": advertiser.fullname(), "device_id": identity.device_id()}));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["term", term] => {
                announcement.term = term.parse()?;
                advertiser.update(&announcement)?;
                say(json!({"term": announcement.term}));
            }
            ["quit"] => break,
            _ => eprintln!("unknown command {line:?}"),
        }
    }
    advertiser.shutdown().await;
    say(json!({"stopped": true}));
    Ok(())
}

/// Made-up hosts and malformed announcements, with mdns-sd directly (the
/// library only announces well-formed records).
async fn flood(options: &HashMap<String, String>) -> Result<()> {
    let count: u32 = required(options, "count")?.parse()?;
    let interface = required(options, "interface")?;
    let daemon = mdns_sd::ServiceDaemon::new()?;
    daemon.disable_interface(mdns_sd::IfKind::All)?;
    daemon.enable_interface(mdns_sd::IfKind::Name(interface.clone()))?;
    let register = |name: &str, txt: Vec<(&str, String)>| -> Result<()> {
        let info = mdns_sd::ServiceInfo::new(
            SERVICE_TYPE,
            name,
            "flood.local.",
            "",
            5339,
            txt.as_slice(),
        )?
        .enable_addr_auto();
        daemon.register(info)?;
        Ok(())
    };
    for i in 0..count {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let id = DeviceId::from_bytes(seed).to_string();
        register(
            &format!("made-up {i}"),
            vec![
                ("v", "1".to_owned()),
                ("id", id),
                ("term", "1".to_owned()),
                ("role", "host".to_owned()),
            ],
        )?;
        // mdns-sd's command queue holds 100: pace the registrations.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = DeviceId::from_bytes([9; 32]).to_string();
    register(
        "bad version",
        vec![("v", "2".to_owned()), ("id", id.clone())],
    )?;
    register(
        "bad id",
        vec![("v", "1".to_owned()), ("id", "AAAA".to_owned())],
    )?;
    register(
        "bad term",
        vec![
            ("v", "1".to_owned()),
            ("id", id.clone()),
            ("term", "-1".to_owned()),
            ("role", "host".to_owned()),
        ],
    )?;
    register(
        "hidden shop",
        vec![
            ("v", "1".to_owned()),
            ("id", id),
            ("term", "1".to_owned()),
            ("role", "host".to_owned()),
            ("shop", "Tea\u{202E}esuoH".to_owned()),
        ],
    )?;
    say(json!({"flooding": count + 4}));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {}
    let _ = daemon.shutdown();
    Ok(())
}

async fn browse(options: &HashMap<String, String>) -> Result<()> {
    let browser = Browser::start(&mdns_config(options)?)?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { break },
            _ = tick.tick() => {
                let hosts: Vec<serde_json::Value> = browser
                    .hosts()
                    .into_iter()
                    .map(|h| json!({
                        "instance": h.instance,
                        "device_id": h.device_id,
                        "shop": h.shop,
                        "term": h.term,
                        "addresses": h.addresses,
                    }))
                    .collect();
                let stats = browser.stats();
                let snapshot = json!({
                    "hosts": hosts,
                    "stats": {
                        "admitted": stats.admitted,
                        "updated": stats.updated,
                        "refused_full": stats.refused_full,
                        "refused_rate": stats.refused_rate,
                        "malformed": stats.malformed,
                        "not_a_host": stats.not_a_host,
                        "unusable": stats.unusable,
                        "removed": stats.removed,
                    },
                });
                if last.as_ref() != Some(&snapshot) {
                    say(snapshot.clone());
                    last = Some(snapshot);
                }
            }
        }
    }
    browser.shutdown().await;
    Ok(())
}

fn bump_terms(options: &HashMap<String, String>) -> Result<()> {
    let data_dir = PathBuf::from(required(options, "data-dir")?);
    let mut state = LanStateFile::open(&data_dir)?;
    loop {
        let term = state.bump_term()?;
        // Printed only after bump_term returned, i.e. after the fsyncs.
        say(json!({"durable_term": term}));
    }
}
