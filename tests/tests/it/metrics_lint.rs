//! Metrics and dashboards (issue 19 item 7): `/metrics` on its own
//! listener (`http.metrics_bind`), the series read at each scrape, and the
//! shipped Grafana dashboard (deploy/grafana/kefu.json) and Prometheus alert
//! rules (deploy/prometheus/kefu-alerts.yml) linted against what a live
//! server exports: a series or label they name that the server does not
//! export fails the test. `promtool check rules` and `check config` run
//! when Debian's prometheus package is installed (scripts/deps.sh
//! `kefu_ensure_monitoring_deps`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kefu_tests::serde_json::{Value, json};
use kefu_tests::{TestServer, in_process_only};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Labels Prometheus itself puts on every scraped series, and the series
/// it makes (`up`).
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// Series name → the label names seen on it, from the exposition text.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let inside = &line[name_end + 1..line.find('}').expect("closing brace")];
            for pair in split_outside_quotes(inside, ',') {
                if let Some((name, _)) = pair.split_once('=') {
                    labels.insert(name.trim().to_owned());
                }
            }
        }
    }
    for name in PROMETHEUS_SERIES {
        series.entry(name.to_owned()).or_default();
    }
    series
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(String::new());
            continue;
        }
        parts.last_mut().expect("a part").push(c);
    }
    parts.retain(|p| !p.trim().is_empty());
    parts
}

const KEYWORDS: [&str; 12] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
];
/// Aggregation operators, which may be followed by `by (…)` before their
/// parenthesis (`sum by (le) (…)`).
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// What a PromQL expression names: each series with the labels of its
/// selector, and the labels of its grouping clauses. Deliberately strict:
/// a construct it does not know makes a name it then fails to find.
#[derive(Debug, Default, PartialEq)]
struct Named {
    series: Vec<(String, Vec<String>)>,
    grouping: Vec<String>,
}

fn names_in(expr: &str) -> Named {
    let chars: Vec<char> = expr.chars().collect();
    let mut named = Named::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // A string literal (e.g. histogram_quantile's or label_replace's).
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            // A range or subquery duration, possibly a Grafana variable.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            // A Grafana variable outside a range: `$instance`, `${x}`.
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || "_{}".contains(chars[i])) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let next = chars.get(j).copied();
            if GROUPING.contains(&word.as_str()) && next == Some('(') {
                let close = j + chars[j..].iter().position(|&c| c == ')').expect(")");
                let inside: String = chars[j + 1..close].iter().collect();
                named.grouping.extend(
                    inside
                        .split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
            } else if next == Some('(')
                || KEYWORDS.contains(&word.as_str())
                || AGGREGATIONS.contains(&word.as_str())
            {
                // A function, an aggregation or an operator.
            } else if !(word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("nan")) {
                let mut labels = Vec::new();
                if next == Some('{') {
                    let close = j + chars[j..].iter().position(|&c| c == '}').expect("}");
                    let inside: String = chars[j + 1..close].iter().collect();
                    for matcher in split_outside_quotes(&inside, ',') {
                        let name_end = matcher.find(['=', '!']).expect("a label matcher");
                        labels.push(matcher[..name_end].trim().to_owned());
                    }
                    i = close + 1;
                }
                named.series.push((word.clone(), labels));
            }
        } else if c == '{' {
            // A bare selector, `{__name__=…}`: not used here, so refused.
            panic!("a selector without a metric name in {expr:?}");
        } else {
            if c.is_ascii_digit() || c == '.' {
                // A number: skip it whole (with an exponent's `e`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            i += 1;
        }
    }
    named
}

/// Everything `expr` names that `exported` lacks, as readable lines.
fn unknown_names(expr: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let named = names_in(expr);
    let mut problems = Vec::new();
    let mut labels_in_expr: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
    for (series, labels) in &named.series {
        let Some(known) = exported.get(series) else {
            problems.push(format!("series {series} is not exported"));
            continue;
        };
        labels_in_expr.extend(known.iter().map(String::as_str));
        for label in labels {
            if !known.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{series} has no label {label}"));
            }
        }
    }
    for label in &named.grouping {
        if !labels_in_expr.contains(label.as_str()) {
            problems.push(format!("no series of the expression has the label {label}"));
        }
    }
    problems
}

