//! `kefu-server export` (issue 19 item 2 from the command line): against
//! a running server (asked with the operator token), and offline (a
//! private server on loopback); the file appears only when the export is
//! whole; bad input changes nothing; every export is audited as the
//! operator's.

use std::path::Path;
use std::process::{Command, Output};

use kefu_tests::TestServer;
use kefu_tests::serde_json::{Value, json};

fn kefu() -> Command {
    let mut command = Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )));
    command.env_remove("KEFU_CONFIG").env("RUST_LOG", "warn");
    command
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || kefu().args(&args).output().expect("run kefu-server"))
        .await
        .expect("join")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

async fn operator_exports(data_dir: &Path) -> i64 {
    let url = format!(
        "sqlite://{}?mode=ro",
        data_dir.join("kefu.sqlite3").display()
    );
    let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open sqlite");
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'export.messages' AND actor_id IS NULL",
    )
    .fetch_one(&mut connection)
    .await
    .expect("count");
    count
}

#[tokio::test]
async fn export_from_a_running_server_and_offline() {
    let mut server = TestServer::start_with(|config| {
        config.limits.visitor_messages_per_second = 0;
    })
    .await;
    let data_dir = server.data_dir().to_path_buf();
    let app = server.app(json!({})).await;
    let visitor = server.visitor(&app).await;
    for i in 0..5 {
        let (code, _) = server
            .visitor_says(&visitor, &format!("m{i}"), &format!("line {i}, \"quoted\""))
            .await;
        assert_eq!(code, 201);
    }
    let out = tempfile::tempdir().expect("tempdir");

    // Running: the server answers, with the operator token.
    let jsonl = out.path().join("conversation.jsonl");
    let output = run(vec![
        "export".into(),
        "messages".into(),
        "--conversation".into(),
        visitor.conversation_id.clone(),
        "--out".into(),
        path(&jsonl),
        "--data-dir".into(),
        path(&data_dir),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("asking it for the export"),
        "{}",
        text(&output)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .expect("file")
        .lines()
        .map(|l| kefu_tests::serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let texts: Vec<&str> = lines
        .iter()
        .filter(|m| m["sender"]["type"] == "visitor")
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(
        texts,
        (0..5)
            .map(|i| format!("line {i}, \"quoted\""))
            .collect::<Vec<_>>()
    );
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(out.path()).expect("dir").count(), 1);

    // An existing file is never overwritten; bad input writes nothing.
    for (args, says) in [
        (
            vec![
                "--conversation",
                &visitor.conversation_id,
                "--out",
                &path(&jsonl),
            ],
            "already exists",
        ),
        (
            vec!["--from", "yesterday", "--to", "2026-01-01"],
            "neither an RFC 3339",
        ),
        (vec!["--conversation", "not-an-id"], "not a valid id"),
    ] {
        let mut all = vec!["export".to_owned(), "messages".to_owned()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        all.extend(["--data-dir".to_owned(), path(&data_dir)]);
        let output = run(all).await;
        assert!(!output.status.success(), "{}", text(&output));
        assert!(text(&output).contains(says), "{says}: {}", text(&output));
    }
    let before = std::fs::read_to_string(&jsonl).expect("file");
    assert_eq!(before.lines().count(), lines.len());

    // Offline: a private server on loopback does it, CSV this time, by range.
    let _dir = server.stop().await;
    let csv = out.path().join("range.csv");
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let from = today.yesterday().expect("yesterday");
    let to = today.tomorrow().expect("tomorrow");
    let output = run(vec![
        "export".into(),
        "messages".into(),
        "--from".into(),
        from.to_string(),
        "--to".into(),
        format!("{to}T00:00:00Z"),
        "--format".into(),
        "csv".into(),
        "--out".into(),
        path(&csv),
        "--data-dir".into(),
        path(&data_dir),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("starting a private one"),
        "{}",
        text(&output)
    );
    let csv_text = std::fs::read_to_string(&csv).expect("csv");
    assert!(
        csv_text.starts_with("conversation_id,seq,id,"),
        "{csv_text}"
    );
    for i in 0..5 {
        assert!(
            csv_text.contains(&format!("\"line {i}, \"\"quoted\"\"\"")),
            "{csv_text}"
        );
    }
    // The private server stopped: the data dir is free again, and both
    // exports (and none of the refused ones) are in the audit log.
    assert!(!data_dir.join("server.json").exists());
    assert_eq!(operator_exports(&data_dir).await, 2);
}
