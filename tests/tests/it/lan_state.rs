//! The LAN state survives kill -9 at any instant: a process bumps the term
//! as fast as it can and prints each term once `bump_term` returned; it is
//! killed mid-stream, repeatedly, and every time the file left behind parses
//! and holds at least the last term printed (durable before it was
//! reported) and at most one more (the write in flight).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use kefu_server::lan::state::LanStateFile;
use kefu_tests::serde_json::{self, Value};

#[test]
fn state_json_is_old_or_new_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut last_printed = 0u64;
    for round in 0..5u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kefu-lan-probe"))
            .args(["bump-terms", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a different number of writes each round.
        let wanted = 3 + round * 7;
        for _ in 0..wanted {
            let line = lines.next().expect("a line").expect("read");
            let value: Value = serde_json::from_str(&line).expect("json");
            let term = value["durable_term"].as_u64().expect("term");
            assert!(
                term > last_printed,
                "terms only go up: {term} after {last_printed}"
            );
            last_printed = term;
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        // Whatever else it printed before dying was durable too.
        for line in lines.map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && let Some(term) = value["durable_term"].as_u64()
            {
                last_printed = last_printed.max(term);
            }
        }
        let state = LanStateFile::open(dir.path()).expect("the file parses after kill -9");
        let term = state.state().term;
        assert!(
            term == last_printed || term == last_printed + 1,
            "round {round}: on disk {term}, last reported {last_printed}"
        );
        assert_eq!(state.state().highest_term_seen, term);
        last_printed = term;
    }
}
