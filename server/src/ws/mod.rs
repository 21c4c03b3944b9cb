//! The WebSocket door (`GET /api/v1/ws`, whose handler is in `routes`):
//! one task per connection. The hub (`crate::hub`) keeps who is connected
//! and fans frames out; this module is a connection's side of it.
//!
//! Life of a connection: the upgrade is refused past `max_connections`
//! (503) or, when `?app_key=` is given, for an origin the app does not allow
//! (403). Then the client has `hello_timeout` to send `hello` with a valid
//! token (else close 4401). The connection is registered in the hub *before*
//! the catch-up is read, so nothing committed meanwhile is missed; live
//! frames of a resumed conversation wait in the bounded queue and copies of
//! what the catch-up already sent are dropped by seq. So every party sees
//! each message once, in seq order, catch-up first.
//!
//! Sends are pipelined: up to `ws_sends_in_flight` wait for their ack while
//! the connection keeps delivering frames; past that the server stops
//! reading from this client (back-pressure) until acks go out.
//!
//! Every write has a deadline (`ws.write_timeout_secs`): a client that
//! reads nothing cannot pin its task. Every close goes through
//! [`socket::send_close`] and then [`socket::linger`], so that the close
//! frame reaches the client (lingering outside the hub and outside
//! `max_connections`);
//! a frame over the limit is closed with 1009, a breach of the protocol
//! with 1002, a text frame that is not UTF-8 with 1007. A connection whose
//! token is revoked (logout, password change, …) is closed with 4401.

pub mod inbound;
pub mod routes;
pub mod socket;

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant as TokioInstant;
use tungstenite::Message as WsMessage;
use tungstenite::protocol::WebSocketConfig;

use crate::auth::tag::TokenTag;
use crate::auth::{self, Principal};
use crate::conversations::{self, Author};
use crate::error::ApiError;
use crate::hub::Party;
use crate::hub::frames::{self, Frame};
use crate::hub::outbox::{Next, Outbox};
use crate::ids::ConversationId;
use crate::message;
use crate::state::AppState;
use inbound::ClientFrame;
pub use socket::{
    CLOSE_FORBIDDEN, CLOSE_GOING_AWAY, CLOSE_IDLE, CLOSE_INTERNAL, CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL, CLOSE_SLOW, CLOSE_TOO_BIG, CLOSE_UNAUTHORIZED,
};
use socket::{Socket, Written, within, within_unless};

/// How long the close frame of a connection dropped as too slow may take:
/// its client is not reading, so this is short.
const SLOW_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The WebSocket settings of a connection: the read buffer and frame
/// limits from the configuration.
pub(crate) fn config(state: &AppState) -> WebSocketConfig {
    let limits = &state.config.limits;
    WebSocketConfig::default()
        .read_buffer_size(state.config.ws.read_buffer_bytes)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(limits.ws_frame_bytes))
        .max_frame_size(Some(limits.ws_frame_bytes))
}

/// Serves one upgraded connection until it ends (the door is
/// `routes::upgrade`).
pub(crate) async fn serve(
    socket: Socket,
    state: AppState,
    origin: Option<String>,
    peer: IpAddr,
    permit: OwnedSemaphorePermit,
    visitors_only: bool,
) {
    Connection::run(socket, state, origin, peer, permit, visitors_only).await;
}

/// Frames fed without a flush are written once this many bytes wait (or
/// at the flush): a burst (the acks of one log batch, an agent's queued
/// messages) goes out in a few writes rather than one per frame. Every
/// path that feeds also flushes, so nothing waits here. The buffer grows
/// to a burst's size only on connections that get bursts.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

type PendingSend = Pin<Box<dyn Future<Output = Frame> + Send>>;

struct Connection {
    socket: Socket,
    state: AppState,
    /// A close frame went out: wait for the client to close its side
    /// before dropping the socket (after unregistering).
    linger: bool,
    author: Author,
    party: Party,
    id: u64,
    /// Frames from the hub, and the kill, revocation or shutdown.
    outbox: Arc<Outbox>,
    /// Made on first use: most connections (an idle visitor) never need
    /// it, and three empty maps inline would cost each of them 144 bytes.
    per_conversation: Option<Box<PerConversation>>,
}

#[derive(Default)]
struct PerConversation {
    /// Highest seq the catch-up delivered, per resumed conversation.
    caught_up: HashMap<ConversationId, u64>,
    /// This reader's read markers as last stored through this connection.
    marked: HashMap<ConversationId, u64>,
    typing: TypingGate,
}

