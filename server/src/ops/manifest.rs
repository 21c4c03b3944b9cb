//! A backup's `manifest.json`: which Kefu made it, for which schema, when,
//! and every file with its size and SHA-256. Written last, after every
//! other file is fsynced; `verify` trusts nothing in a backup that the
//! manifest does not list with the right checksum.
//!
//! Layout of a backup directory (paths in the manifest use `/`):
//! - `kefu.sqlite3`: SQLite, from `VACUUM INTO` (one file, no WAL);
//! - `messages/…`: the RocksDB checkpoint of the message log;
//! - `attachments/<stored_name>`: every attachment SQLite references;
//! - `lan/…`: the LAN identity and state, when the data dir has them;
//! - `manifest.json`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FILE: &str = "manifest.json";
/// The layout described in the module doc.
pub const FORMAT: u32 = 1;
/// A manifest larger than this is not one of ours.
pub const MAX_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kefu_version: String,
    /// SQLite's migration version in the backup.
    pub schema_version: i64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub created_at_ms: i64,
    /// `online` (made by a running server) or `offline`.
    pub source: String,
    pub conversations: u64,
    /// Messages in the log (the sum of the conversations' heads).
    pub messages: u64,
    pub attachments: u64,
    /// Attachments SQLite references whose file was already missing from
    /// the data dir when the backup was made (see `kefu-server doctor`).
    #[serde(default)]
    pub missing_attachments: Vec<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let bytes = read_bounded(&dir.join(FILE), MAX_BYTES)
            .map_err(|e| anyhow::anyhow!("{}: no readable {FILE} ({e})", dir.display()))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {FILE} is not valid ({e})", dir.display()))?;
        if manifest.format != FORMAT {
            anyhow::bail!(
                "{}: backup format {} is not known to this binary (it knows {FORMAT})",
                dir.display(),
                manifest.format
            );
        }
        Ok(manifest)
    }
}

/// Every regular file under `root`, as relative `/`-separated paths,
/// sorted. Symbolic links are refused: a backup holds files only.
pub fn list_files(root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let relative = path.strip_prefix(root).map_err(io::Error::other)?;
            out.push(to_manifest_path(relative)?);
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is neither a file nor a directory", path.display()),
            ));
        }
    }
    Ok(())
}

fn to_manifest_path(relative: &Path) -> io::Result<String> {
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    parts.map(|p| p.join("/")).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a plain UTF-8 path", relative.display()),
        )
    })
}

/// A manifest path back to a path under `root`; `None` for anything that
/// could leave it (`..`, absolute, empty parts).
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

/// Size and SHA-256 (hex) of a file; with `sync`, also fsyncs it (then
/// opened for writing too: Windows' `FlushFileBuffers` refuses a read-only
/// handle with "access denied").
pub fn hash_file(path: &Path, sync: bool) -> io::Result<(u64, String)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(sync)
        .open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    if sync {
        file.sync_all()?;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Fsyncs a directory (its entries: names, renames). A no-op where
/// directories cannot be opened (Windows).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Fsyncs `root` and every directory under it.
pub fn sync_dirs(root: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_dirs(&entry.path())?;
        }
    }
    sync_dir(root)
}

/// Copies a directory tree (files and directories only), fsyncing files.
pub fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) -> io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        if skip(text) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copied += copy_tree(&entry.path(), &to.join(&name), skip)?;
        } else if kind.is_file() {
            copied += copy_file(&entry.path(), &to.join(&name))?;
        }
    }
    Ok(copied)
}

/// Copies one file and fsyncs the copy.
pub fn copy_file(from: &Path, to: &Path) -> io::Result<u64> {
    let copied = std::fs::copy(from, to)?;
    sync_file(to)?;
    Ok(copied)
}

/// Fsyncs a file already written and closed. Opened for writing: Windows'
/// `FlushFileBuffers` refuses a read-only handle (access denied).
pub fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .sync_all()
}

/// Makes `dir` (mode 0700 on Unix) and its parents.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Reads a whole file of at most `limit` bytes; a larger one is an error.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// Replaces `path` with `bytes`, readable by its owner only (0600 on
/// Unix): written beside it, fsynced, renamed over it, directory fsynced.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.tmp-{}", ulid::Ulid::new()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    sync_dir(dir)
}
