//! Durable, atomic small files for `data_dir/lan/`: the device key, its
//! certificate and the LAN state.
//!
//! Why a file is either old or new after any crash: the new bytes go to a
//! temporary file in the same directory, which is fsynced (its data is on
//! disk before any name points at it), then renamed over the target (rename
//! within a directory is atomic on POSIX file systems and on NTFS), then the
//! directory is fsynced (the rename itself is on disk before the caller is
//! told "done"). A crash before the rename leaves the old file and a stray
//! temporary, which readers never look at and `remove_stale_temporaries`
//! deletes later; a crash after it leaves the new file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Temporaries older than this are leftovers of a crash (a live writer holds
/// one for milliseconds).
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);
/// Marker in temporary names; nothing else in `lan/` contains it.
const TEMP_MARK: &str = ".tmp-";

/// Who may read a file written here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Mode 0600 on Unix: the device's private key.
    Private,
    /// Mode 0644 on Unix: certificates and state.
    Public,
}

/// Makes `dir` (mode 0700 on Unix when created here) and its parents.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Replaces `path` with `bytes`, atomically and durably (module doc).
pub fn write_atomic(path: &Path, bytes: &[u8], visibility: Visibility) -> io::Result<()> {
    let temporary = write_temporary(path, bytes, visibility)?;
    if let Err(error) = fs::rename(&temporary, path) {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    sync_parent(path)
}

/// Writes `path` only if no file has that name yet, atomically and durably:
/// the temporary is hard-linked to the name, which fails if the name exists
/// (unlike rename, which replaces). So two processes making the first
/// identity at once end up with one key, and the loser learns it lost.
/// Returns whether this call created the file.
pub fn create_atomic(path: &Path, bytes: &[u8], visibility: Visibility) -> io::Result<bool> {
    let temporary = write_temporary(path, bytes, visibility)?;
    let mut linked = fs::hard_link(&temporary, path);
    if matches!(&linked, Err(e) if e.kind() == io::ErrorKind::Unsupported) {
        // A file system without hard links (FAT on a USB stick): check,
        // then rename. Not atomic against a second creator, which only two
        // processes making the very first identity at once could hit.
        linked = if path.exists() {
            Err(io::Error::from(io::ErrorKind::AlreadyExists))
        } else {
            fs::rename(&temporary, path)
        };
    }
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

/// Reads a whole file of at most `limit` bytes; a larger one is an error
/// (`InvalidData`), read no further than `limit + 1` bytes.
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

/// Deletes temporaries that crashed writers left in `dir` (older than an
/// hour, so a concurrent writer's file is never taken away). Best effort.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    // Bounded: a directory flooded with files is not walked forever.
    for entry in entries.flatten().take(1024) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with('.') && name.contains(TEMP_MARK)) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMPORARY);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Tightens a private file that someone loosened (e.g. copied with another
/// umask) back to 0600. Returns whether it had to.
#[cfg(unix)]
pub fn ensure_private(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(true)
}

/// Windows keeps the data dir under the user's profile, whose ACL already
/// keeps other users out; there are no mode bits to fix.
#[cfg(not(unix))]
pub fn ensure_private(_path: &Path) -> io::Result<bool> {
    Ok(false)
}

fn temporary_name(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let nonce: u64 = rand::random();
    Ok(path.with_file_name(format!(
        ".{name}{TEMP_MARK}{}-{nonce:016x}",
        std::process::id()
    )))
}

fn write_temporary(path: &Path, bytes: &[u8], visibility: Visibility) -> io::Result<PathBuf> {
    let temporary = temporary_name(path)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Set at creation, so the private key is never readable by others,
        // not even for the moment between create and chmod.
        options.mode(match visibility {
            Visibility::Private => 0o600,
            Visibility::Public => 0o644,
        });
    }
    #[cfg(not(unix))]
    let _ = visibility;
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(temporary)
}

/// Makes a rename or link in `path`'s directory durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    // NTFS journals the rename's metadata; a directory cannot be opened for
    // fsync without backup semantics.
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old", Visibility::Public).expect("write");
        write_atomic(&path, b"new", Visibility::Public).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        assert!(create_atomic(&path, b"secret", Visibility::Private).expect("create"));
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(ensure_private(&path).expect("fix"));
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!ensure_private(&path).expect("fine"));
    }

    #[test]
    fn create_atomic_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        assert!(create_atomic(&path, b"first", Visibility::Private).expect("create"));
        assert!(!create_atomic(&path, b"second", Visibility::Private).expect("exists"));
        assert_eq!(fs::read(&path).expect("read"), b"first");
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn read_bounded_refuses_a_larger_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, vec![b'x'; 101]).expect("write");
        assert_eq!(read_bounded(&path, 101).expect("fits").len(), 101);
        let error = read_bounded(&path, 100).expect_err("too large");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn stale_temporaries_go_fresh_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(".state.json.tmp-1-00");
        let fresh = dir.path().join(".state.json.tmp-2-00");
        let other = dir.path().join("state.json");
        for path in [&stale, &fresh, &other] {
            fs::write(path, b"x").expect("write");
        }
        let old = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(old))
            .expect("age");
        let old_other = File::options()
            .write(true)
            .open(&other)
            .and_then(|f| f.set_modified(old));
        old_other.expect("age");
        remove_stale_temporaries(dir.path());
        assert!(!stale.exists());
        assert!(fresh.exists());
        assert!(other.exists());
    }
}
