//! The desktop app's own settings (`desktop.toml` in the OS config dir):
//! the embedded server's port and durability, what to notify about, tray
//! behaviour, "remember me" and start at login. Plain preferences only:
//! never a credential (those live in the OS keyring, see `keystore`).

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The port the embedded server listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 5338;
/// File name of the preferences inside the config dir.
pub const FILE_NAME: &str = "desktop.toml";

/// Which notifications the agent wants (each can be turned off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyPrefs {
    /// A visitor started a chat that waits in the queue.
    pub queue: bool,
    /// A visitor wrote in one of my chats.
    pub messages: bool,
    /// A ticket was assigned to me.
    pub tickets: bool,
}

impl Default for NotifyPrefs {
    fn default() -> Self {
        NotifyPrefs {
            queue: true,
            messages: true,
            tickets: true,
        }
    }
}

/// Durability of the embedded message log (see kefu-server's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Os,
    Fsync,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prefs {
    /// Loopback port of the embedded server.
    pub port: u16,
    /// `fsync` (default on the desktop: survives power loss) or `os`.
    pub durability: Durability,
    /// Closing the window hides it to the tray instead of quitting.
    pub close_to_tray: bool,
    /// Keep the session token in the OS keyring across restarts.
    pub remember_me: bool,
    /// Start Kefu (hidden, in the tray) when the user logs in.
    pub autostart: bool,
    pub notify: NotifyPrefs,
    /// LAN hosting (Settings → LAN). Whether this computer is a peer is
    /// not here: that is the server library's `lan/state.json`.
    pub lan: LanPrefs,
    /// Backups (Settings → Backup).
    pub backup: BackupPrefs,
    /// Updates from the shop's server (Settings → Updates): off by default.
    pub updates: crate::updates::UpdatePrefs,
}

/// `[backup]`: where backups go and whether the embedded server makes them
/// on a schedule (its `[backup]` configuration, docs/OPERATIONS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupPrefs {
    /// The backup folder (absolute, outside the data dir). None: not chosen.
    pub dir: Option<PathBuf>,
    /// Back up into `dir` every `interval_minutes`, keeping `keep`.
    pub scheduled: bool,
    pub interval_minutes: u64,
    pub keep: usize,
}

impl Default for BackupPrefs {
    fn default() -> Self {
        BackupPrefs {
            dir: None,
            scheduled: false,
            interval_minutes: 1440,
            keep: 7,
        }
    }
}

/// Bounds of the schedule: every 15 minutes to every 30 days; 1 to 100 kept.
pub const BACKUP_INTERVAL_MINUTES: std::ops::RangeInclusive<u64> = 15..=43_200;
pub const BACKUP_KEEP: std::ops::RangeInclusive<usize> = 1..=100;

/// `[lan]`: this computer as the shop's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LanPrefs {
    /// Host the shop on this LAN address (TLS only), e.g. `0.0.0.0:5339`.
    /// None: not hosting.
    pub host_bind: Option<SocketAddr>,
    /// Announce the host over mDNS (a hint for peers; the manual path
    /// always works).
    pub mdns: bool,
}

/// The LAN address a host listens on unless the admin gives another.
pub const DEFAULT_LAN_BIND: &str = "0.0.0.0:5339";

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            port: DEFAULT_PORT,
            durability: Durability::Fsync,
            close_to_tray: true,
            remember_me: true,
            autostart: false,
            notify: NotifyPrefs::default(),
            lan: LanPrefs::default(),
            backup: BackupPrefs::default(),
            updates: crate::updates::UpdatePrefs::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("port {0} is not allowed (use 1024-65535)")]
    BadPort(u16),
    #[error("{0} cannot be the LAN address (a port, and not the app's own loopback port)")]
    BadLanBind(SocketAddr),
    #[error(
        "backups: every 15 to 43200 minutes, 1 to 100 kept, into an absolute folder (one must be chosen for a schedule)"
    )]
    BadBackup,
}

