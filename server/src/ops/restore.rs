//! `kefu-server restore --from BACKUP --data-dir D`.
//!
//! Refuses, with a message saying why and what to do, when:
//! - the backup does not verify (`verify`: damaged, unfinished, foreign);
//! - it was made by a newer Kefu, or holds a newer schema, than this binary
//!   (an older one is fine: the server migrates it at start);
//! - a server is running on `D` (it holds the message log's lock).
//!
//! Then, so that `D` is always either the old data or the whole backup:
//! the backup is **copied** (never linked: SQLite and RocksDB write into
//! their files) into `.D.restoring-<ulid>` beside `D`, fsynced; an existing
//! non-empty `D` is renamed to `D.before-restore-<UTC time>` (kept, never
//! deleted: the operator removes it once the restore is confirmed); the
//! copy is renamed to `D`. A crash between the two renames leaves no `D`
//! but both directories beside it, named for what they are.
//!
//! A LAN device's terms are carried into the restored copy, and a copy
//! whose term is behind what the device has seen is restored but refuses
//! to host (`lan::restored`): the operator is told how to join as a peer.
//!
//! `D` must be a directory that can be renamed: not a mount point (a
//! container volume). Mount the volume one level up and point the data dir
//! into it (docs/OPERATIONS.md).

use std::path::{Path, PathBuf};

use super::manifest;

/// Marker in the temporary directory's name.
pub const RESTORING_MARK: &str = ".restoring-";

#[derive(Debug)]
pub struct Restored {
    pub data_dir: PathBuf,
    /// Where the data dir that was there before went.
    pub previous: Option<PathBuf>,
    /// Why the restored copy will not host on the LAN (its term is behind
    /// what this device has seen: `lan::restored`).
    pub lan_refused: Option<String>,
    pub manifest: manifest::Manifest,
}

pub async fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<Restored> {
    // Versions first: a newer backup is refused for what it is, before
    // this binary tries to read what it may not understand.
    if let Ok(manifest) = manifest::Manifest::read(from) {
        check_versions(&manifest)?;
    }
    let verified = super::verify::verify(from)
        .await
        .map_err(|e| anyhow::anyhow!("the backup does not verify, nothing was restored: {e:#}"))?;
    let manifest = verified.manifest;
    check_versions(&manifest)?;
    let data_dir = std::path::absolute(data_dir)?;
    ensure_not_running(&data_dir)?;
    let (Some(parent), Some(name)) = (
        data_dir.parent(),
        data_dir.file_name().and_then(|n| n.to_str()),
    ) else {
        anyhow::bail!("{} cannot be a data dir", data_dir.display());
    };
    std::fs::create_dir_all(parent)?;
    let temp = parent.join(format!(".{name}{RESTORING_MARK}{}", ulid::Ulid::new()));
    let copy = {
        let from = from.to_path_buf();
        let temp = temp.clone();
        let files = manifest.files.clone();
        tokio::task::spawn_blocking(move || copy_backup(&from, &temp, &files)).await?
    };
    if let Err(error) = copy {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(error.context("copying the backup failed, nothing was restored"));
    }
    // Terms only go up across a restore (lan::restored).
    let lan_refused = match crate::lan::restored::carry_terms(&data_dir, &temp) {
        Ok(refused) => refused,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(error.context("reading the LAN state failed, nothing was restored"));
        }
    };
    // Again, as late as possible: a server may have started meanwhile.
    if let Err(error) = ensure_not_running(&data_dir) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(error);
    }
    let previous = match std::fs::read_dir(&data_dir).map(|mut e| e.next().is_none()) {
        Ok(true) => {
            std::fs::remove_dir(&data_dir)?;
            None
        }
        Ok(false) => {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            let aside = parent.join(format!("{name}.before-restore-{stamp}"));
            std::fs::rename(&data_dir, &aside).map_err(|e| {
                let _ = std::fs::remove_dir_all(&temp);
                anyhow::anyhow!(
                    "cannot move {} aside to {} ({e}); is it a mount point? nothing was restored",
                    data_dir.display(),
                    aside.display()
                )
            })?;
            Some(aside)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(anyhow::anyhow!(
                "cannot read {}: {error}",
                data_dir.display()
            ));
        }
    };
    std::fs::rename(&temp, &data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot rename {} to {} ({e}); the restored copy is complete in the first, \
             rename it by hand",
            temp.display(),
            data_dir.display()
        )
    })?;
    manifest::sync_dir(parent)?;
    Ok(Restored {
        data_dir,
        previous,
        manifest,
        lan_refused,
    })
}

/// A backup from a newer binary or schema cannot be read by this one.
pub fn check_versions(manifest: &manifest::Manifest) -> anyhow::Result<()> {
    let ours = super::binary_schema_version();
    if manifest.schema_version > ours {
        anyhow::bail!(
            "the backup has schema version {}, newer than this kefu-server knows ({ours}): \
             restore it with kefu-server {} or newer",
            manifest.schema_version,
            manifest.kefu_version
        );
    }
    let theirs = super::parse_version(&manifest.kefu_version).ok_or_else(|| {
        anyhow::anyhow!(
            "the backup names an unreadable Kefu version {:?}",
            manifest.kefu_version
        )
    })?;
    let binary = super::parse_version(super::KEFU_VERSION).unwrap_or((0, 0, 0));
    if theirs > binary {
        anyhow::bail!(
            "the backup was made by kefu-server {}, newer than this one ({}): \
             restore it with that version or newer",
            manifest.kefu_version,
            super::KEFU_VERSION
        );
    }
    Ok(())
}

fn ensure_not_running(data_dir: &Path) -> anyhow::Result<()> {
    if super::runtime::server_running(data_dir)? {
        anyhow::bail!(
            "a server is running on {}: stop it first, nothing was restored",
            data_dir.display()
        );
    }
    Ok(())
}

fn copy_backup(from: &Path, temp: &Path, files: &[manifest::FileEntry]) -> anyhow::Result<()> {
    super::manifest::create_private_dir(temp)?;
    for entry in files {
        let (Some(source), Some(target)) = (
            manifest::resolve(from, &entry.path),
            manifest::resolve(temp, &entry.path),
        ) else {
            anyhow::bail!("unsafe path {:?} in the manifest", entry.path);
        };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        manifest::copy_file(&source, &target)?;
    }
    // `fs::copy` keeps each file's mode: the LAN key stays 0600.
    manifest::sync_dirs(temp)?;
    Ok(())
}
