//! The embedded kefu-server: the library, in this process, on loopback.
//! Started before the window (the page learns its address from an
//! initialization script); stopped on quit, which drains the message log,
//! flushes and closes the stores.
//!
//! It runs in one of the three LAN roles (docs/LAN.md): solo, the shop's
//! host (`prefs.lan.host_bind`: also a TLS listener on the LAN), or a peer
//! (the library's `lan/state.json` says `peer`: no shop data here, the API
//! relayed to the pinned host). Changing role restarts it on the same
//! loopback port, so the page's address never changes.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;

use kefu_server::Running;
use kefu_server::lan::peer::RunningPeer;
use kefu_server::lan::state::{LanStateFile, Role};
use kefu_server::state::AppState;
use serde::Serialize;

use crate::prefs::{self, Durability, Prefs};

/// The embedded server in the role it was started in.
pub enum Embedded {
    /// Solo or host: the shop's data is here.
    Shop(Running),
    /// A peer of the shop's host: relays the API there.
    Peer(RunningPeer),
}

impl Embedded {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Embedded::Shop(running) => running.addr,
            Embedded::Peer(peer) => peer.addr,
        }
    }

    /// The shop's state, when the shop's data is here (not on a peer).
    pub fn state(&self) -> Option<&AppState> {
        match self {
            Embedded::Shop(running) => Some(running.state()),
            Embedded::Peer(_) => None,
        }
    }

    /// The LAN listener's address, when hosting.
    pub fn lan_addr(&self) -> Option<SocketAddr> {
        match self {
            Embedded::Shop(running) => running.lan_addr,
            Embedded::Peer(_) => None,
        }
    }

    pub fn peer(&self) -> Option<&RunningPeer> {
        match self {
            Embedded::Peer(peer) => Some(peer),
            Embedded::Shop(_) => None,
        }
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        match self {
            Embedded::Shop(running) => running.shutdown().await,
            Embedded::Peer(peer) => peer.shutdown().await,
        }
    }
}

/// What the window shows first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Running {
        api_base: String,
    },
    /// Another program (often another Kefu) holds the port.
    PortInUse {
        port: u16,
        suggested: Option<u16>,
    },
    Failed {
        message: String,
    },
}