/// Bound of the small per-connection maps (cleared when reached).
const PER_CONNECTION_MAP_MAX: usize = 1_024;
/// A repeat of the same typing state is relayed at most this often.
const TYPING_REPEAT: Duration = Duration::from_secs(2);

/// Coalesces typing frames per connection and conversation: a change of
/// state (on ↔ off) is relayed at once; a repeat of the same state at most
/// once per [`TYPING_REPEAT`]. Clients that send `on: true` per keystroke
/// thus cost the other side a frame every 2 s, not one per key.
#[derive(Default)]
struct TypingGate {
    last: HashMap<ConversationId, (bool, Instant)>,
}

impl TypingGate {
    fn should_relay(&mut self, conversation: ConversationId, on: bool, now: Instant) -> bool {
        if let Some(&(was, at)) = self.last.get(&conversation)
            && was == on
            && now.duration_since(at) < TYPING_REPEAT
        {
            return false;
        }
        if self.last.len() >= PER_CONNECTION_MAP_MAX {
            self.last.clear();
        }
        self.last.insert(conversation, (on, now));
        true
    }
}

/// What the welcome and the catch-up need, boxed until they run.
struct Opening {
    role: &'static str,
    id: String,
    resume: HashMap<String, u64>,
    /// The `history_id` the client's cursors came from (LAN hosting).
    history_id: Option<String>,
}

enum Hello {
    /// The principal, what to resume, the token (kept until the connection
    /// is registered, to look again if a revocation raced the hello) and
    /// the auth cache's generation before the token was resolved.
    Ok {
        principal: Principal,
        resume: HashMap<String, u64>,
        history_id: Option<String>,
        token: String,
        generation: u64,
    },
    Refuse(u16, &'static str),
    /// The client closed before its hello: answer its close.
    ClientClosed,
    Gone,
}

/// A connection past its hello, not yet registered.
struct Authenticated {
    socket: Socket,
    author: Author,
    party: Party,
    role: &'static str,
    id_text: String,
    resume: HashMap<String, u64>,
    history_id: Option<String>,
    token: String,
    generation: u64,
}

impl Connection {
    async fn run(
        socket: Socket,
        state: AppState,
        origin: Option<String>,
        peer: IpAddr,
        permit: OwnedSemaphorePermit,
        visitors_only: bool,
    ) {
        let hello = match Self::authenticate(socket, &state, origin, visitors_only).await {
            Ok(hello) => hello,
            Err(closing) => {
                // A refused connection lingers outside `max_connections`.
                drop(permit);
                if let Some(mut socket) = closing {
                    Box::pin(socket::linger(&mut socket)).await;
                }
                return;
            }
        };
        let Authenticated {
            mut socket,
            author,
            party,
            role,
            id_text,
            resume,
            history_id,
            token,
            generation,
        } = hello;
        let write_timeout = Duration::from_secs(state.config.ws.write_timeout_secs);
        let registration = state.hub.register(party, TokenTag::of(&token));
        // A revocation that committed while this hello was resolving its
        // token may have looked for the token's connections before this one
        // was registered: then the cache's generation moved, and the token
        // is looked up again (see `auth::sessions`).
        if state.auth_cache.generation() != generation
            && !matches!(auth::resolve_token(&state, &token).await, Ok(Some(_)))
        {
            state.hub.unregister(registration.id);
            let sent = socket::send_close(
                &mut socket,
                CLOSE_UNAUTHORIZED,
                "session revoked",
                write_timeout,
            )
            .await;
            drop(permit);
            if sent {
                Box::pin(socket::linger(&mut socket)).await;
            }
            return;
        }
        drop(token);
        tracing::debug!(%peer, role, "websocket connected");
        let mut connection = Connection {
            socket,
            state: state.clone(),
            linger: false,
            author,
            party,
            id: registration.id,
            outbox: registration.outbox,
            per_conversation: None,
        };
        // The served loop gets a task of its own, sized for the loop alone:
        // this task, with the upgrade's and the hello's state, ends here.
        // The welcome must be written by the new task, not by this one:
        // tokio-tungstenite keeps the waker of the last task that wrote
        // (and read) the socket, and a waker keeps its task's memory
        // alive: written here, this finished task (≈ 2.8 KB) would stay
        // allocated until the first ping.
        let opening = Box::new(Opening {
            role,
            id: id_text,
            resume,
            history_id,
        });
        // In the same tracker as the upgrade's task: shutdown waits for
        // both before it closes the log.
        let tasks = state.websocket_tasks.clone();
        tasks.spawn(async move {
            let result = connection.serve(opening).await;
            state.hub.unregister(connection.id);
            if let Err(reason) = result {
                tracing::debug!(%peer, reason, "websocket closed");
            }
            // Out of the hub and out of `max_connections`: what is left is
            // a socket waiting (≤ 2 s) for its client's side of the close.
            drop(permit);
            if connection.linger {
                Box::pin(socket::linger(&mut connection.socket)).await;
            }
        });
    }