impl Prefs {
    /// Reads `dir/desktop.toml`; a missing file gives the defaults.
    pub fn load(dir: &Path) -> Result<Prefs, PrefsError> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Prefs::default()),
            Err(source) => return Err(PrefsError::Read { path, source }),
        };
        let prefs: Prefs = toml::from_str(&text).map_err(|e| PrefsError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        prefs.validate()?;
        Ok(prefs)
    }

    /// Writes `dir/desktop.toml` atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<(), PrefsError> {
        self.validate()?;
        let path = dir.join(FILE_NAME);
        let write = |path: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
            let tmp = dir.join(format!("{FILE_NAME}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        };
        write(&path).map_err(|source| PrefsError::Write { path, source })
    }

    pub fn validate(&self) -> Result<(), PrefsError> {
        if self.port < 1024 {
            return Err(PrefsError::BadPort(self.port));
        }
        if let Some(bind) = self.lan.host_bind
            && (bind.port() == 0
                || bind.port() == self.port
                    && (bind.ip().is_unspecified() || bind.ip() == self.bind().ip()))
        {
            return Err(PrefsError::BadLanBind(bind));
        }
        let backup = &self.backup;
        if !BACKUP_INTERVAL_MINUTES.contains(&backup.interval_minutes)
            || !BACKUP_KEEP.contains(&backup.keep)
            || backup.dir.as_ref().is_some_and(|dir| !dir.is_absolute())
            || (backup.scheduled && backup.dir.is_none())
        {
            return Err(PrefsError::BadBackup);
        }
        Ok(())
    }

    /// The embedded server's address: loopback only.
    pub fn bind(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

/// The first port after `taken` (wrapping within 1024-65535, at most 100
/// tries) that can be bound on 127.0.0.1 right now: what the app offers
/// when its port is in use.
pub fn suggest_port(taken: u16) -> Option<u16> {
    let mut port = taken;
    for _ in 0..100 {
        port = if port == u16::MAX { 1024 } else { port + 1 };
        if port < 1024 {
            port = 1024;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Some(port);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_5338_fsync_and_all_notifications() {
        let prefs = Prefs::default();
        assert_eq!(prefs.bind(), "127.0.0.1:5338".parse().unwrap());
        assert_eq!(prefs.durability, Durability::Fsync);
        assert!(prefs.close_to_tray && prefs.remember_me && !prefs.autostart);
        assert_eq!(prefs.notify, NotifyPrefs::default());
    }

    #[test]
    fn missing_file_gives_defaults_and_save_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Prefs::load(dir.path()).unwrap(), Prefs::default());
        let prefs = Prefs {
            port: 6000,
            durability: Durability::Os,
            close_to_tray: false,
            notify: NotifyPrefs {
                queue: false,
                ..NotifyPrefs::default()
            },
            ..Prefs::default()
        };
        let prefs = Prefs {
            lan: LanPrefs {
                host_bind: Some("127.0.0.2:5339".parse().unwrap()),
                mdns: true,
            },
            backup: BackupPrefs {
                dir: Some(dir.path().join("backups")),
                scheduled: true,
                interval_minutes: 60,
                keep: 3,
            },
            ..prefs
        };
        prefs.save(&dir.path().join("nested")).unwrap();
        assert_eq!(Prefs::load(&dir.path().join("nested")).unwrap(), prefs);
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "port = 7000\n[notify]\ntickets = false\n",
        )
        .unwrap();
        let prefs = Prefs::load(dir.path()).unwrap();
        assert_eq!(prefs.port, 7000);
        assert!(prefs.notify.queue && prefs.notify.messages && !prefs.notify.tickets);
        assert!(prefs.close_to_tray);
    }

    #[test]
    fn bad_files_are_errors_not_silently_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "port = \"x\"").unwrap();
        assert!(matches!(
            Prefs::load(dir.path()),
            Err(PrefsError::Parse { .. })
        ));
        std::fs::write(dir.path().join(FILE_NAME), "colour = 1").unwrap();
        assert!(matches!(
            Prefs::load(dir.path()),
            Err(PrefsError::Parse { .. })
        ));
        std::fs::write(
            dir.path().join(FILE_NAME),
            "port = 6000\n[lan]\nhost_bind = \"127.0.0.1:6000\"\n",
        )
        .unwrap();
        assert!(matches!(
            Prefs::load(dir.path()),
            Err(PrefsError::BadLanBind(_))
        ));
        for backup in [
            "[backup]\ninterval_minutes = 14\n",
            "[backup]\nkeep = 0\n",
            "[backup]\nkeep = 101\n",
            "[backup]\ndir = \"relative/dir\"\n",
            "[backup]\nscheduled = true\n",
        ] {
            std::fs::write(dir.path().join(FILE_NAME), backup).unwrap();
            assert!(
                matches!(Prefs::load(dir.path()), Err(PrefsError::BadBackup)),
                "{backup}"
            );
        }
        std::fs::write(dir.path().join(FILE_NAME), "port = 80").unwrap();
        assert!(matches!(
            Prefs::load(dir.path()),
            Err(PrefsError::BadPort(80))
        ));
    }

    #[test]
    fn suggests_a_free_port_after_a_taken_one() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = held.local_addr().unwrap().port();
        let suggested = suggest_port(taken).unwrap();
        assert_ne!(suggested, taken);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, suggested)).is_ok());
    }
}
