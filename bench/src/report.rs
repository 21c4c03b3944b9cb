//! The report: what ran where (date, commit, machine, pinning) and one
//! Markdown table per scenario, with Kefu's ratio to each baseline measured
//! in the same run, ready to paste into docs/PERFORMANCE.md.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::Value;

/// A column: header, JSON pointer into the row, and how to show it.
struct Column {
    header: &'static str,
    pointer: &'static str,
    show: Show,
}

#[derive(Clone, Copy)]
enum Show {
    Plain,
    /// Microseconds shown as milliseconds.
    Ms,
    /// KiB shown as MiB.
    Mib,
}

const fn col(header: &'static str, pointer: &'static str, show: Show) -> Column {
    Column {
        header,
        pointer,
        show,
    }
}

/// Columns of a scenario and the figure its ratios compare.
fn layout(scenario: &str) -> (Vec<Column>, Option<&'static str>) {
    use Show::{Mib, Ms, Plain};
    match scenario {
        "connections" => (
            vec![
                col("connections", "/connections", Plain),
                col("connect s", "/connect_seconds", Plain),
                col("connects/s", "/connects_per_second", Plain),
                col("server CPU ms/connect", "/server_cpu_ms_per_connect", Plain),
                col("RSS at base MiB", "/rss_kib_base", Mib),
                col("RSS full MiB", "/rss_kib_full", Mib),
                col("bytes/conn (slope)", "/bytes_per_connection", Plain),
                col("held s", "/hold_seconds", Plain),
                col("alive after hold", "/alive_after_hold", Plain),
                col("dropped %", "/dropped_percent", Plain),
            ],
            Some("/bytes_per_connection"),
        ),
        "throughput" => (
            vec![
                col("durability", "/durability", Plain),
                col("acks/s", "/acks_per_second", Plain),
                col("puts/s", "/messages_per_second", Plain),
                col("ack p50 ms", "/ack_us/p50", Ms),
                col("ack p99 ms", "/ack_us/p99", Ms),
                col("ack p99.9 ms", "/ack_us/p999", Ms),
                col("agent got all", "/agent_got_all", Plain),
                col("server CPU s", "/server_cpu_seconds", Plain),
                col("server RSS MiB", "/server_rss_kib", Mib),
                col("load", "/load", Plain),
            ],
            Some("/acks_per_second"),
        ),
        "latency" => (
            vec![
                col("sent", "/sent", Plain),
                col("received", "/received", Plain),
                col("p50 ms", "/latency_us/p50", Ms),
                col("p99 ms", "/latency_us/p99", Ms),
                col("p99.9 ms", "/latency_us/p999", Ms),
                col("max ms", "/latency_us/max", Ms),
                col("open s", "/open_seconds", Plain),
                col("open ack p99 ms", "/open_ack_us/p99", Ms),
                col("load", "/load", Plain),
            ],
            Some("/latency_us/p99"),
        ),
        "reconnect" => (
            vec![
                col("connected", "/connected", Plain),
                col("resumed", "/resumed", Plain),
                col("catch-up checked", "/catch_up_checked", Plain),
                col("missed", "/missed", Plain),
                col("failed", "/failed", Plain),
                col("storm s", "/storm_seconds", Plain),
            ],
            Some("/storm_seconds"),
        ),
        "coldstart" => (
            vec![
                col("store MiB", "/store_mib", Plain),
                col("clean start ms", "/clean_start_ms", Plain),
                col("after kill -9 ms", "/crash_start_ms", Plain),
                col("acked before kill", "/crash_acked_before_kill", Plain),
                col("lost", "/crash_lost", Plain),
            ],
            None,
        ),
        "fuzz" => (
            vec![
                col("sent", "/sent", Plain),
                col("received", "/received", Plain),
                col("p50 ms", "/latency_us/p50", Ms),
                col("p99 ms", "/latency_us/p99", Ms),
                col("p99.9 ms", "/latency_us/p999", Ms),
                col("max ms", "/latency_us/max", Ms),
                col("fuzz frames", "/fuzz_frames", Plain),
                col("fuzz connections", "/fuzz_connections", Plain),
                col("closes", "/fuzz_closes", Plain),
                col("server CPU %", "/server_cpu_percent", Plain),
            ],
            None,
        ),
        "storm" => (
            vec![
                col("durability", "/durability", Plain),
                col("sent", "/sent", Plain),
                col("missing acks", "/missing_acks", Plain),
                col("ack p50 ms", "/ack_us/p50", Ms),
                col("ack p99 ms", "/ack_us/p99", Ms),
                col("ack p99.9 ms", "/ack_us/p999", Ms),
                col("ack max ms", "/ack_us/max", Ms),
                col("first ack p99 ms", "/first_ack_us/p99", Ms),
                col("first ack max ms", "/first_ack_us/max", Ms),
                col("new chats", "/new_sent", Plain),
                col("visible", "/visible", Plain),
                col("visible p50 ms", "/visible_us/p50", Ms),
                col("visible p99 ms", "/visible_us/p99", Ms),
                col("assigned", "/assigned", Plain),
                col("assigned p99 ms", "/assigned_us/p99", Ms),
                col("server CPU s", "/server_cpu_seconds", Plain),
                col("log answer p99 ms", "/log_us/answer/p99", Ms),
                col("log queue wait p99 ms", "/log_us/queue_wait/p99", Ms),
                col("log write p99 ms", "/log_us/write/p99", Ms),
                col("load", "/load", Plain),
            ],
            Some("/ack_us/p99"),
        ),
        "storage" => (
            vec![
                col("durability", "/durability", Plain),
                col("messages/s", "/messages_per_second", Plain),
            ],
            None,
        ),
        _ => (
            vec![
                col("p50 ms", "/latency_us/p50", Ms),
                col("p90 ms", "/latency_us/p90", Ms),
                col("p99 ms", "/latency_us/p99", Ms),
                col("max ms", "/latency_us/max", Ms),
            ],
            None,
        ),
    }
}