    /// The hello: the client's principal, checked against its app's
    /// allowed origins. `Err` when the connection was refused, with its
    /// socket when a close frame went out (then linger before dropping it).
    async fn authenticate(
        mut socket: Socket,
        state: &AppState,
        origin: Option<String>,
        visitors_only: bool,
    ) -> Result<Authenticated, Option<Socket>> {
        let write_timeout = Duration::from_secs(state.config.ws.write_timeout_secs);
        let hello_timeout = Duration::from_secs(state.config.ws.hello_timeout_secs);
        let hello = match tokio::time::timeout(
            hello_timeout,
            Box::pin(read_hello(&mut socket, state, visitors_only)),
        )
        .await
        {
            Ok(hello) => hello,
            Err(_) => Hello::Refuse(CLOSE_UNAUTHORIZED, "no hello in time"),
        };
        let (principal, resume, history_id, token, generation) = match hello {
            Hello::Ok {
                principal,
                resume,
                history_id,
                token,
                generation,
            } => (principal, resume, history_id, token, generation),
            Hello::Refuse(code, reason) => {
                let sent =
                    Box::pin(socket::send_close(&mut socket, code, reason, write_timeout)).await;
                return Err(sent.then_some(socket));
            }
            Hello::ClientClosed => {
                let sent = socket::answer_close(&mut socket, write_timeout).await;
                return Err(sent.then_some(socket));
            }
            Hello::Gone => return Err(None),
        };
        let (author, party, role, id_text) = match principal {
            Principal::Agent(agent) => {
                let id = agent.id.to_string();
                (
                    Author::Agent(agent.clone()),
                    Party::Agent(agent.id),
                    "agent",
                    id,
                )
            }
            Principal::Visitor(visitor) => {
                match Box::pin(state.auth_cache.app(&state.db, visitor.app_id)).await {
                    Ok(Some(app)) if app.origin_allowed(origin.as_deref()) => {}
                    Err(error) => {
                        tracing::error!(%error, "app lookup failed at hello");
                        let sent = Box::pin(socket::send_close(
                            &mut socket,
                            CLOSE_INTERNAL,
                            "internal error",
                            write_timeout,
                        ))
                        .await;
                        return Err(sent.then_some(socket));
                    }
                    Ok(_) => {
                        let refusal = frames::api_error(
                            &ApiError::forbidden("origin not allowed for this app"),
                            None,
                        );
                        let _ = within(write_timeout, socket.send(text(refusal))).await;
                        let sent = Box::pin(socket::send_close(
                            &mut socket,
                            CLOSE_FORBIDDEN,
                            "origin not allowed",
                            write_timeout,
                        ))
                        .await;
                        return Err(sent.then_some(socket));
                    }
                }
                let party = Party::Visitor {
                    visitor: visitor.visitor_id,
                    conversation: visitor.conversation_id,
                };
                let id = visitor.visitor_id.to_string();
                (Author::Visitor(visitor), party, "visitor", id)
            }
        };
        Ok(Authenticated {
            socket,
            author,
            party,
            role,
            id_text,
            resume,
            history_id,
            token,
            generation,
        })
    }

