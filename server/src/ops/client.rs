//! The command line as a client of its own server: `backup` and `lan
//! shop-name` against a running server, and `healthcheck`. Plain HTTP to this machine, never
//! through a proxy (an `HTTP_PROXY` in the environment would otherwise
//! receive the operator token). The token goes in the `Authorization`
//! header only.

use std::path::Path;
use std::time::Duration;

use super::backup::Summary;
use super::runtime::RuntimeInfo;

fn client(timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder.build()?)
}

/// Asks the running server to write a backup to `to` (absolute). Waits as
/// long as the backup takes.
pub async fn request_backup(server: &RuntimeInfo, to: &Path) -> anyhow::Result<Summary> {
    let url = format!("http://{}/api/v1/admin/backup", server.local_addr());
    let response = client(None)?
        .post(url)
        .bearer_auth(&server.ops_token)
        .json(&serde_json::json!({ "to": to }))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the server (pid {}) at {}: {e}",
                server.pid,
                server.local_addr()
            )
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response.json().await?);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no error message")
        .to_owned();
    anyhow::bail!("the server refused the backup ({status}): {message}")
}

/// Asks the running server to rename the shop (`PUT /api/v1/lan/shop`);
/// its answer, `{"shop_name", "announced"}`.
pub async fn rename_shop(server: &RuntimeInfo, name: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{}/api/v1/lan/shop", server.local_addr());
    let response = client(Some(Duration::from_secs(30)))?
        .put(url)
        .bearer_auth(&server.ops_token)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the server (pid {}) at {}: {e}",
                server.pid,
                server.local_addr()
            )
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no error message");
    anyhow::bail!("the server refused the shop name ({status}): {message}")
}

/// `GET url`; Ok when it answers 2xx within `timeout`.
pub async fn healthcheck(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let response = client(Some(timeout))?
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        anyhow::bail!("{url}: {status} {body}")
    }
}