fn show(value: Option<&Value>, show: Show) -> String {
    match (value, show) {
        (None | Some(Value::Null), _) => String::new(),
        (Some(Value::Number(n)), Show::Ms) => {
            format!("{:.2}", n.as_f64().unwrap_or(0.0) / 1000.0)
        }
        (Some(Value::Number(n)), Show::Mib) => {
            format!("{:.1}", n.as_f64().unwrap_or(0.0) / 1024.0)
        }
        (Some(Value::Number(n)), Show::Plain) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        },
        (Some(Value::String(s)), _) => s.clone(),
        (Some(Value::Array(items)), how) => items
            .iter()
            .map(|item| self::show(Some(item), how))
            .collect::<Vec<_>>()
            .join(" / "),
        (Some(other), _) => other.to_string(),
    }
}

/// Every section as a Markdown table.
pub fn tables(report: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kefu-bench — {} — commit {} — {} — {}{}",
        report["date"].as_str().unwrap_or(""),
        report["commit"].as_str().unwrap_or(""),
        report["machine"].as_str().unwrap_or(""),
        report["pinning"].as_str().unwrap_or(""),
        if report["smoke"] == true {
            " — SMOKE (tiny sizes, not figures)"
        } else {
            ""
        }
    );
    for section in report["sections"].as_array().into_iter().flatten() {
        let scenario = section["scenario"].as_str().unwrap_or("");
        let rows = section["rows"].as_array().cloned().unwrap_or_default();
        let (columns, ratio) = layout(scenario);
        let _ = writeln!(out, "\n### {scenario}\n");
        if let Some(error) = section["error"].as_str() {
            let _ = writeln!(out, "FAILED: {error}");
            continue;
        }
        let mut header = "| system | case |".to_owned();
        let mut rule = "|---|---|".to_owned();
        for column in &columns {
            header.push_str(&format!(" {} |", column.header));
            rule.push_str("---|");
        }
        // B1f (B1 with fsync) and Kefu-B (a second Kefu binary) get their
        // columns only where they ran; with Kefu-B the ratios are given for
        // both Kefu rows, so the header names no numerator.
        let present = |system: &str| rows.iter().any(|row| row["system"] == system);
        let mut baselines = vec!["B0", "B1"];
        if present("B1f") {
            baselines.push("B1f");
        }
        baselines.push("N");
        if present("Kefu-B") {
            baselines.push("Kefu-B");
        }
        let numerator = if baselines.contains(&"Kefu-B") {
            ""
        } else {
            "Kefu "
        };
        if ratio.is_some() {
            for baseline in &baselines {
                header.push_str(&format!(" {numerator}÷ {baseline} |"));
                rule.push_str("---|");
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for row in &rows {
            let mut line = format!(
                "| {} | {} |",
                show(row.get("system"), Show::Plain),
                show(row.get("case"), Show::Plain)
            );
            for column in &columns {
                line.push_str(&format!(
                    " {} |",
                    show(row.pointer(column.pointer), column.show)
                ));
            }
            if let Some(pointer) = ratio {
                for baseline in &baselines {
                    line.push_str(&format!(" {} |", ratio_to(&rows, row, baseline, pointer)));
                }
            }
            let _ = writeln!(out, "{line}");
        }
        if scenario == "throughput" {
            storage_ratios(&mut out, &rows);
        }
    }
    out
}

/// Kefu's acks/s over the raw RocksDB put loop's messages/s, per durability.
fn storage_ratios(out: &mut String, rows: &[Value]) {
    for row in rows.iter().filter(|r| r["system"] == "Kefu") {
        let Some(raw) = rows
            .iter()
            .find(|r| r["system"] == "RocksDB" && r["durability"] == row["durability"])
        else {
            continue;
        };
        if let (Some(a), Some(b)) = (
            row["acks_per_second"].as_f64(),
            raw["messages_per_second"].as_f64(),
        ) && b > 0.0
        {
            let _ = writeln!(
                out,
                "\nKefu ({}) ÷ raw RocksDB put loop: {:.3}",
                row["durability"].as_str().unwrap_or(""),
                a / b
            );
        }
    }
}

/// Kefu's figure over the baseline's for the same case ("" for non-Kefu rows).
fn ratio_to(rows: &[Value], row: &Value, baseline: &str, pointer: &str) -> String {
    if (row["system"] != "Kefu" && row["system"] != "Kefu-B") || row["system"] == baseline {
        return String::new();
    }
    let Some(other) = rows
        .iter()
        .find(|r| r["system"] == baseline && r["case"] == row["case"])
    else {
        return String::new();
    };
    match (
        row.pointer(pointer).and_then(Value::as_f64),
        other.pointer(pointer).and_then(Value::as_f64),
    ) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => String::new(),
    }
}