    /// The welcome, then the catch-up (in a future of its own, so that
    /// the served loop's task is not sized for them).
    async fn open(&mut self, opening: Opening) -> Result<(), &'static str> {
        // The LAN host's term, for agents (a peer's relay and its UI).
        let term = self
            .state
            .lan
            .as_ref()
            .filter(|_| opening.role == "agent")
            .map(|host| host.term);
        let Opening {
            role,
            id,
            mut resume,
            history_id,
        } = opening;
        let Some(host) = self.state.lan.as_deref() else {
            self.send(frames::welcome(role, &id, term)).await?;
            return self.catch_up(resume).await;
        };
        // A client whose cursors came from another line of the shop (an
        // old host's, before a takeover) may hold seqs past the fork: it
        // is told so, and its catch-up starts where both lines agree
        // (lan::fork::Line). A visitor only learns of its own conversation.
        let mut forked = host.line.forked(history_id.as_deref(), &resume);
        if let Author::Visitor(visitor) = &self.author {
            forked.retain(|conversation, _| *conversation == visitor.conversation_id);
        }
        if !forked.is_empty() {
            resume.retain(|conversation, _| {
                conversation
                    .parse::<ConversationId>()
                    .map_or(true, |c| !forked.contains_key(&c))
            });
            for (conversation, shared) in &forked {
                resume.insert(conversation.to_string(), *shared);
            }
        }
        self.send(frames::welcome_on_lan(
            role,
            &id,
            term,
            &host.line.id,
            &forked,
        ))
        .await?;
        self.catch_up(resume).await
    }

    async fn serve(&mut self, opening: Box<Opening>) -> Result<(), &'static str> {
        Box::pin(self.open(*opening)).await?;
        let config = &self.state.config;
        let idle_timeout = Duration::from_secs(config.ws.idle_timeout_secs);
        let ping_every = Duration::from_secs(config.ws.ping_interval_secs.max(1));
        let max_in_flight = config.limits.ws_sends_in_flight;
        let outbox = Arc::clone(&self.outbox);
        // One timer serves both the ping and the idle timeout: it is set for
        // whichever is due first and re-armed when it fires, so a frame
        // coming in only moves a deadline (no timer work per frame), and an
        // idle connection holds one timer, not two.
        let mut idle_at = TokioInstant::now() + idle_timeout;
        let mut ping_at = TokioInstant::now() + ping_every;
        let timer = tokio::time::sleep_until(ping_at.min(idle_at));
        tokio::pin!(timer);
        // Sends waiting for their ack. Made on first use and dropped when
        // empty: an empty FuturesUnordered still holds two allocations,
        // which every idle connection would pay for.
        let mut pending: Option<FuturesUnordered<PendingSend>> = None;

