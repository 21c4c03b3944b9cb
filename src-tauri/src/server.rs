//! The embedded kefu-server: the library, in this process, on loopback.
//! Started before the window (the page learns its address from an
//! initialization script); stopped on quit, which drains the message log,
//! flushes and closes the stores.

use std::io::ErrorKind;
use std::path::PathBuf;

use kefu_server::Running;
use kefu_server::state::AppState;
use serde::Serialize;

use crate::prefs::{self, Durability, Prefs};

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

/// Binds the port and starts the server; a taken port is reported as such
/// with a free one to offer.
pub async fn start(prefs: &Prefs, dirs: &Dirs) -> (Option<Running>, Status) {
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
    match kefu_server::start_on(config, listener).await {
        Ok(running) => {
            let api_base = format!("http://{}", running.addr);
            (Some(running), Status::Running { api_base })
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
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents")
        .fetch_one(&state.db)
        .await
        .map_err(|e| e.to_string())?;
    Ok(count == 0)
}

/// Creates the owner (an admin), only while there is no agent at all.
pub async fn create_owner(
    state: &AppState,
    username: String,
    password: String,
    display_name: Option<String>,
) -> Result<(), String> {
    if !needs_setup(state).await? {
        return Err("the owner account exists already".into());
    }
    kefu_server::agents::create(
        &state.db,
        kefu_server::agents::NewAgent {
            username,
            password,
            display_name,
            role: kefu_server::agents::Role::Admin,
        },
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs_on_free_port() -> Prefs {
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
        assert_eq!(
            status,
            Status::Running {
                api_base: format!("http://127.0.0.1:{}", prefs.port)
            }
        );
        assert!(needs_setup(running.state()).await.unwrap());
        create_owner(
            running.state(),
            "owner".into(),
            "correct horse 1".into(),
            None,
        )
        .await
        .unwrap();
        assert!(!needs_setup(running.state()).await.unwrap());
        let again = create_owner(
            running.state(),
            "second".into(),
            "correct horse 2".into(),
            None,
        )
        .await;
        assert!(again.is_err());
        running.shutdown().await.unwrap();
        // The stores were closed: they open again at once.
        let (running, _) = start(&prefs, &dirs).await;
        let running = running.unwrap();
        assert!(!needs_setup(running.state()).await.unwrap());
        running.shutdown().await.unwrap();
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
