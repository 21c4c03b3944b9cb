//! The standby's side of attachments uploaded after the full sync
//! (`lan::replication::attachments` has the host's): after each SQLite
//! snapshot it swaps in, the standby looks at the `attachments` rows added
//! since it last looked and fetches each file its copy lacks
//! (`GET /lan/v1/replica/attachment?name=N`), into a partial file first,
//! checked against the row's size, fsynced, then renamed into
//! `replica/attachments/`. An upload thus reaches the copy within one
//! SQLite refresh (and before a handover's grant: the candidate's last
//! snapshot is followed by the same step).

use std::path::Path;

use anyhow::Context;

use super::{body_reader, check_term, receive_files};
use crate::lan::client::DeviceClient;
use crate::lan::state::LanStateFile;
use crate::ops::manifest;

/// The most rows looked at per refresh (the next refresh goes on).
const ROWS_PER_REFRESH: i64 = 1000;

/// Where the standby is in the copy's `attachments` rows: `(created_at,
/// id)` of the last row looked at. Not the rowid: `VACUUM INTO` (the
/// snapshots) may renumber it.
pub(super) type Cursor = Option<(i64, String)>;

/// Fetches the files of the `attachments` rows after `after` that the
/// copy lacks; moves `after` past the rows looked at. Returns how many
/// files were fetched. A file the host no longer has (404) is skipped.
pub(super) async fn fetch_new(
    client: &mut DeviceClient,
    replica: &Path,
    state: &parking_lot::Mutex<LanStateFile>,
    after: &mut Cursor,
) -> anyhow::Result<usize> {
    let (at, id) = after.clone().unwrap_or((i64::MIN, String::new()));
    // Immutable: nothing (no `-wal`, no `-shm`) is written beside a file
    // the next refresh replaces.
    let copy = crate::ops::backup::open_sqlite(
        &replica.join(crate::store::db::FILE_NAME),
        crate::ops::backup::Access::Immutable,
    )
    .await
    .context("opening the copy's SQLite")?;
    let rows: Result<Vec<(i64, String, String, i64)>, _> = sqlx::query_as(
        "SELECT created_at, id, stored_name, size FROM attachments
         WHERE (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?",
    )
    .bind(at)
    .bind(id)
    .bind(ROWS_PER_REFRESH)
    .fetch_all(&copy)
    .await;
    copy.close().await;
    let rows = rows?;
    let dir = replica.join(crate::attachments::DIR);
    let mut fetched = 0;
    for (created_at, id, name, size) in rows {
        let have = std::fs::metadata(dir.join(&name))
            .is_ok_and(|meta| i64::try_from(meta.len()).is_ok_and(|len| len == size));
        if !have && fetch_one(client, replica, state, &name, size).await? {
            fetched += 1;
        }
        *after = Some((created_at, id));
    }
    Ok(fetched)
}

/// One file; false when the host has it no more.
async fn fetch_one(
    client: &mut DeviceClient,
    replica: &Path,
    state: &parking_lot::Mutex<LanStateFile>,
    name: &str,
    size: i64,
) -> anyhow::Result<bool> {
    let request = client.get_request(&format!("/lan/v1/replica/attachment?name={name}"))?;
    let response = client.send_streaming(request).await?;
    check_term(state, response.headers())?;
    if response.status() == http::StatusCode::NOT_FOUND {
        tracing::info!(%name, "standby: the host no longer has an attachment's file");
        return Ok(false);
    }
    if !response.status().is_success() {
        anyhow::bail!("the host refused an attachment ({})", response.status());
    }
    let partial = replica.join(format!(".attachment.partial-{}", ulid::Ulid::new()));
    let received = receive_files(body_reader(response), &partial).await;
    let result = received.and_then(|names| {
        if names != [name] {
            anyhow::bail!("the attachment stream holds {names:?}");
        }
        let file = partial.join(name);
        let length = std::fs::metadata(&file)?.len();
        if i64::try_from(length).ok() != Some(size) {
            anyhow::bail!("the attachment {name} is {length} bytes, its row says {size}");
        }
        let dir = replica.join(crate::attachments::DIR);
        std::fs::create_dir_all(&dir)?;
        std::fs::rename(&file, dir.join(name))?;
        manifest::sync_dir(&dir)?;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&partial);
    result.map(|()| true)
}
