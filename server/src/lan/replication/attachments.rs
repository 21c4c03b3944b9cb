//! An attachment's file for a standby (`GET
//! /lan/v1/replica/attachment?name=N`, docs/LAN.md "How a standby keeps
//! its copy"): the tail carries the log and the SQLite snapshot the
//! attachments' rows, but not the files uploaded since the full sync. The
//! standby asks for each one its copy's SQLite names and its directory
//! lacks (`lan::standby::attachments`).

use super::{Replica, Scratch, standby_device, stream_files};
use crate::error::{ApiError, ApiResult};
use crate::lan::host::{LanHost, LanPeer};
use crate::state::AppState;

/// The longest stored name asked for (they are random hex).
const NAME_MAX: usize = 128;

/// `name` is an attachment's stored name (`attachments.stored_name`):
/// hex only, so it never leaves `DATA_DIR/attachments/`.
fn stored_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One attachment's file as a [`super::frames`] file stream (its stored
/// name as the path), for a standby; 404 when the host has no such
/// attachment (or its file is gone), 400 for a name that is not one.
pub async fn attachment(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
    name: &str,
) -> ApiResult<Replica> {
    standby_device(state, host, peer).await?;
    if !stored_name(name) {
        return Err(ApiError::bad_request("not an attachment's stored name").in_field("name"));
    }
    let known: Option<(String,)> =
        sqlx::query_as("SELECT stored_name FROM attachments WHERE stored_name = ?")
            .bind(name)
            .fetch_optional(&state.db)
            .await?;
    if known.is_none() {
        return Err(ApiError::NotFound("no such attachment".into()));
    }
    let source = state
        .config
        .data_dir
        .join(crate::attachments::DIR)
        .join(name);
    // A hard link in a scratch directory (a copy across file systems):
    // the file stays readable while it is streamed, whatever happens to
    // the original.
    let scratch = Scratch::new();
    let target = scratch.0.join(name);
    let linked = tokio::task::spawn_blocking(move || {
        std::fs::create_dir(&scratch.0)?;
        if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)?;
        }
        std::io::Result::Ok(scratch)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let scratch = match linked {
        Ok(scratch) => scratch,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("the attachment's file is gone".into()));
        }
        Err(error) => return Err(ApiError::Internal(error.into())),
    };
    let root = scratch.0.clone();
    Ok(Replica {
        history_id: host.history_id,
        body: stream_files(root, vec![name.to_owned()], scratch),
        latest_seq: None,
    })
}

#[cfg(test)]
mod tests {
    use super::{NAME_MAX, stored_name};

    #[test]
    fn only_hex_names_are_asked_for() {
        assert!(stored_name("0123456789abcdef"));
        let long = "a".repeat(NAME_MAX + 1);
        for bad in ["", "../state.json", "a/b", "abc.png", long.as_str()] {
            assert!(!stored_name(bad), "{bad}");
        }
    }
}