        loop {
            tokio::select! {
                biased;
                // Shutdown comes through the outbox (`Hub::close_all`), so
                // this loop polls no shared token on every wake-up.
                next = outbox.next() => match next {
                    Next::Frame(frame) => Box::pin(self.forward(frame, &outbox)).await?,
                    Next::Killed => {
                        // The client is not reading: the close frame gets a
                        // short deadline, then the socket is dropped.
                        self.linger = Box::pin(socket::send_close(&mut self.socket, CLOSE_SLOW, "too slow, resume by seq", SLOW_CLOSE_TIMEOUT)).await;
                        return Err("slow consumer");
                    }
                    Next::Revoked => {
                        Box::pin(self.close(CLOSE_UNAUTHORIZED, "session revoked")).await;
                        return Err("session revoked");
                    }
                    Next::Closing => {
                        // Shutdown waits for this task (within
                        // `http.shutdown_timeout_secs`): a client that does
                        // not read gets a short deadline, as a slow one.
                        // A LAN host that handed the shop over says where
                        // it went (lan::handover).
                        self.linger = match crate::lan::handover::successor(&self.state) {
                            Some(successor) => {
                                let reason = crate::lan::handover::close_reason(successor);
                                Box::pin(socket::send_close(&mut self.socket, crate::lan::handover::CLOSE_MOVED, reason, SLOW_CLOSE_TIMEOUT)).await
                            }
                            None => Box::pin(socket::send_close(&mut self.socket, CLOSE_GOING_AWAY, "server shutting down", SLOW_CLOSE_TIMEOUT)).await,
                        };
                        return Err("shutdown");
                    }
                },
                Some(frame) = next_ack(&mut pending), if pending.as_ref().is_some_and(|p| !p.is_empty()) => {
                    Box::pin(self.write_acks(frame, &mut pending)).await?;
                    if pending.as_ref().is_some_and(FuturesUnordered::is_empty) {
                        pending = None;
                    }
                }
                incoming = self.socket.next(), if pending.as_ref().map_or(0, FuturesUnordered::len) < max_in_flight => {
                    idle_at = TokioInstant::now() + idle_timeout;
                    match incoming {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Some(send) = Box::pin(self.handle(text.as_str())).await? {
                                pending.get_or_insert_with(FuturesUnordered::new).push(send);
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            Box::pin(self.send(frames::api_error(&ApiError::bad_request("frames must be JSON text"), None))).await?;
                        }
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                        Some(Ok(WsMessage::Close(_))) => {
                            // tungstenite queued the reply; write it and let
                            // the client close its side.
                            let limit = self.write_timeout();
                            self.linger = Box::pin(socket::answer_close(&mut self.socket, limit)).await;
                            return Ok(());
                        }
                        None => return Ok(()),
                        Some(Err(error)) => {
                            return match socket::close_code_for(&error) {
                                Some((code, reason)) => {
                                    Box::pin(self.close(code, reason)).await;
                                    Err(reason)
                                }
                                None => Err("read error"),
                            };
                        }
                    }
                }
                () = &mut timer => {
                    let now = TokioInstant::now();
                    if now >= idle_at {
                        Box::pin(self.close(CLOSE_IDLE, "idle timeout")).await;
                        return Err("idle");
                    }
                    if now >= ping_at {
                        let limit = self.write_timeout();
                        let ping = self.socket.send(WsMessage::Ping(Default::default()));
                        // Boxed, as every write here: a deadline's timer
                        // inline would enlarge every idle connection's task.
                        let sent = Box::pin(within_unless(limit, |cx| self.outbox.poll_ended(cx).is_ready(), ping)).await;
                        self.written(sent)?;
                        ping_at = now + ping_every;
                    }
                    timer.as_mut().reset(ping_at.min(idle_at));
                }
            }
        }
    }

    /// `ws.write_timeout_secs`: how long one write may take (read from the
    /// config, not kept per connection).
    fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.state.config.ws.write_timeout_secs)
    }

    /// Writes a close frame; the served task lingers for the client's
    /// side of the close once the connection is out of the hub.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let limit = self.write_timeout();
        self.linger = socket::send_close(&mut self.socket, code, reason, limit).await;
    }

    /// The outcome of a write that had `ws.write_timeout_secs` to finish.
    /// A write that timed out drops the connection as too slow, and one cut
    /// short by a kill or a revocation ends it: its socket (perhaps
    /// mid-frame) cannot take a close frame either.
    fn written(&self, result: Written<Result<(), tungstenite::Error>>) -> Result<(), &'static str> {
        match result {
            Written::Done(Ok(())) => Ok(()),
            Written::Done(Err(_)) => Err("write error"),
            Written::TimedOut => {
                self.state.metrics.slow_client_dropped();
                Err("write timeout")
            }
            Written::Ended => Err("ended during a write"),
        }
    }

    /// Writes a queued frame and whatever else is already queued, then
    /// flushes once; within the write deadline.
    async fn forward(&mut self, first: Frame, outbox: &Outbox) -> Result<(), &'static str> {
        let per_conversation = self.per_conversation.as_deref();
        let written = within_unless(
            self.write_timeout(),
            |cx| outbox.poll_ended(cx).is_ready(),
            feed_queued(&mut self.socket, per_conversation, first, outbox),
        )
        .await;
        self.written(written)
    }

    /// Writes an ack and every other ack already done, then flushes once:
    /// the sends of one log batch are answered together, so a client with
    /// several in flight gets them in one write instead of one each.
    async fn write_acks(
        &mut self,
        first: Frame,
        pending: &mut Option<FuturesUnordered<PendingSend>>,
    ) -> Result<(), &'static str> {
        let written = within_unless(
            self.write_timeout(),
            |cx| self.outbox.poll_ended(cx).is_ready(),
            feed_acks(&mut self.socket, first, pending),
        )
        .await;
        self.written(written)
    }

    fn per_conversation(&mut self) -> &mut PerConversation {
        self.per_conversation.get_or_insert_with(Box::default)
    }

    async fn send(&mut self, frame: Frame) -> Result<(), &'static str> {
        let written = within_unless(
            self.write_timeout(),
            |cx| self.outbox.poll_ended(cx).is_ready(),
            self.socket.send(text(frame)),
        )
        .await;
        self.written(written)
    }

    async fn catch_up(&mut self, resume: HashMap<String, u64>) -> Result<(), &'static str> {
        let include_notes = matches!(self.author, Author::Agent(_));
        for (conversation, after) in resume {
            let Ok(conversation) = conversation.parse::<ConversationId>() else {
                self.send(frames::api_error(
                    &ApiError::bad_request("resume: invalid conversation id").in_field("resume"),
                    None,
                ))
                .await?;
                continue;
            };
            if let Author::Visitor(visitor) = &self.author
                && visitor.conversation_id != conversation
            {
                self.send(frames::api_error(
                    &ApiError::forbidden("resume: not your conversation").in_field("resume"),
                    None,
                ))
                .await?;
                continue;
            }
            // A client that claims more than exists (a stale cache from
            // another store) resumes from the real head, or it would never
            // see the messages up to its claim.
            let head = match self.state.log.head(conversation) {
                Ok(head) => head.map_or(0, |h| h.last_seq),
                Err(error) => {
                    tracing::error!(%error, "catch-up read failed");
                    self.close(CLOSE_INTERNAL, "internal error").await;
                    return Err("catch-up read failed");
                }
            };
            let mut cursor = after.min(head);
            loop {
                let page = match self
                    .state
                    .log
                    .page(conversation, cursor, None, 200, include_notes)
                {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::error!(%error, "catch-up read failed");
                        self.close(CLOSE_INTERNAL, "internal error").await;
                        return Err("catch-up read failed");
                    }
                };
                let full = page.len() == 200;
                let limit = self.write_timeout();
                let socket = &mut self.socket;
                let outbox = &self.outbox;
                let written = within_unless(limit, |cx| outbox.poll_ended(cx).is_ready(), async {
                    for message in &page {
                        socket.feed(text(frames::message(message))).await?;
                    }
                    socket.flush().await
                })
                .await;
                self.written(written)?;
                if let Some(last) = page.last() {
                    cursor = last.seq;
                }
                if !full {
                    break;
                }
            }
            // Every visible message up to the scan's end was sent; live
            // copies of those are dropped, anything later is new.
            self.per_conversation()
                .caught_up
                .insert(conversation, cursor);
        }
        Ok(())
    }

    /// One client frame. Returns a pending send to await alongside others.
    async fn handle(&mut self, text: &str) -> Result<Option<PendingSend>, &'static str> {
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                self.send(frames::api_error(&error.into(), None)).await?;
                return Ok(None);
            }
        };
        if let Err(error) = frame.check_repeated() {
            let echo = frame.client_msg_id().ok().flatten();
            self.send(frames::api_error(&error.into(), echo.as_deref()))
                .await?;
            return Ok(None);
        }
        let kind = frame.kind();
        match &*kind {
            "ping" => self.send(frames::pong()).await.map(|_| None),
            "send" => Ok(self.start_send(&frame).await?),
            "typing" | "read" => {
                let checked = self.conversation_of(&frame).and_then(|conversation| {
                    if kind == "typing" {
                        Ok((conversation, Signal::Typing(frame.on()?)))
                    } else {
                        match frame.seq()? {
                            Some(seq) => Ok((conversation, Signal::Read(seq))),
                            None => Err(ApiError::bad_request("read needs a numeric seq")),
                        }
                    }
                });
                match checked {
                    Ok((conversation, Signal::Typing(on))) => {
                        self.typing(conversation, on);
                        Ok(None)
                    }
                    Ok((conversation, Signal::Read(seq))) => {
                        self.read(conversation, seq).await?;
                        Ok(None)
                    }
                    Err(error) => {
                        self.send(frames::api_error(&error, None)).await?;
                        Ok(None)
                    }
                }
            }
            "hello" => {
                self.send(frames::api_error(
                    &ApiError::bad_request("already said hello"),
                    None,
                ))
                .await?;
                Ok(None)
            }
            _ => {
                self.send(frames::api_error(
                    &ApiError::bad_request("unknown frame type").in_field("type"),
                    None,
                ))
                .await?;
                Ok(None)
            }
        }
    }

    /// A `typing` frame: relayed, with repeats of the same state coalesced.
    fn typing(&mut self, conversation: ConversationId, on: bool) {
        if self
            .per_conversation()
            .typing
            .should_relay(conversation, on, Instant::now())
        {
            let out = frames::typing(conversation, on, &self.author.sender());
            self.state
                .hub
                .relay(self.id, self.party, conversation, &out);
        }
    }

    /// A `read` frame: raises this reader's stored marker (forward-only) and
    /// relays it when it moved. A seq at or below what this connection
    /// already marked costs nothing (no SQLite round trip).
    async fn read(&mut self, conversation: ConversationId, seq: u64) -> Result<(), &'static str> {
        if self.per_conversation.as_ref().is_some_and(|per| {
            per.marked
                .get(&conversation)
                .is_some_and(|&marked| seq <= marked)
        }) {
            return Ok(());
        }
        match crate::reads::mark_and_relay(&self.state, &self.author, conversation, seq, self.id)
            .await
        {
            Ok(marked) => {
                let per = self.per_conversation();
                if per.marked.len() >= PER_CONNECTION_MAP_MAX {
                    per.marked.clear();
                }
                per.marked.insert(conversation, marked.seq);
                Ok(())
            }
            Err(error) => self.send(frames::api_error(&error, None)).await,
        }
    }

    /// The conversation a frame names, if this party may use it. Visitors
    /// may leave it out (they have one); a `conversation_id` that is not a
    /// string is a bad request, never "left out".
    fn conversation_of(&self, frame: &ClientFrame<'_>) -> Result<ConversationId, ApiError> {
        let given = frame.conversation_id()?;
        match (&self.author, given.as_deref()) {
            (Author::Visitor(visitor), None) => Ok(visitor.conversation_id),
            (_, None) => Err(ApiError::bad_request("conversation_id is required")),
            (author, Some(text)) => {
                let id: ConversationId = text
                    .parse()
                    .map_err(|_| ApiError::bad_request("conversation_id is not a valid id"))?;
                match author {
                    Author::Visitor(visitor) if visitor.conversation_id != id => {
                        Err(ApiError::forbidden("not your conversation"))
                    }
                    _ => Ok(id),
                }
            }
        }
    }

    /// A `send` frame: every field's type, then the send path's own checks
    /// (`conversations::send::check`, the same as REST's). Any refusal is an
    /// `error` frame, sent at once, and stores nothing; an accepted send is
    /// delivered alongside the connection's other sends.
    async fn start_send(
        &mut self,
        frame: &ClientFrame<'_>,
    ) -> Result<Option<PendingSend>, &'static str> {
        // The id is echoed in the error when it is a string, valid or not.
        let client_msg_id = frame.client_msg_id();
        let echo = client_msg_id.as_ref().ok().and_then(Option::as_deref);
        let checked = self.check_send(frame);
        let (conversation, checked) = match checked {
            Ok(ok) => ok,
            Err(error) => {
                return self
                    .send(frames::api_error(&error, echo))
                    .await
                    .map(|_| None);
            }
        };
        let state = self.state.clone();
        let author = self.author.clone();
        let origin = self.id;
        Ok(Some(Box::pin(async move {
            let client_msg_id = checked.client_msg_id().to_owned();
            let sent =
                conversations::send::deliver(&state, &author, conversation, checked, Some(origin));
            match sent.await {
                Ok(appended) => frames::ack(&client_msg_id, &appended.message),
                Err(error) => frames::api_error(&error, Some(&client_msg_id)),
            }
        })))
    }

    /// What a send frame asks for, checked as every door checks a send
    /// (`conversations::send::check`), or why it is refused.
    fn check_send(
        &self,
        frame: &ClientFrame<'_>,
    ) -> Result<(ConversationId, conversations::Checked), ApiError> {
        let limits = &self.state.config.limits;
        let client_msg_id = frame.client_msg_id()?;
        let content = frame.content()?;
        let private = frame.private()?;
        let attachment_id = frame.attachment_id()?;
        let meta = frame.meta().map_err(|_| message::meta_too_deep(limits))?;
        let conversation = self.conversation_of(frame)?;
        let request = conversations::SendRequest {
            client_msg_id: client_msg_id.as_deref(),
            content: content.as_deref(),
            meta: meta.as_ref(),
            private,
            attachment_id: attachment_id.as_deref(),
        };
        let checked = conversations::send::check(&self.state, &self.author, request)?;
        Ok((conversation, checked))
    }
}