/// Every `expr` of the dashboard's panels (and of its templating queries).
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    fn walk(value: &Value, exprs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "expr" {
                        exprs.push(value.as_str().expect("expr is a string").to_owned());
                    } else {
                        walk(value, exprs);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    walk(dashboard, &mut exprs);
    // `label_values(SERIES, LABEL)` of the variables.
    for variable in dashboard["templating"]["list"].as_array().expect("list") {
        if let Some(query) = variable["query"]["query"].as_str()
            && let Some(inner) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
        {
            let (series, label) = inner.split_once(',').expect("label_values(series, label)");
            exprs.push(format!("sum by ({}) ({})", label.trim(), series.trim()));
        }
    }
    exprs
}

/// Every `expr:` of the rules file; each must be on one line (the file
/// says so), which this checks, so that none is missed.
fn rule_exprs(text: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            let expr = expr.trim();
            assert!(
                !expr.is_empty() && !expr.starts_with('|') && !expr.starts_with('>'),
                "an expr must be on one line: {line}"
            );
            exprs.push(expr.to_owned());
        }
    }
    let alerts = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(alerts, exprs.len(), "one expr per alert");
    exprs
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"));
    response.text().await.expect("body")
}

fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().expect("a number")
}

async fn eventually_value(url: &str, series: &str, want: f64) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(url).await;
        if value(&text, series) == want {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never became {want}:\n{text}");
}

#[test]
fn the_checker_finds_what_is_not_exported() {
    let text = "kefu_ws_connections{role=\"agent\"} 1\n\
                kefu_http_request_duration_seconds_bucket{method=\"GET\",route=\"/x\",status=\"200\",le=\"0.1\"} 3\n\
                process_open_fds 9\n# EOF\n";
    let exported = exported(text);
    let good = [
        "kefu_ws_connections{role=\"agent\"} > 0",
        "histogram_quantile(0.99, sum by (le, route) (rate(kefu_http_request_duration_seconds_bucket{instance=~\"$instance\"}[$__rate_interval])))",
        "process_open_fds / 1e3 > 0.8 and on (instance, job) up == 1",
    ];
    for expr in good {
        assert_eq!(
            unknown_names(expr, &exported),
            Vec::<String>::new(),
            "{expr}"
        );
    }
    let bad = [
        ("kefu_ws_conections > 0", "series kefu_ws_conections"),
        ("kefu_ws_connections{colour=\"x\"}", "no label colour"),
        ("sum by (colour) (kefu_ws_connections)", "the label colour"),
        (
            "rate(process_cpu_seconds_total[5m])",
            "process_cpu_seconds_total",
        ),
        (
            "sum by (le) (rate(kefu_http_request_duration_seconds_bucket{route=\"/x\", le=\"1\"}[5m])) / kefu_ws_connections{method=\"GET\"}",
            "kefu_ws_connections has no label method",
        ),
    ];
    for (expr, problem) in bad {
        let found = unknown_names(expr, &exported);
        assert!(
            found.iter().any(|p| p.contains(problem)),
            "{expr}: {found:?}"
        );
    }
    assert_eq!(
        rule_exprs("- alert: A\n  expr: up == 0\n- alert: B\n  expr: kefu_x > 1\n"),
        vec!["up == 0".to_owned(), "kefu_x > 1".to_owned()]
    );
}

