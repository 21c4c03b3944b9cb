//! Kefu's server: the whole service as a library. The headless binary
//! (`main.rs`) and the desktop app are thin shells over [`start`].
//!
//! See docs/ARCHITECTURE.md for the map of modules and their invariants.

pub mod agents;
#[cfg(feature = "ts")]
pub mod api_types;
pub mod app_settings;
pub mod apps;
pub mod assist;
pub mod attachments;
pub mod audit;
pub mod auth;
pub mod canned;
pub mod change;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod conversations;
pub mod error;
pub mod export;
pub mod fault;
pub mod http;
pub mod hub;
pub mod ids;
pub mod lan;
pub mod message;
pub mod metrics;
pub mod ops;
pub mod reads;
pub mod reports;
pub mod routing;
pub mod search;
pub mod state;
pub mod store;
pub mod tickets;
pub mod time;
pub mod ui;
pub mod visitors;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use conversations::{ConversationCache, Derived};
use hub::Hub;
use metrics::Metrics;
use state::{AppState, Kefu, Limiters};
use store::messages::MessageLog;

/// Directory of the message log inside the data dir.
pub const LOG_DIR: &str = "messages";

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    /// The LAN listener's address (TLS), when `lan.bind` is set.
    pub lan_addr: Option<SocketAddr>,
    /// The public listener's address, when `http.public_bind` is set.
    pub public_addr: Option<SocketAddr>,
    /// The metrics listener's address, when `http.metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    state: AppState,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Graceful stop: no new connections, requests in flight finish,
    /// sockets closed with 1001 and every WebSocket task awaited (close
    /// frame written, linger over, socket dropped), then the log writer
    /// drained and closed and derived columns flushed. Connections
    /// still open after `http.shutdown_timeout_secs` are dropped, so this
    /// returns in bounded time whatever the clients do.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.shutdown.cancel();
        self.task.await.context("server task panicked")?
    }

    /// Runs until the server stops (its shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }
}

/// Opens the stores under `config.data_dir`, binds `config.bind` and serves.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.bind).await.with_context(|| {
        format!(
            "cannot listen on {} (is another Kefu running there?)",
            config.bind
        )
    })?;
    start_on(config, listener).await
}

/// As [`start`], on a listener the caller bound.
pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    config.validate().map_err(anyhow::Error::msg)?;
    // A data dir halfway through `lan takeover` holds half of two stores.
    lan::takeover::refuse_unfinished(&config.data_dir)?;
    let addr = listener.local_addr()?;
    // The LAN listener (TLS only) is bound before the term is written, so
    // a port in use stops start-up before anything changed.
    let lan_listener = match config.lan.bind {
        Some(bind) => Some(
            TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on the LAN address {bind} (lan.bind)"))?,
        ),
        None => None,
    };
    let lan_addr = lan_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let public = http::public::bind(&config).await?;
    let public_addr = public
        .as_ref()
        .map(|(listener, _)| listener.local_addr())
        .transpose()?;
    let metrics_listener = http::metrics_listener::bind(&config).await?;
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let (state, background) = open_state(config, lan_addr).await?;
    let router = http::router(Arc::clone(&state));
    // The command line finds this server (and its operator token) here.
    if let Err(error) = ops::runtime::started(&state.config.data_dir, addr, state.ops.token()) {
        state.shutdown.cancel();
        return Err(anyhow::Error::new(error).context("cannot write server.json into the data dir"));
    }
    // One set of connection slots for both listeners (http.max_connections).
    let slots = http::serve::slots(&state.config.http);
    let lan_task = match (lan_listener, state.lan.clone()) {
        (Some(listener), Some(host)) => {
            let router = http::lan_router(Arc::clone(&state));
            let http_config = state.config.http.clone();
            let shutdown = state.shutdown.clone();
            let slots = Arc::clone(&slots);
            Some(tokio::spawn(async move {
                let handshake = Arc::new(host.handshake());
                let deadline = http::serve::serve_with(
                    listener,
                    handshake,
                    router,
                    &http_config,
                    shutdown,
                    slots,
                )
                .await;
                host.stop_announcing().await;
                deadline
            }))
        }
        _ => None,
    };
    let public_task = public.map(|(listener, tls)| {
        let router = http::public_router(Arc::clone(&state));
        let http_config = state.config.http.clone();
        let shutdown = state.shutdown.clone();
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            http::public::serve(listener, tls, router, &http_config, shutdown, slots).await
        })
    });
    let metrics_task = metrics_listener.map(|listener| {
        tokio::spawn(http::metrics_listener::serve(
            listener,
            Arc::clone(&state),
            state.shutdown.clone(),
        ))
    });
    let serving = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let shutdown = serving.shutdown.clone();
        // Returns once the shutdown token is cancelled and the HTTP
        // connections are done (or dropped at the deadline).
        let deadline = http::serve::serve_with(
            listener,
            Arc::new(http::serve::Plain),
            router,
            &serving.config.http,
            shutdown,
            slots,
        )
        .await;
        // Also reached when serving stopped on its own: stop everything else too.
        serving.shutdown.cancel();
        let deadline = match lan_task {
            Some(lan) => match lan.await {
                Ok(lan_deadline) => lan_deadline.max(deadline),
                Err(error) => {
                    tracing::error!(%error, "LAN listener task failed");
                    deadline
                }
            },
            None => deadline,
        };
        let deadline = match public_task {
            Some(public) => match public.await {
                Ok(public_deadline) => public_deadline.max(deadline),
                Err(error) => {
                    tracing::error!(%error, "public listener task failed");
                    deadline
                }
            },
            None => deadline,
        };
        let deadline = match metrics_task {
            Some(metrics) => match metrics.await {
                Ok(metrics_deadline) => metrics_deadline.max(deadline),
                Err(error) => {
                    tracing::error!(%error, "metrics listener task failed");
                    deadline
                }
            },
            None => deadline,
        };
        // Sockets were told to close (1001) by the hub; give their tasks
        // until the same deadline to end (close frame, linger, socket
        // dropped), so that nothing they do meets a closed log and none
        // keeps the store open after this returns.
        websockets_closed(&serving, deadline).await;
        // The indexer holds the state (and so the log): let it finish its
        // batch, so that the store is closed when this task returns.
        if let Err(error) = background.indexer.await {
            tracing::error!(%error, "search indexer task failed");
        }
        // The starter finishes the starts waiting (their events go to the
        // log); any it cannot are done at the next start from the log.
        if let Err(error) = background.starter.await {
            tracing::error!(%error, "conversation starter task failed");
        }
        for (name, task) in [
            ("intent trainer", background.trainer),
            ("urgency watcher", background.watcher),
        ] {
            if let Err(error) = task.await {
                tracing::error!(%error, "{name} task failed");
            }
        }
        serving.log.close().await;
        if let Err(error) = serving.derived.flush(&serving.db).await {
            tracing::error!(%error, "final flush of derived columns failed");
        }
        serving.db.close().await;
        ops::runtime::stopped(&serving.config.data_dir, serving.ops.token());
        tracing::info!("stopped");
        Ok(())
    });
    tracing::info!(%addr, data_dir = %state.config.data_dir.display(), durability = ?state.config.durability, "kefu listening");
    if let Some(public) = public_addr {
        tracing::info!(%public, "public listener (visitors only)");
    }
    if let Some(metrics) = metrics_addr {
        tracing::info!(%metrics, "metrics listener");
    }
    Ok(Running {
        addr,
        lan_addr,
        public_addr,
        metrics_addr,
        state,
        task,
    })
}