/// A `typing` or `read` frame's payload, once checked.
enum Signal {
    Typing(bool),
    Read(u64),
}

async fn read_hello(socket: &mut Socket, state: &AppState, visitors_only: bool) -> Hello {
    #[derive(Deserialize)]
    struct HelloFrame {
        #[serde(rename = "type")]
        kind: String,
        token: String,
        #[serde(default)]
        resume: HashMap<String, u64>,
        /// The `welcome`'s `history_id` the cursors came from (LAN).
        #[serde(default)]
        history_id: Option<String>,
    }
    loop {
        let text = match socket.next().await {
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => continue,
            Some(Ok(WsMessage::Close(_))) => return Hello::ClientClosed,
            None => return Hello::Gone,
            Some(Ok(WsMessage::Binary(_))) => {
                return Hello::Refuse(CLOSE_UNAUTHORIZED, "first frame must be hello");
            }
            Some(Err(error)) => {
                return match socket::close_code_for(&error) {
                    Some((code, reason)) => Hello::Refuse(code, reason),
                    None => Hello::Gone,
                };
            }
        };
        let Ok(hello) = serde_json::from_str::<HelloFrame>(text.as_str()) else {
            return Hello::Refuse(CLOSE_UNAUTHORIZED, "first frame must be hello with a token");
        };
        if hello.kind != "hello" {
            return Hello::Refuse(CLOSE_UNAUTHORIZED, "first frame must be hello");
        }
        if hello.resume.len() > state.config.limits.resume_conversations {
            return Hello::Refuse(CLOSE_TOO_BIG, "resume names too many conversations");
        }
        // Read before the token is resolved: a revocation that commits
        // after this point moves it (see `Connection::run`).
        let generation = state.auth_cache.generation();
        return match auth::resolve_token(state, &hello.token).await {
            // An agent on the public listener: as if the token did not exist.
            Ok(Some(Principal::Agent(_))) if visitors_only => {
                Hello::Refuse(CLOSE_UNAUTHORIZED, "invalid token")
            }
            Ok(Some(principal)) => Hello::Ok {
                principal,
                resume: hello.resume,
                history_id: hello.history_id.filter(|id| id.len() <= 128),
                token: hello.token,
                generation,
            },
            Ok(None) => Hello::Refuse(CLOSE_UNAUTHORIZED, "invalid token"),
            Err(_) => Hello::Refuse(CLOSE_INTERNAL, "internal error"),
        };
    }
}

