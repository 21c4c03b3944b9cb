//! A backup restored on a device of a LAN shop (issue 18; docs/LAN.md,
//! "A restored backup"). A backup holds `lan/state.json` as it was: its
//! term and history. Restored as it is, a retired or taken-over host would
//! host its old copy again in a term the shop has long passed (a fork
//! nobody asked for), and a host restoring its own backup would count its
//! terms from an old number.
//!
//! So `kefu-server restore` carries this device's knowledge of its shop's
//! terms into the restored state before it is put in place
//! ([`carry_terms`]): terms only go up, on every device, across a restore
//! too. And when this device had learnt that another device holds the
//! shop (it was superseded, or it is a peer of a host in a later term than
//! the backup's), the restored state says so (`superseded_by`): the copy
//! is restored, but `serve --lan-bind` refuses to host it and says how to
//! join the current host as a peer (`lan::host`).

use std::path::Path;

use super::identity::LAN_DIR;
use super::state::{LanStateFile, Role, Superseded};

const STATE_FILE: &str = "state.json";

/// Carries `data_dir`'s LAN terms into the backup copied to `restored`
/// (not in place yet). Returns what to tell the operator when the
/// restored copy will not host.
pub fn carry_terms(data_dir: &Path, restored: &Path) -> anyhow::Result<Option<String>> {
    if !data_dir.join(LAN_DIR).join(STATE_FILE).is_file()
        || !restored.join(LAN_DIR).join(STATE_FILE).is_file()
    {
        return Ok(None);
    }
    let current = LanStateFile::open(data_dir)?.state().clone();
    let mut file = LanStateFile::open(restored)?;
    let backup = file.state().clone();
    if current.history_id != backup.history_id {
        // Another shop's data: its terms count something else.
        return Ok(None);
    }
    let superseded = current
        .superseded_by
        .clone()
        .or_else(|| match &current.host {
            Some(host) if current.role == Role::Peer && current.highest_term_seen > backup.term => {
                Some(Superseded {
                    term: current.highest_term_seen,
                    device_id: host.device_id,
                    restored: true,
                })
            }
            _ => None,
        });
    file.update(|state| {
        state.term = state.term.max(current.term);
        state.highest_term_seen = state.highest_term_seen.max(current.highest_term_seen);
        if let Some(by) = &superseded {
            // A restored copy serves nothing, not even a reconciliation.
            state.superseded_by = Some(Superseded {
                restored: true,
                ..by.clone()
            });
        }
    })?;
    Ok(superseded.map(|by| {
        format!(
            "this backup is of term {} of the shop, and {} has hosted it since (term {}): it is \
             restored, but this device will not host it. Join the current host as a peer \
             instead: kefu-server lan pair --host ADDRESS --id {}",
            backup.term, by.device_id, by.term, by.device_id
        )
    }))
}
