//! The bodies of the operator's commands (`backup`, `verify-backup`,
//! `restore`, `doctor`, `healthcheck`); `crate::cli` only parses them.
//! Results go to stdout, progress and refusals to stderr; every refusal is
//! an error, so the process exits non-zero.

use std::path::PathBuf;
use std::time::Duration;

use super::backup::Summary;
use crate::config::Config;

pub async fn backup(config: Config, to: PathBuf) -> anyhow::Result<()> {
    let to = std::path::absolute(&to)?;
    let data_dir = &config.data_dir;
    let summary = if super::runtime::server_running(data_dir)? {
        let server = super::runtime::running_server(data_dir)?;
        eprintln!(
            "a server is running on {} (pid {}): asking it to write the backup",
            data_dir.display(),
            server.pid
        );
        super::client::request_backup(&server, &to).await?
    } else {
        eprintln!(
            "no server is running on {}: backing up offline",
            data_dir.display()
        );
        super::backup::offline(data_dir, &to).await?
    };
    print_summary(&summary);
    Ok(())
}

fn print_summary(summary: &Summary) {
    println!(
        "backup written to {}\n  {} files, {} bytes, {} conversations, {} messages, {} attachments\n  \
         schema {}, kefu {}, made {} ({}), took {:.2} s",
        summary.path.display(),
        summary.files,
        summary.bytes,
        summary.conversations,
        summary.messages,
        summary.attachments,
        summary.schema_version,
        summary.kefu_version,
        summary.created_at,
        summary.source,
        summary.duration_secs
    );
}

pub async fn verify(dir: PathBuf) -> anyhow::Result<()> {
    let verified = super::verify::verify(&dir)
        .await
        .map_err(|e| anyhow::anyhow!("{} does NOT verify: {e:#}", dir.display()))?;
    let m = &verified.manifest;
    println!(
        "{} verifies: {} files, {} bytes, {} conversations, {} messages, {} attachments; \
         schema {}, kefu {}, made {}",
        dir.display(),
        m.files.len(),
        m.total_bytes(),
        m.conversations,
        m.messages,
        m.attachments,
        m.schema_version,
        m.kefu_version,
        m.created_at
    );
    if !m.missing_attachments.is_empty() {
        println!(
            "note: {} attachment file(s) were already missing from the data dir when it was made",
            m.missing_attachments.len()
        );
    }
    Ok(())
}

pub async fn restore(config: Config, from: PathBuf) -> anyhow::Result<()> {
    let restored = super::restore::restore(&from, &config.data_dir).await?;
    println!(
        "restored {} into {} ({} conversations, {} messages, made {})",
        from.display(),
        restored.data_dir.display(),
        restored.manifest.conversations,
        restored.manifest.messages,
        restored.manifest.created_at
    );
    if let Some(refused) = restored.lan_refused {
        println!("{refused}");
    }
    if let Some(previous) = restored.previous {
        println!(
            "the data dir that was there is kept as {} (delete it once the restore is confirmed)",
            previous.display()
        );
    }
    Ok(())
}

pub async fn doctor(config: Config) -> anyhow::Result<()> {
    println!("kefu-server doctor: {}", config.data_dir.display());
    let report = super::doctor::run(&config).await;
    print!("{report}");
    if report.failed() {
        anyhow::bail!(
            "{} check(s) failed",
            report.count(super::doctor::Verdict::Fail)
        );
    }
    Ok(())
}

pub async fn healthcheck(
    config: Config,
    url: Option<String>,
    timeout_secs: u64,
) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| {
        let info = super::runtime::RuntimeInfo {
            pid: 0,
            addr: config.bind,
            started_at: 0,
            ops_token: String::new(),
        };
        format!("http://{}/readyz", info.local_addr())
    });
    super::client::healthcheck(&url, Duration::from_secs(timeout_secs.max(1))).await?;
    println!("ready");
    Ok(())
}