/// Feeds a queued frame and whatever else is already queued (up to 64),
/// skipping what the catch-up already delivered, then flushes once.
async fn feed_queued(
    socket: &mut Socket,
    per_conversation: Option<&PerConversation>,
    first: Frame,
    outbox: &Outbox,
) -> Result<(), tungstenite::Error> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(frame) = next.take() {
        if !already_delivered(per_conversation, &frame) {
            socket.feed(text(frame)).await?;
            written += 1;
        }
        // A kill ends the batch; the loop sees it next (it stays).
        if written < 64
            && let Some(Next::Frame(frame)) = outbox.try_next()
        {
            next = Some(frame);
        }
    }
    socket.flush().await
}

/// Feeds an ack and every other ack already done, then flushes once.
async fn feed_acks(
    socket: &mut Socket,
    first: Frame,
    pending: &mut Option<FuturesUnordered<PendingSend>>,
) -> Result<(), tungstenite::Error> {
    let mut next = Some(first);
    while let Some(frame) = next.take() {
        socket.feed(text(frame)).await?;
        next = ready_ack(pending).await;
    }
    socket.flush().await
}

/// A live message frame the catch-up already delivered.
fn already_delivered(per_conversation: Option<&PerConversation>, frame: &Frame) -> bool {
    match frame.seq() {
        Some((conversation, seq)) => per_conversation.is_some_and(|per| {
            per.caught_up
                .get(&conversation)
                .is_some_and(|&upto| seq <= upto)
        }),
        None => false,
    }
}