pub fn date() -> String {
    command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// The commit of the working directory, marked when it has changes.
pub fn commit() -> String {
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !command_line("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{commit}+changes")
    } else {
        commit
    }
}

/// Cores, memory and kernel, from /proc.
pub fn machine() -> String {
    // All cores, not the ones this (maybe pinned) process may use.
    let cores = command_line("nproc", &["--all"]);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!(
        "{cores} cores visible ({model}), {} GiB, Linux {}",
        memory >> 20,
        command_line("uname", &["-r"])
    )
}

pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Bytes under `path`, recursively (a store's size on disk).
pub fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::tables;

    #[test]
    fn a_failed_scenario_is_shown_as_failed_among_the_others() {
        let report = json!({
            "date": "d", "commit": "c", "machine": "m", "pinning": "p", "smoke": false,
            "sections": [
                {"scenario": "coldstart", "rows": [
                    {"system": "Kefu", "case": "clean", "seconds": 0.03}
                ]},
                {"scenario": "tickets", "rows": [], "error": "disk full"}
            ]
        });
        let text = tables(&report);
        assert!(text.contains("### coldstart"), "{text}");
        assert!(text.contains("| Kefu | clean |"), "{text}");
        assert!(text.contains("### tickets\n\nFAILED: disk full"), "{text}");
    }
}