#[tokio::test]
async fn dashboard_and_alert_rules_name_only_exported_series() {
    in_process_only("reads the metrics listener's port from the running server");
    let mut server = TestServer::start_with(|config| {
        config.http.metrics_bind = Some("127.0.0.1:0".parse().expect("bind"));
    })
    .await;
    let metrics_addr = server
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .expect("a metrics listener");
    let metrics_url = format!("http://{metrics_addr}/metrics");

    // Activity, so that every labelled family has its series.
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let (code, _) = server.visitor_says(&visitor, "m1", "hello").await;
    assert_eq!(code, 201);
    let text = scrape(&metrics_url).await;
    let exported = exported(&text);
    for series in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "kefu_build_info",
        "kefu_uptime_seconds",
        "kefu_writer_queue_depth",
        "kefu_search_index_backlog_conversations",
        "kefu_derived_backlog_conversations",
        "kefu_routing_queue_length",
        "kefu_agents_connected",
        "kefu_backup_age_seconds",
        "kefu_backup_last_success_timestamp_seconds",
    ] {
        assert!(exported.contains_key(series), "{series} missing:\n{text}");
    }
    assert!(value(&text, "process_resident_memory_bytes") > 1e6);

    let dashboard: Value = kefu_tests::serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/grafana/kefu.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let rules =
        std::fs::read_to_string(repo_file("deploy/prometheus/kefu-alerts.yml")).expect("rules");
    let mut problems = Vec::new();
    let dashboard_exprs = dashboard_exprs(&dashboard);
    assert!(dashboard_exprs.len() >= 20, "{}", dashboard_exprs.len());
    let rule_exprs = rule_exprs(&rules);
    assert!(rule_exprs.len() >= 10);
    for (file, exprs) in [
        ("deploy/grafana/kefu.json", dashboard_exprs),
        ("deploy/prometheus/kefu-alerts.yml", rule_exprs),
    ] {
        for expr in exprs {
            for problem in unknown_names(&expr, &exported) {
                problems.push(format!("{file}: {problem} in {expr}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nexported:\n{text}",
        problems.join("\n")
    );
    server.shutdown().await;
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_config() {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        println!(
            "SKIPPED: promtool is not installed (Debian's prometheus package; scripts/deps.sh kefu_ensure_monitoring_deps)"
        );
        return;
    };
    let rules = repo_file("deploy/prometheus/kefu-alerts.yml");
    let output = std::process::Command::new(promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        output.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The compose file's Prometheus configuration, with its rule file
    // where it is in this checkout rather than in the container.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = std::fs::read_to_string(repo_file("deploy/prometheus/prometheus.yml"))
        .expect("prometheus.yml")
        .replace(
            "/etc/prometheus/kefu-alerts.yml",
            rules.to_str().expect("utf-8 path"),
        );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write");
    let output = std::process::Command::new(promtool)
        .arg("check")
        .arg("config")
        .arg(&config_path)
        .output()
        .expect("promtool");
    assert!(
        output.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_only_and_the_main_one_stops() {
    in_process_only("reads the metrics listener's port from the running server");
    let mut server = TestServer::start_with(|config| {
        config.http.metrics_bind = Some("127.0.0.1:0".parse().expect("bind"));
    })
    .await;
    let metrics_addr = server
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .expect("a metrics listener");
    let metrics_url = format!("http://{metrics_addr}/metrics");
    // The main listener no longer serves /metrics; the metrics listener
    // serves nothing of the API.
    let (status, body) = server.get("/metrics", None).await;
    kefu_tests::assert_error(status, &body, 404, "not_found");
    let http = reqwest::Client::new();
    for path in ["/api/v1/agents", "/api/v1/admin/backup", "/", "/widget.js"] {
        let response = http
            .get(format!("http://{metrics_addr}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    let health = http
        .get(format!("http://{metrics_addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    // A foreign Host is refused there too (DNS rebinding).
    let foreign = http
        .get(&metrics_url)
        .header("host", "evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(foreign.status(), 421);

    // Its connection slots are its own: 16 idle connections fill them, the
    // 17th is answered 503, the main listener serves on, and once they
    // close the scrape works again.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut idle = Vec::new();
    for _ in 0..kefu_server::http::metrics_listener::SLOTS {
        idle.push(
            tokio::net::TcpStream::connect(metrics_addr)
                .await
                .expect("connect"),
        );
    }
    // The accept loop takes them in order: wait until the last one holds a
    // slot; then a new connection is answered 503 before it is read.
    let mut refused = String::new();
    for _ in 0..100 {
        use tokio::io::AsyncReadExt;
        let mut extra = tokio::net::TcpStream::connect(metrics_addr)
            .await
            .expect("connect");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
        refused = String::from_utf8_lossy(&answer).into_owned();
        if refused.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("too many connections"),
        "{refused}"
    );
    let (status, _) = server.get("/healthz", None).await;
    assert_eq!(status, 200);
    drop(idle);
    let mut scraped = false;
    for _ in 0..100 {
        if fresh
            .get(&metrics_url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            scraped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(scraped, "the scrape works again once the slots are free");

    // Series read at each scrape follow the server's state.
    let text = scrape(&metrics_url).await;
    assert_eq!(
        value(&text, "kefu_agents_connected{status=\"online\"}"),
        0.0
    );
    assert_eq!(value(&text, "kefu_routing_queue_length"), 0.0);
    assert_eq!(value(&text, "kefu_routing_queue_oldest_seconds"), 0.0);
    assert_eq!(value(&text, "kefu_backup_interval_seconds"), 0.0);
    assert!(value(&text, "kefu_uptime_seconds") >= 0.0);
    assert!(text.contains("kefu_build_info{version=\""), "{text}");
    // A chat with no agent connected waits in the queue.
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    let (code, _) = server.visitor_says(&visitor, "m1", "anyone there?").await;
    assert_eq!(code, 201);
    eventually_value(&metrics_url, "kefu_routing_queue_length", 1.0).await;
    // An agent who connects (online) is counted by status, and takes it.
    let amy = server.agent("amy").await;
    let (code, body) = server
        .post(
            "/api/v1/agents/me/status",
            Some(&amy.token),
            json!({"status": "online"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let ws = server.ws(&amy.token, json!({})).await;
    eventually_value(
        &metrics_url,
        "kefu_agents_connected{status=\"online\"}",
        1.0,
    )
    .await;
    eventually_value(&metrics_url, "kefu_routing_queue_length", 0.0).await;
    drop(ws);
    eventually_value(
        &metrics_url,
        "kefu_agents_connected{status=\"online\"}",
        0.0,
    )
    .await;
    // Every message sent was counted, and the backlogs drain to zero.
    let text = eventually_value(&metrics_url, "kefu_search_index_backlog_conversations", 0.0).await;
    assert!(value(&text, "kefu_messages_stored_total") >= 1.0);
    eventually_value(&metrics_url, "kefu_derived_backlog_conversations", 0.0).await;
    assert_eq!(value(&text, "kefu_writer_queue_depth"), 0.0);
    server.shutdown().await;
}

/// compose.monitoring.yaml on top of the container files: the server takes
/// its metrics listener setting, Prometheus scrapes that port, Grafana
/// loads the dashboard from where it is mounted.
#[test]
fn the_monitoring_compose_file_fits_together() {
    let read = |path: &str| std::fs::read_to_string(repo_file(path)).expect(path);
    let monitoring = read("deploy/container/compose.monitoring.yaml");
    let mut env = crate::ops_deploy::containerfile_env(&read("deploy/container/Containerfile"));
    env.extend(crate::ops_deploy::compose_env(&read(
        "deploy/container/compose.yaml",
    )));
    env.extend(crate::ops_deploy::compose_env(&monitoring));
    assert_eq!(env["KEFU_HTTP__METRICS_BIND"], "0.0.0.0:9464");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kefu-server-under-test"))
        .env_remove("KEFU_CONFIG")
        .envs(&env)
        .args(["serve", "--print-config"])
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains(r#"metrics_bind = "0.0.0.0:9464""#),
        "{printed}"
    );
    assert!(read("deploy/prometheus/prometheus.yml").contains(r#"targets: ["kefu:9464"]"#));
    assert!(monitoring.contains("../grafana/kefu.json:/var/lib/grafana/dashboards/kefu.json:ro"));
    assert!(
        read("deploy/grafana/provisioning/dashboards/kefu.yaml")
            .contains("path: /var/lib/grafana/dashboards")
    );
    // Prometheus and Grafana only on loopback; the metrics port is not published.
    assert!(monitoring.contains(r#""127.0.0.1:9090:9090""#));
    assert!(monitoring.contains(r#""127.0.0.1:3000:3000""#));
    assert!(!monitoring.contains(":9464:"));
}
