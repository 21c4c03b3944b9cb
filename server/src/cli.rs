//! The command line of `kefu-server`: parses arguments, sets up logging and
//! calls the library. Lives in the library so that the binary stays one
//! line and the black-box tests can build the very same CLI.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Durability, LogFormat, Overrides};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kefu-server",
    version,
    about = "Kefu: self-hosted live chat and tickets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportWhat {
    Messages,
    Tickets,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "ADDR")]
        bind: Option<std::net::SocketAddr>,
        /// Host the shop on the LAN: also listen here, TLS only
        /// (`lan.bind`, e.g. 0.0.0.0:5339; docs/LAN.md).
        #[arg(long, value_name = "ADDR:PORT")]
        lan_bind: Option<std::net::SocketAddr>,
        /// Also serve visitors (only) here, for a tunnel or reverse proxy
        /// (`http.public_bind`; docs/LAN.md, "Visitors").
        #[arg(long, value_name = "ADDR:PORT", conflicts_with = "peer_of")]
        public_bind: Option<std::net::SocketAddr>,
        /// Serve `/metrics` on a listener of its own (`http.metrics_bind`):
        /// a port alone means 127.0.0.1:PORT (docs/OPERATIONS.md).
        #[arg(long, value_name = "[ADDR:]PORT")]
        metrics_bind: Option<crate::config::MetricsBind>,
        /// Join the shop as a peer of the host at HOST:PORT (`lan.peer_of`):
        /// keep no shop data, relay the API and the WebSocket to the host
        /// pinned by `lan pair` (docs/LAN.md, "Peer mode").
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "lan_bind")]
        peer_of: Option<crate::lan::HostAddress>,
        /// As LAN host, acknowledge a send only once a standby has it too
        /// (1) or once it is durable here (0, the default)
        /// (`lan.min_standby_acks`; docs/LAN.md, "The synchronous standby").
        #[arg(long, value_name = "0|1")]
        min_standby_acks: Option<u32>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
        /// os: ack after the write reaches the OS; fsync: after it is on disk.
        #[arg(long, value_enum)]
        durability: Option<DurabilityArg>,
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
        /// Print the effective configuration (TOML) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Administration that works with or without a running server.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// LAN hosting (docs/LAN.md).
    Lan {
        #[command(subcommand)]
        command: LanCommand,
    },
    /// Write a backup to DIR (which must not exist): asks the running server
    /// to make it, or makes it itself when none runs (docs/OPERATIONS.md).
    Backup {
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Export messages or tickets, of one conversation or of a date range,
    /// as JSON Lines or CSV: asks the running server, or starts a private
    /// one on loopback when none runs (docs/OPERATIONS.md, "Export").
    Export {
        /// `messages` or `tickets`.
        #[arg(value_enum)]
        what: ExportWhat,
        /// One conversation's messages (messages only).
        #[arg(long, value_name = "ID", conflicts_with_all = ["from", "to"])]
        conversation: Option<String>,
        /// Start of the range: RFC 3339 or YYYY-MM-DD (UTC midnight).
        #[arg(long, value_name = "TIME", requires = "to")]
        from: Option<String>,
        /// End of the range (excluded): RFC 3339 or YYYY-MM-DD.
        #[arg(long, value_name = "TIME", requires = "from")]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// The file to write (must not exist); `-` or absent: stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// A CPU flame graph (SVG) of the running server over SECONDS, in a
    /// build with the `pprof` feature (docs/OPERATIONS.md, "Profiling").
    Profile {
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        seconds: u64,
        /// The SVG file to write (must not exist); `-` or absent: stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a backup: manifest, checksums, SQLite integrity, the message
    /// log, and that the log holds everything SQLite references.
    VerifyBackup {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Restore a backup into the data dir (no server may run on it); the
    /// data dir that was there is kept as DIR.before-restore-<time>.
    Restore {
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Numbered checks of the data dir and configuration; exits non-zero
    /// when one fails. Safe beside a running server (reads only).
    Doctor {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// For container health checks: GET /readyz of the configured bind
    /// address (or --url); exit 0 when ready, 1 otherwise.
    Healthcheck {
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        timeout_secs: u64,
    },
}

#[derive(Subcommand)]
enum LanCommand {
    /// Print this device's ID, making its identity (key and certificate in
    /// DATA_DIR/lan) on first use.
    Identity {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Pair this device with a host as a peer: prints the pairing code,
    /// waits until an admin approves it on the host, then pins the host's
    /// key in DATA_DIR/lan/state.json.
    Pair {
        /// The host's LAN address, IP:PORT.
        #[arg(long, value_name = "HOST:PORT", required_unless_present = "link")]
        host: Option<crate::lan::HostAddress>,
        /// The host's device ID, when known (from its pairing link): then
        /// only that key is accepted, even at first contact.
        #[arg(long, value_name = "DEVICE_ID")]
        id: Option<crate::lan::DeviceId>,
        /// The host's pairing link, `kefu://pair?host=…&id=…` (what the
        /// host's `lan link` or admin status shows): its address, and its
        /// device ID pinned from the first connection.
        #[arg(long, value_name = "URL", conflicts_with_all = ["host", "id"])]
        link: Option<crate::lan::pairing::PairingLink>,
        /// This device's name in the host's list.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// As a paired peer: keep a copy of the shop (DATA_DIR/replica) in
    /// step with the host, once an admin made this device a standby on
    /// the host. Runs until stopped.
    ///
    /// With `--lan-bind` (or `lan.bind` in the config), a standby granted
    /// the shop by a planned handover goes on as the host in the same
    /// process, as `serve --lan-bind` would (docs/LAN.md, "Planned
    /// handover"); without one it ends, saying how to serve.
    Standby {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
        /// Once granted the shop: the API's listener (`bind`).
        #[arg(long, value_name = "ADDR")]
        bind: Option<std::net::SocketAddr>,
        /// Once granted the shop: host it on the LAN here (`lan.bind`).
        #[arg(long, value_name = "ADDR:PORT")]
        lan_bind: Option<std::net::SocketAddr>,
        /// Once granted the shop: serve visitors here too
        /// (`http.public_bind`).
        #[arg(long, value_name = "ADDR:PORT")]
        public_bind: Option<std::net::SocketAddr>,
        #[arg(long, value_enum)]
        durability: Option<DurabilityArg>,
    },
    /// As a running standby ("make this computer the host"): ask the host
    /// for a planned handover to this device; `lan standby` catches up
    /// and ends as the new host.
    Handover {
        /// Where this computer will serve the shop (its `--lan-bind`
        /// address as the others reach it), told to the old host's devices.
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<crate::lan::HostAddress>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// As a stopped standby: take the shop over from a host that is gone
    /// (writes the next term), saying how far behind the copy was.
    Takeover {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// As a host: print the `kefu://pair` link a peer pairs with (`lan
    /// pair --link`): the address (lan.bind, or --address when that is
    /// 0.0.0.0) and this device's ID. No secrets.
    Link {
        /// The address peers reach this host at, when lan.bind does not say.
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<crate::lan::HostAddress>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Set the shop's name announced over mDNS (1-63 bytes): a running
    /// server on DATA_DIR re-announces it at once; otherwise it is kept in
    /// DATA_DIR/lan/state.json for the next start.
    ShopName {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// As a peer: connect to the pinned host, checking its key, and print
    /// this device's status there.
    Check {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin agent.
    Create {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE", env = "KEFU_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        username: String,
        /// The password; prefer --password-stdin, which keeps it out of `ps`.
        #[arg(
            long,
            required_unless_present = "password_stdin",
            conflicts_with = "password_stdin"
        )]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        display_name: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DurabilityArg {
    Os,
    Fsync,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Os => Durability::Os,
            DurabilityArg::Fsync => Durability::Fsync,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

/// Runs the CLI with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // Waits for every task and blocking thread: whatever wrote has finished
    // (for `serve`, the log and SQLite are closed and synced: "stopped").
    drop(runtime);
    end_process(code)
}

/// Everything of ours has ended here; on Windows the process ends without
/// the C runtime's exit. Returning from `main` goes through MinGW's `exit()`,
/// which runs the C++ static destructors (RocksDB's default environment
/// joins its background pool there); under Wine that exit was seen to hang
/// for minutes after "stopped". `std::process::exit` is `ExitProcess` on
/// Windows: it skips them, and they have nothing left to do, every database
/// having been closed (its background work waited for) by then.
/// docs/DESKTOP.md, "Windows".
#[cfg(windows)]
fn end_process(code: ExitCode) -> ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 })
}

#[cfg(not(windows))]
fn end_process(code: ExitCode) -> ExitCode {
    code
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            data_dir,
            bind,
            lan_bind,
            public_bind,
            metrics_bind,
            peer_of,
            min_standby_acks,
            config,
            durability,
            log_format,
            print_config,
        } => {
            let overrides = Overrides {
                bind,
                data_dir,
                durability: durability.map(Durability::from),
                log_format: log_format.map(|f| match f {
                    LogFormatArg::Human => LogFormat::Human,
                    LogFormatArg::Json => LogFormat::Json,
                }),
                lan: (lan_bind.is_some() || peer_of.is_some() || min_standby_acks.is_some())
                    .then_some(crate::config::LanOverrides {
                        bind: lan_bind,
                        peer_of,
                        min_standby_acks,
                    }),
                http: (public_bind.is_some() || metrics_bind.is_some()).then_some(
                    crate::config::HttpOverrides {
                        public_bind,
                        metrics_bind,
                    },
                ),
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            if print_config {
                print!("{}", config.to_toml());
                return Ok(());
            }
            init_logging(&config);
            raise_open_files_limit();
            // Listen for signals before the server answers anything: a
            // SIGTERM that comes right after start-up must stop it gracefully.
            let signals = Signals::listen();
            if config.lan.peer_of.is_some() {
                let running = crate::lan::peer::start(config.clone()).await?;
                let became_host = running.became_host();
                let token = running.shutdown_token();
                crate::ops::notify::ready(running.addr);
                crate::ops::notify::spawn_watchdog(None, token.clone());
                tokio::spawn(async move {
                    signals.wait().await;
                    tracing::info!("shutting down");
                    crate::ops::notify::stopping();
                    token.cancel();
                });
                running.wait().await?;
                let Some(host) = became_host.lock().clone() else {
                    return Ok(());
                };
                // This device took the shop over (or was handed it) from
                // its Settings → LAN: serve it as the host, on the same
                // loopback address, on the LAN where the admin said.
                let mut config = config;
                config.lan.peer_of = None;
                config.lan.bind = host.lan_bind.or(config.lan.bind);
                if config.lan.bind.is_none() {
                    eprintln!(
                        "this computer is now the shop's host (term {}): start serving with \
                         kefu-server serve --lan-bind ADDRESS",
                        host.term
                    );
                    return Ok(());
                }
                tracing::warn!(term = host.term, lan = ?config.lan.bind, "serving the shop as its host");
                return serve_host(config, Signals::listen()).await;
            }
            serve_host(config, signals).await
        }
        Command::Backup {
            to,
            data_dir,
            config,
        } => crate::ops::cli::backup(load(config, data_dir)?, to).await,
        Command::VerifyBackup { dir } => crate::ops::cli::verify(dir).await,
        Command::Profile {
            seconds,
            out,
            data_dir,
            config,
        } => crate::ops::export::profile(load(config, data_dir)?, seconds, out).await,
        Command::Export {
            what,
            conversation,
            from,
            to,
            format,
            out,
            data_dir,
            config,
        } => {
            let request = crate::ops::export::Request::new(
                match what {
                    ExportWhat::Messages => "messages",
                    ExportWhat::Tickets => "tickets",
                },
                conversation,
                from.as_deref().zip(to.as_deref()),
                match format {
                    ExportFormat::Jsonl => "jsonl",
                    ExportFormat::Csv => "csv",
                },
            )?;
            crate::ops::export::run(load(config, data_dir)?, request, out).await
        }
        Command::Restore {
            from,
            data_dir,
            config,
        } => crate::ops::cli::restore(load(config, data_dir)?, from).await,
        Command::Doctor { data_dir, config } => {
            crate::ops::cli::doctor(load(config, data_dir)?).await
        }
        Command::Healthcheck {
            url,
            config,
            timeout_secs,
        } => crate::ops::cli::healthcheck(load(config, None)?, url, timeout_secs).await,
        Command::Lan {
            command: LanCommand::Identity { data_dir, config },
        } => {
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            lan_identity(config.data_dir).await
        }
        Command::Lan {
            command:
                LanCommand::Pair {
                    host,
                    id,
                    link,
                    name,
                    data_dir,
                    config,
                },
        } => {
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            let (host, id) = match (link, host) {
                (Some(link), _) => (link.host, Some(link.device_id)),
                (None, Some(host)) => (host, id),
                (None, None) => anyhow::bail!("give --host HOST:PORT or --link URL"),
            };
            crate::lan::cli::pair(config.data_dir, host, id, name).await
        }
        Command::Lan {
            command:
                LanCommand::Link {
                    address,
                    data_dir,
                    config,
                },
        } => {
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            crate::lan::cli::link(&config, address).await
        }
        Command::Lan {
            command:
                LanCommand::ShopName {
                    name,
                    data_dir,
                    config,
                },
        } => crate::lan::cli::shop_name(load(config, data_dir)?, name).await,
        Command::Lan {
            command:
                LanCommand::Standby {
                    data_dir,
                    config,
                    bind,
                    lan_bind,
                    public_bind,
                    durability,
                },
        } => {
            let overrides = Overrides {
                bind,
                data_dir,
                durability: durability.map(Durability::from),
                lan: lan_bind.map(|bind| crate::config::LanOverrides {
                    bind: Some(bind),
                    ..crate::config::LanOverrides::default()
                }),
                http: public_bind.map(|public_bind| crate::config::HttpOverrides {
                    public_bind: Some(public_bind),
                    metrics_bind: None,
                }),
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            let serves = config.lan.bind.is_some() && config.lan.peer_of.is_none();
            if serves {
                init_logging(&config);
                raise_open_files_limit();
            }
            match crate::lan::standby::run(config.data_dir.clone()).await? {
                crate::lan::standby::Ended::Stopped => Ok(()),
                crate::lan::standby::Ended::Host { .. } if serves => {
                    // The granted copy is the shop now: serve it here.
                    serve_host(config, Signals::listen()).await
                }
                crate::lan::standby::Ended::Host { .. } => {
                    eprintln!(
                        "Start serving with kefu-server serve --lan-bind ADDRESS (or run lan \
                         standby with --lan-bind to go on serving by itself)."
                    );
                    Ok(())
                }
            }
        }
        Command::Lan {
            command:
                LanCommand::Handover {
                    address,
                    data_dir,
                    config,
                },
        } => crate::lan::cli::handover(load(config, data_dir)?.data_dir, address).await,
        Command::Lan {
            command: LanCommand::Takeover { data_dir, config },
        } => crate::lan::takeover::takeover(load(config, data_dir)?.data_dir).await,
        Command::Lan {
            command: LanCommand::Check { data_dir, config },
        } => {
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            crate::lan::cli::check(config.data_dir).await
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    data_dir,
                    config,
                    username,
                    password,
                    password_stdin: _,
                    display_name,
                },
        } => {
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let config = Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
            let password = match password {
                Some(password) => password,
                None => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let db = crate::store::db::open(&config.data_dir).await?;
            let created = crate::agents::create_by(
                &db,
                None,
                crate::agents::NewAgent {
                    username,
                    password,
                    display_name,
                    role: crate::agents::Role::Admin,
                },
            )
            .await;
            db.close().await;
            let agent = created.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created admin {} ({}) in {}",
                agent.username,
                agent.id,
                config.data_dir.display()
            );
            Ok(())
        }
    }
}

/// The configuration with only the data dir overridden (the ops commands).
/// Serves the shop (not as a peer) until a signal: `serve`, and a
/// standby granted the shop by a planned handover.
async fn serve_host(config: Config, signals: Signals) -> anyhow::Result<()> {
    let running = crate::start(config).await?;
    let token = running.shutdown_token();
    // Listeners bound, stores open: ready for systemd (Type=notify).
    crate::ops::notify::ready(running.addr);
    crate::ops::notify::spawn_watchdog(Some(running.state().clone()), token.clone());
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutting down");
        crate::ops::notify::stopping();
        token.cancel();
    });
    running.wait().await
}

fn load(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir,
        ..Overrides::default()
    };
    Config::load(config.as_deref(), &overrides).map_err(anyhow::Error::msg)
}

/// `lan identity`: the ID on stdout (alone, for scripts), news on stderr.
async fn lan_identity(data_dir: PathBuf) -> anyhow::Result<()> {
    let dir = data_dir.clone();
    let (identity, origin) =
        tokio::task::spawn_blocking(move || crate::lan::Identity::open(&dir)).await??;
    match origin {
        crate::lan::identity::IdentityOrigin::Created => eprintln!(
            "created a new device identity in {}",
            data_dir.join(crate::lan::identity::LAN_DIR).display()
        ),
        crate::lan::identity::IdentityOrigin::Reissued => {
            eprintln!("re-issued the device certificate (same key, same ID)")
        }
        crate::lan::identity::IdentityOrigin::Loaded => {}
    }
    println!("{}", identity.device_id());
    Ok(())
}

/// Every WebSocket is a file descriptor: lift the soft limit (often 1024) to
/// the hard limit the OS allows, as servers that hold many connections do.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
}

#[cfg(not(all(feature = "tokio-console", debug_assertions)))]
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// A debug build with the `tokio-console` feature: the console's layer (all
/// of tokio's task events, served on 127.0.0.1:6669 unless
/// `TOKIO_CONSOLE_BIND` says otherwise) beside the log, which keeps its
/// filter. docs/OPERATIONS.md, "Profiling".
#[cfg(all(feature = "tokio-console", debug_assertions))]
fn init_logging(config: &Config) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let log = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let log = match config.log_format {
        LogFormat::Json => log.json().with_filter(filter).boxed(),
        LogFormat::Human => log.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(console_subscriber::spawn())
        .with(log)
        .init();
}

// The console's instrumentation is not for a release build.
#[cfg(all(feature = "tokio-console", not(debug_assertions)))]
compile_error!("the tokio-console feature is for debug builds (docs/OPERATIONS.md, Profiling)");

/// SIGTERM and SIGINT (ctrl-c), registered when created. On Windows the
/// console's events: Ctrl+C, Ctrl+Break, the console window closed, and
/// log-off or shut-down (what a service wrapper or `taskkill` without `/F`
/// sends a console program).
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    console: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Signals {
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            // Each stream is registered here, at once; its future only
            // waits for the event.
            macro_rules! event {
                ($register:expr) => {
                    $register.ok().map(|mut stream| {
                        Box::pin(async move {
                            stream.recv().await;
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
                    })
                };
            }
            let console = [
                event!(windows::ctrl_c()),
                event!(windows::ctrl_break()),
                event!(windows::ctrl_close()),
                event!(windows::ctrl_logoff()),
                event!(windows::ctrl_shutdown()),
            ];
            Signals {
                console: console.into_iter().flatten().collect(),
            }
        }
        #[cfg(not(any(unix, windows)))]
        Signals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {}
                _ = next(self.int) => {}
            }
        }
        #[cfg(windows)]
        {
            if self.console.is_empty() {
                std::future::pending::<()>().await;
            }
            futures_util::future::select_all(self.console).await;
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