/// The next acked send, if any are pending.
async fn next_ack(pending: &mut Option<FuturesUnordered<PendingSend>>) -> Option<Frame> {
    match pending {
        Some(pending) => pending.next().await,
        None => None,
    }
}

/// An acked send that is already done, without waiting for one. Polled
/// with the task's own waker, so nothing is lost when there is none yet.
async fn ready_ack(pending: &mut Option<FuturesUnordered<PendingSend>>) -> Option<Frame> {
    let pending = pending.as_mut()?;
    poll_fn(|cx| match pending.poll_next_unpin(cx) {
        Poll::Ready(Some(frame)) => Poll::Ready(Some(frame)),
        Poll::Ready(None) | Poll::Pending => Poll::Ready(None),
    })
    .await
}

fn text(frame: Frame) -> WsMessage {
    WsMessage::Text(frame.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_repeats_are_coalesced_but_changes_pass() {
        let mut gate = TypingGate::default();
        let (a, b) = (ConversationId::new(), ConversationId::new());
        let t0 = Instant::now();
        assert!(gate.should_relay(a, true, t0));
        assert!(!gate.should_relay(a, true, t0 + Duration::from_millis(500)));
        assert!(gate.should_relay(b, true, t0 + Duration::from_millis(500)));
        assert!(gate.should_relay(a, false, t0 + Duration::from_millis(600)));
        assert!(gate.should_relay(a, true, t0 + Duration::from_millis(700)));
        assert!(gate.should_relay(a, true, t0 + Duration::from_millis(2_800)));
    }
}