/// Where the app keeps its data and settings.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Dirs {
    /// `KEFU_DESKTOP_DATA_DIR` / `KEFU_DESKTOP_CONFIG_DIR` override the OS
    /// defaults (tests, portable installs).
    pub fn resolve(data: PathBuf, config: PathBuf) -> Dirs {
        Dirs {
            data: std::env::var_os("KEFU_DESKTOP_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or(data),
            config: std::env::var_os("KEFU_DESKTOP_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or(config),
        }
    }
}

/// The server's configuration from the desktop preferences.
pub fn server_config(prefs: &Prefs, data_dir: PathBuf) -> kefu_server::Config {
    kefu_server::Config {
        bind: prefs.bind(),
        data_dir,
        durability: match prefs.durability {
            Durability::Fsync => kefu_server::config::Durability::Fsync,
            Durability::Os => kefu_server::config::Durability::Os,
        },
        memory: memory_profile(),
        // Scheduled backups (Settings → Backup): the server's own scheduler.
        backup: kefu_server::config::BackupConfig {
            dir: prefs
                .backup
                .scheduled
                .then(|| prefs.backup.dir.clone())
                .flatten(),
            interval_minutes: prefs.backup.interval_minutes,
            keep: prefs.backup.keep,
        },
        ..kefu_server::Config::default()
    }
}

/// The stores' sizes: `desktop` (kefu_server::store::memory), unless
/// `KEFU_DESKTOP_MEMORY=server` asks for the headless server's (the
/// before/after measurement of docs/DESKTOP.md, "Memory").
pub fn memory_profile() -> kefu_server::store::memory::MemoryProfile {
    use kefu_server::store::memory::MemoryProfile;
    match std::env::var("KEFU_DESKTOP_MEMORY").as_deref() {
        Ok("server") => MemoryProfile::Server,
        _ => MemoryProfile::Desktop,
    }
}

/// The configuration for this device's LAN role: a peer of the host
/// pinned in `lan/state.json`, else the host when the preferences say so
/// (its certificate naming this computer's LAN addresses when it listens
/// on all of them), else solo.
pub fn role_config(
    prefs: &Prefs,
    mut config: kefu_server::Config,
) -> anyhow::Result<kefu_server::Config> {
    let state = LanStateFile::open(&config.data_dir)?;
    match (state.state().role, state.state().host.clone()) {
        (Role::Peer, Some(host)) => config.lan.peer_of = Some(host.address),
        _ => {
            if let Some(bind) = prefs.lan.host_bind {
                config.lan.bind = Some(bind);
                config.lan.mdns.enabled = prefs.lan.mdns;
                if bind.ip().is_unspecified() {
                    config.lan.names = crate::lan::lan_addresses();
                }
            }
        }
    }
    Ok(config)
}

/// Binds the port and starts the server; a taken port is reported as such
/// with a free one to offer.
pub async fn start(prefs: &Prefs, dirs: &Dirs) -> (Option<Embedded>, Status) {
    let config = server_config(prefs, dirs.data.clone());
    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(error) if error.kind() == ErrorKind::AddrInUse => {
            tracing::warn!(port = prefs.port, "the port is in use");
            let status = Status::PortInUse {
                port: prefs.port,
                suggested: prefs::suggest_port(prefs.port),
            };
            return (None, status);
        }
        Err(error) => {
            let message = format!("cannot listen on {}: {error}", config.bind);
            return (None, Status::Failed { message });
        }
    };
    if let Err(error) = std::fs::create_dir_all(&config.data_dir) {
        let message = format!("cannot create {}: {error}", config.data_dir.display());
        return (None, Status::Failed { message });
    }
    let config = match role_config(prefs, config) {
        Ok(config) => config,
        Err(error) => {
            let message = format!("cannot read the LAN state: {error:#}");
            return (None, Status::Failed { message });
        }
    };
    let started = if config.lan.peer_of.is_some() {
        kefu_server::lan::peer::start_on(config, listener)
            .await
            .map(Embedded::Peer)
    } else {
        kefu_server::start_on(config, listener)
            .await
            .map(Embedded::Shop)
    };
    match started {
        Ok(embedded) => {
            let api_base = format!("http://{}", embedded.addr());
            (Some(embedded), Status::Running { api_base })
        }
        Err(error) => (
            None,
            Status::Failed {
                message: format!("{error:#}"),
            },
        ),
    }
}

/// Whether the store has no agent yet: the first start's setup is due.
pub async fn needs_setup(state: &AppState) -> Result<bool, String> {
    kefu_server::agents::needs_owner(&state.db)
        .await
        .map_err(|e| e.to_string())
}

