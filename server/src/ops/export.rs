//! `kefu-server export`: the export routes (`crate::export`, docs/API.md
//! 2.18) from the command line (and `kefu-server profile`, which downloads
//! the same way). With a server running on the data dir it
//! asks that server, with the operator token of `server.json` (from
//! loopback, in the `Authorization` header); with none, it starts a
//! private server on a loopback port of its own, asks it, and stops it.
//! Either way the export is the route's own bytes and is audited as the
//! operator's.
//!
//! A file (`--out`) is written under a temporary name beside it, fsynced
//! and renamed only when the download ended cleanly: a failed export never
//! leaves a file that looks complete. On stdout a failure exits non-zero.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// What to ask the export route for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    what: &'static str,
    query: Vec<(&'static str, String)>,
}

/// RFC 3339 (`2026-12-01T08:00:00+08:00`) or a date (`2026-12-01`, UTC
/// midnight), as Unix milliseconds.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp.as_millisecond());
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        anyhow::anyhow!("{text:?} is neither an RFC 3339 time nor a date (YYYY-MM-DD)")
    })?;
    Ok(date
        .to_zoned(jiff::tz::TimeZone::UTC)?
        .timestamp()
        .as_millisecond())
}

impl Request {
    pub fn new(
        what: &'static str,
        conversation: Option<String>,
        range: Option<(&str, &str)>,
        format: &'static str,
    ) -> anyhow::Result<Request> {
        let mut query = vec![("format", format.to_owned())];
        match (conversation, range) {
            (Some(id), None) => query.push(("conversation_id", id)),
            (None, Some((from, to))) => {
                query.push(("from", parse_time(from)?.to_string()));
                query.push(("to", parse_time(to)?.to_string()));
            }
            _ => anyhow::bail!("give --conversation ID, or --from and --to"),
        }
        Ok(Request { what, query })
    }
}

/// `--out`: `-` is stdout; an existing file is refused.
fn output(out: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    let out = out.filter(|path| path.as_os_str() != "-");
    if let Some(out) = &out
        && out.exists()
    {
        anyhow::bail!("{} already exists; name a new file", out.display());
    }
    Ok(out)
}

/// `kefu-server profile`: a flame graph of the running server (see
/// `ops::profile`); there must be one.
pub async fn profile(config: Config, seconds: u64, out: Option<PathBuf>) -> anyhow::Result<()> {
    let out = output(out)?;
    let data_dir = &config.data_dir;
    if !super::runtime::server_running(data_dir)? {
        anyhow::bail!(
            "no server is running on {}: a profile is of a running server",
            data_dir.display()
        );
    }
    let server = super::runtime::running_server(data_dir)?;
    eprintln!("profiling the server (pid {}) for {seconds} s", server.pid);
    download(
        server.local_addr(),
        &server.ops_token,
        "profile",
        &[("seconds", seconds.to_string())],
        out.as_deref(),
    )
    .await
}

pub async fn run(config: Config, request: Request, out: Option<PathBuf>) -> anyhow::Result<()> {
    let out = output(out)?;
    let data_dir = config.data_dir.clone();
    if super::runtime::server_running(&data_dir)? {
        let server = super::runtime::running_server(&data_dir)?;
        eprintln!(
            "a server is running on {} (pid {}): asking it for the export",
            data_dir.display(),
            server.pid
        );
        let route = format!("export/{}", request.what);
        return download(
            server.local_addr(),
            &server.ops_token,
            &route,
            &request.query,
            out.as_deref(),
        )
        .await;
    }
    eprintln!(
        "no server is running on {}: starting a private one on loopback for the export",
        data_dir.display()
    );
    let running = crate::start(private(config)).await?;
    let token = running.state().ops.token().to_owned();
    let route = format!("export/{}", request.what);
    let result = download(running.addr, &token, &route, &request.query, out.as_deref()).await;
    running.shutdown().await?;
    result
}

/// The configuration of the private server: the data dir's, with only a
/// loopback listener on a free port and no scheduled backups.
fn private(mut config: Config) -> Config {
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.lan = crate::lan::LanConfig::default();
    config.http.public_bind = None;
    config.http.metrics_bind = None;
    config.backup.dir = None;
    config
}

/// `GET /api/v1/admin/{route}` with the operator token, its body to `out`
/// (see the module doc) or to stdout. Also `kefu-server profile`'s.
pub async fn download(
    addr: SocketAddr,
    token: &str,
    route: &str,
    query: &[(&'static str, String)],
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let url = format!("http://{addr}/api/v1/admin/{route}");
    let client = reqwest::Client::builder()
        // An HTTP_PROXY in the environment must never see the token.
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()?;
    let mut response = client
        .get(url)
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the server at {addr}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the server refused ({status}): {message}");
    }
    let Some(out) = out else {
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("the download failed part-way: {e}"))?
        {
            stdout.write_all(&chunk)?;
        }
        stdout.flush()?;
        return Ok(());
    };
    let name = out
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} names no file", out.display()))?
        .to_string_lossy()
        .into_owned();
    let temporary = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", temporary.display()))?;
    let mut bytes = 0u64;
    let written: anyhow::Result<()> = async {
        while let Some(chunk) = response.chunk().await? {
            file.write_all(&chunk)?;
            bytes += chunk.len() as u64;
        }
        file.sync_all()?;
        Ok(())
    }
    .await;
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        anyhow::bail!("the download failed part-way, nothing was written: {error:#}");
    }
    std::fs::rename(&temporary, out)?;
    eprintln!("{bytes} bytes written to {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_utc_dates() {
        assert_eq!(parse_time("1970-01-02").expect("date"), 86_400_000);
        assert_eq!(
            parse_time("2026-12-01T08:00:00+08:00").expect("time"),
            parse_time("2026-12-01").expect("date")
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01").is_err());
    }

    #[test]
    fn a_request_names_a_conversation_or_a_range() {
        let request =
            Request::new("messages", None, Some(("1970-01-01", "1970-01-02")), "csv").expect("ok");
        assert_eq!(
            request.query,
            vec![
                ("format", "csv".to_owned()),
                ("from", "0".to_owned()),
                ("to", "86400000".to_owned())
            ]
        );
        assert!(Request::new("messages", None, None, "jsonl").is_err());
    }
}