/// Waits until every WebSocket task has ended (its socket closed, its
/// linger over), or the deadline; then says how many were left.
async fn websockets_closed(state: &Kefu, deadline: tokio::time::Instant) {
    state.websocket_tasks.close();
    let ended = tokio::time::timeout_at(deadline, state.websocket_tasks.wait());
    if ended.await.is_err() {
        let open = state.websocket_tasks.len();
        tracing::warn!(
            open,
            "WebSocket tasks still running at the shutdown deadline"
        );
    }
}

/// The background tasks the serving task waits for before it closes the log.
struct Background {
    indexer: JoinHandle<()>,
    starter: JoinHandle<()>,
    /// Kefu Assist's intent trainer (its own thread and SQLite connection)
    /// and urgency watcher.
    trainer: JoinHandle<()>,
    watcher: JoinHandle<()>,
}

async fn open_state(
    config: Config,
    lan_addr: Option<SocketAddr>,
) -> anyhow::Result<(AppState, Background)> {
    let db = store::db::open_sized(&config.data_dir, config.memory.sqlite()).await?;
    // As host, the term is written (fsynced) before the first write to the
    // shop's data (lan::host).
    let lan = match lan_addr {
        Some(addr) => Some(Arc::new(
            lan::host::LanHost::open(&config, &db, addr)
                .await
                .context("starting the LAN host")?,
        )),
        None => None,
    };
    attachments::clean_incoming(&config.data_dir);
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(
        config.limits.ws_outbound_queue,
        Arc::clone(&metrics),
    ));
    let derived = Arc::new(Derived::default());
    let indexer = Arc::new(search::Indexer::default());
    let starts = Arc::new(conversations::start::Starts::default());
    let assist = Arc::new(assist::Assist::default());
    let on_commit = {
        let hub = Arc::clone(&hub);
        let derived = Arc::clone(&derived);
        let indexer = Arc::clone(&indexer);
        let starts = Arc::clone(&starts);
        let assist = Arc::clone(&assist);
        // A LAN host's standbys long-poll the log's tail (lan::sync_standby).
        let lan = lan.clone();
        Box::new(
            move |messages: &[(Arc<store::messages::StoredMessage>, Option<u64>)]| {
                if let Some(lan) = &lan {
                    lan.sync.log_advanced();
                }
                hub.publish_messages(messages);
                derived.mark(messages);
                indexer.mark(messages);
                starts.mark(messages);
                // After `starts`: the bot waits for a start it is handed.
                assist.mark(messages);
                assist.watcher.mark(messages);
            },
        )
    };
    let log_path = config.data_dir.join(LOG_DIR);
    let log = MessageLog::open_sized(
        &log_path,
        config.durability,
        config.limits.writer_queue,
        config.limits.writer_batch_max,
        Arc::clone(&metrics) as Arc<dyn store::messages::LogMetrics>,
        on_commit,
        config.memory.log(),
    )
    .with_context(|| format!("cannot open the message log at {}", log_path.display()))?;
    store::reconcile::to_log(&db, &log)
        .await
        .context("bringing SQLite back to the message log")?;
    let state = Arc::new(Kefu {
        limiters: Limiters::new(&config),
        connection_slots: Arc::new(Semaphore::new(config.limits.max_connections)),
        websocket_tasks: tokio_util::task::TaskTracker::new(),
        auth_cache: crate::auth::cache::AuthCache::new(config.limits.auth_cache_entries),
        visitor_send_rate: message::rate::VisitorSendRate::new(&config.limits),
        config,
        db,
        log,
        hub,
        metrics,
        conversations: ConversationCache::default(),
        derived: Arc::clone(&derived),
        starts,
        routing: routing::Routing::default(),
        shutdown: CancellationToken::new(),
        dummy_password_hash: tokio::sync::OnceCell::new(),
        ops: ops::Ops::new(),
        lan,
        assist,
        indexer: Arc::clone(&indexer),
    });
    tokio::spawn(derived.run(state.db.clone(), state.shutdown.clone()));
    // A retired LAN host (another device took the shop over) writes
    // nothing in its stale term: its log is closed before anything could
    // append (it serves the new host's reconciliation, lan::host).
    let retired = state
        .lan
        .as_deref()
        .is_some_and(lan::host::LanHost::gate_closed_for_good);
    if retired {
        state.log.close().await;
    } else {
        // Starts a crash interrupted are completed before anything is
        // served; then the starter follows the log (conversations/start.rs).
        assist::prepare(&state).await?;
        conversations::start::recover(&state)
            .await
            .context("completing interrupted conversation starts")?;
    }
    let starter = tokio::spawn(conversations::start::run(Arc::clone(&state)));
    // The FAQ bot follows the log like the starter (assist/bot.rs).
    if !retired {
        assist::recover(&state)
            .await
            .context("loading the chats the Assist bot holds")?;
    }
    tokio::spawn(assist::bot::run(Arc::clone(&state)));
    // Reply suggestions learn from resolved chats on an idle thread.
    assist::suggest::spawn(Arc::clone(&state));
    // Intents and urgency (assist/trainer.rs, assist/insight.rs).
    let trainer = assist::trainer::spawn(Arc::clone(&state));
    let watcher = tokio::spawn(assist::insight::run(Arc::clone(&state)));
    // WebSocket connections learn of the shutdown through their outboxes.
    tokio::spawn({
        let hub = Arc::clone(&state.hub);
        let shutdown = state.shutdown.clone();
        async move {
            shutdown.cancelled().await;
            hub.close_all();
        }
    });
    // The search index catches up with the log in the background, then
    // follows it (see search.rs).
    let indexer = search::spawn(indexer, Arc::clone(&state));
    tokio::spawn(housekeeping(Arc::clone(&state)));
    tokio::spawn(routing::presence::run(Arc::clone(&state)));
    tokio::spawn(ops::schedule::run(Arc::clone(&state)));
    // Served conversations overlay the log's head, so the derived columns
    // only order lists: rebuild them behind the first requests instead of
    // before them, keeping start-up fast however large the store.
    tokio::spawn(rebuild_derived(Arc::clone(&state)));
    // A host that took the shop over re-sends the old host's writes past
    // the fork once it is fenced (lan/fork.rs).
    if state.lan.is_some() {
        tokio::spawn(lan::fork::run(Arc::clone(&state)));
    }
    Ok((
        state,
        Background {
            indexer,
            starter,
            trainer,
            watcher,
        },
    ))
}

async fn rebuild_derived(state: AppState) {
    let reading = Arc::clone(&state);
    let heads = match tokio::task::spawn_blocking(move || reading.log.heads()).await {
        Ok(Ok(heads)) => heads,
        Ok(Err(error)) => return tracing::error!(%error, "reading conversation heads failed"),
        Err(error) => return tracing::error!(%error, "reading conversation heads panicked"),
    };
    match conversations::apply_heads(&state.db, heads.into_iter()).await {
        Ok(count) => tracing::debug!(
            conversations = count,
            "derived columns rebuilt from the log"
        ),
        Err(error) if state.shutdown.is_cancelled() => {
            tracing::debug!(%error, "rebuild cut short by shutdown")
        }
        Err(error) => tracing::error!(%error, "rebuilding derived columns failed"),
    }
}

async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                state.limiters.housekeeping();
                state.visitor_send_rate.housekeeping();
                if let Some(lan) = &state.lan {
                    lan.housekeeping();
                }
            }
            _ = state.shutdown.cancelled() => break,
        }
    }
}