/// Creates the owner (an admin), only while there is no agent at all.
pub async fn create_owner(
    state: &AppState,
    username: String,
    password: String,
    display_name: Option<String>,
) -> Result<(), String> {
    kefu_server::agents::create_owner(&state.db, username, password, display_name)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Default preferences on a port free a moment ago.
    pub(crate) fn prefs_on_free_port() -> Prefs {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        Prefs {
            port,
            ..Prefs::default()
        }
    }

    #[test]
    fn config_is_loopback_with_fsync_by_default() {
        let config = server_config(&Prefs::default(), "/d".into());
        assert_eq!(config.bind, "127.0.0.1:5338".parse().unwrap());
        assert_eq!(config.durability, kefu_server::config::Durability::Fsync);
        assert!(
            config.backup.dir.is_none(),
            "no scheduled backups by default"
        );
    }

    #[test]
    fn a_backup_schedule_is_the_servers_scheduled_backups() {
        let mut prefs = Prefs::default();
        prefs.backup = prefs::BackupPrefs {
            dir: Some("/backups".into()),
            scheduled: false,
            interval_minutes: 60,
            keep: 3,
        };
        // A folder alone (for "Back up now") schedules nothing.
        assert!(server_config(&prefs, "/d".into()).backup.dir.is_none());
        prefs.backup.scheduled = true;
        let config = server_config(&prefs, "/d".into());
        assert_eq!(config.backup.dir, Some("/backups".into()));
        assert_eq!(
            (config.backup.interval_minutes, config.backup.keep),
            (60, 3)
        );
        assert!(config.validate().is_ok());
    }

    #[tokio::test]
    async fn starts_sets_up_the_owner_once_and_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            data: dir.path().join("data"),
            config: dir.path().join("config"),
        };
        let prefs = prefs_on_free_port();
        let (running, status) = start(&prefs, &dirs).await;
        let running = running.unwrap();
        let state = running.state().unwrap().clone();
        assert_eq!(
            status,
            Status::Running {
                api_base: format!("http://127.0.0.1:{}", prefs.port)
            }
        );
        assert!(needs_setup(&state).await.unwrap());
        create_owner(&state, "owner".into(), "correct horse 1".into(), None)
            .await
            .unwrap();
        assert!(!needs_setup(&state).await.unwrap());
        let again = create_owner(&state, "second".into(), "correct horse 2".into(), None).await;
        assert!(again.is_err());
        drop(state);
        running.shutdown().await.unwrap();
        // The stores were closed: they open again at once.
        let (running, _) = start(&prefs, &dirs).await;
        let running = running.unwrap();
        assert!(!needs_setup(running.state().unwrap()).await.unwrap());
        running.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn hosting_is_a_lan_listener_and_a_peer_is_what_the_state_file_says() {
        use kefu_server::lan::state::PinnedHost;
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            data: dir.path().join("data"),
            config: dir.path().join("config"),
        };
        let lan_port = prefs_on_free_port().port;
        let prefs = Prefs {
            lan: prefs::LanPrefs {
                host_bind: Some(std::net::SocketAddr::from(([127, 0, 0, 1], lan_port))),
                mdns: false,
            },
            ..prefs_on_free_port()
        };
        let (running, _) = start(&prefs, &dirs).await;
        let running = running.unwrap();
        assert_eq!(running.lan_addr().unwrap().port(), lan_port);
        assert!(running.peer().is_none() && running.state().is_some());
        running.shutdown().await.unwrap();
        let state = LanStateFile::open(&dirs.data).unwrap();
        assert_eq!(state.state().role, Role::Host, "promoted, term written");
        assert!(state.state().term >= 1);

        // A device whose state file pins a host starts as its peer, whatever
        // the preferences say about hosting.
        let mut state = state;
        state.become_solo().unwrap();
        let (identity, _) = kefu_server::lan::Identity::open(&dirs.data).unwrap();
        state
            .become_peer(PinnedHost {
                address: "127.0.0.2:5339".parse().unwrap(),
                device_id: identity.device_id(),
                history_id: None,
            })
            .unwrap();
        let config = role_config(&prefs, server_config(&prefs, dirs.data.clone())).unwrap();
        assert_eq!(config.lan.peer_of.unwrap().to_string(), "127.0.0.2:5339");
        assert!(config.lan.bind.is_none());
        let (running, _) = start(&prefs, &dirs).await;
        let running = running.unwrap();
        assert!(running.peer().is_some() && running.state().is_none());
        running.shutdown().await.unwrap();
        // Solo again: no LAN listener without host_bind.
        LanStateFile::open(&dirs.data)
            .unwrap()
            .become_solo()
            .unwrap();
        let solo = Prefs {
            lan: prefs::LanPrefs::default(),
            ..prefs
        };
        let config = role_config(&solo, server_config(&solo, dirs.data.clone())).unwrap();
        assert!(config.lan.bind.is_none() && config.lan.peer_of.is_none());
    }

    #[tokio::test]
    async fn a_taken_port_is_reported_with_a_free_one() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            data: dir.path().into(),
            config: dir.path().into(),
        };
        let prefs = Prefs {
            port,
            ..Prefs::default()
        };
        let (running, status) = start(&prefs, &dirs).await;
        assert!(running.is_none());
        match status {
            Status::PortInUse { port: p, suggested } => {
                assert_eq!(p, port);
                assert!(suggested.is_some_and(|s| s != port));
            }
            other => panic!("expected PortInUse, got {other:?}"),
        }
    }
}
