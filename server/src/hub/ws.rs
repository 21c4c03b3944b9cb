//! `GET /api/v1/ws`: one task per connection.
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

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant as TokioInstant;

use super::Party;
use super::frames::{self, Frame};
use super::inbound::{ClientFrame, WrongType};
use super::outbox::{Next, Outbox};
use crate::auth::{self, Principal};
use crate::conversations::{self, Author};
use crate::error::ApiError;
use crate::http::ClientIp;
use crate::http::extract::ApiQuery;
use crate::ids::ConversationId;
use crate::message::{self, MessageKind};
use crate::state::AppState;

/// Close codes. 4401/4403 mirror HTTP 401/403.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_FORBIDDEN: u16 = 4403;
pub const CLOSE_IDLE: u16 = 4408;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_SLOW: u16 = 1013;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_INTERNAL: u16 = 1011;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    app_key: Option<String>,
}

pub async fn upgrade(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    ClientIp(peer): ClientIp,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<WsQuery>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::bad_request(format!(
                "not a WebSocket upgrade: {}",
                rejection.body_text()
            ))
            .into_response();
        }
    };
    let origin = crate::apps::cross_origin(&headers).map(str::to_owned);
    if let Some(app_key) = query.app_key {
        match state.auth_cache.app_by_key(&state.db, &app_key).await {
            Ok(Some(app)) if app.origin_allowed(origin.as_deref()) => {}
            Ok(Some(_)) => {
                return ApiError::forbidden("origin not allowed for this app").into_response();
            }
            Ok(None) => return ApiError::not_found("app").into_response(),
            Err(error) => return error.into_response(),
        }
    }
    let Ok(permit) = Arc::clone(&state.connection_slots).try_acquire_owned() else {
        return ApiError::Unavailable("too many connections".into()).into_response();
    };
    let limits = &state.config.limits;
    ws.read_buffer_size(state.config.ws.read_buffer_bytes)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(1 << 20)
        .max_message_size(limits.ws_frame_bytes)
        .max_frame_size(limits.ws_frame_bytes)
        .on_upgrade(move |socket| async move {
            Connection::run(socket, state, origin, peer, permit).await;
        })
}

/// Frames fed without a flush are written once this many bytes wait (or
/// at the flush): a burst (the acks of one log batch, an agent's queued
/// messages) goes out in a few writes rather than one per frame. Every
/// path that feeds also flushes, so nothing waits here. The buffer grows
/// to a burst's size only on connections that get bursts.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

type PendingSend = Pin<Box<dyn Future<Output = Frame> + Send>>;

struct Connection {
    socket: WebSocket,
    state: AppState,
    author: Author,
    party: Party,
    id: u64,
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
}

enum Hello {
    Ok(Principal, HashMap<String, u64>),
    Refuse(u16, &'static str),
    Gone,
}

impl Connection {
    async fn run(
        socket: WebSocket,
        state: AppState,
        origin: Option<String>,
        peer: IpAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let Some((socket, author, party, role, id_text, resume)) =
            Self::authenticate(socket, &state, origin).await
        else {
            return;
        };
        tracing::debug!(%peer, role, "websocket connected");
        let registration = state.hub.register(party);
        let mut connection = Connection {
            socket,
            state: state.clone(),
            author,
            party,
            id: registration.id,
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
        });
        let outbox = registration.outbox;
        tokio::spawn(async move {
            let result = connection.serve(outbox, opening).await;
            state.hub.unregister(connection.id);
            drop(permit);
            if let Err(reason) = result {
                tracing::debug!(%peer, reason, "websocket closed");
            }
        });
    }

    /// The hello: the client's principal, checked against its app's
    /// allowed origins. `None` when the connection was refused (and closed).
    async fn authenticate(
        mut socket: WebSocket,
        state: &AppState,
        origin: Option<String>,
    ) -> Option<(
        WebSocket,
        Author,
        Party,
        &'static str,
        String,
        HashMap<String, u64>,
    )> {
        let hello_timeout = Duration::from_secs(state.config.ws.hello_timeout_secs);
        let hello =
            match tokio::time::timeout(hello_timeout, Box::pin(read_hello(&mut socket, state)))
                .await
            {
                Ok(hello) => hello,
                Err(_) => Hello::Refuse(CLOSE_UNAUTHORIZED, "no hello in time"),
            };
        let (principal, resume) = match hello {
            Hello::Ok(principal, resume) => (principal, resume),
            Hello::Refuse(code, reason) => {
                close(&mut socket, code, reason).await;
                return None;
            }
            Hello::Gone => return None,
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
                        close(&mut socket, CLOSE_INTERNAL, "internal error").await;
                        return None;
                    }
                    Ok(_) => {
                        let _ = socket
                            .send(text(frames::error(
                                "forbidden",
                                "origin not allowed for this app",
                                None,
                            )))
                            .await;
                        close(&mut socket, CLOSE_FORBIDDEN, "origin not allowed").await;
                        return None;
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
        Some((socket, author, party, role, id_text, resume))
    }

    /// The welcome, then the catch-up (in a future of its own, so that
    /// the served loop's task is not sized for them).
    async fn open(&mut self, opening: Opening) -> Result<(), &'static str> {
        self.send(frames::welcome(opening.role, &opening.id))
            .await?;
        self.catch_up(opening.resume).await
    }

    async fn serve(
        &mut self,
        outbox: Arc<Outbox>,
        opening: Box<Opening>,
    ) -> Result<(), &'static str> {
        Box::pin(self.open(*opening)).await?;
        let config = &self.state.config;
        let idle_timeout = Duration::from_secs(config.ws.idle_timeout_secs);
        let ping_every = Duration::from_secs(config.ws.ping_interval_secs.max(1));
        let max_in_flight = config.limits.ws_sends_in_flight;
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
                        let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), close(&mut self.socket, CLOSE_SLOW, "too slow, resume by seq"))).await;
                        return Err("slow consumer");
                    }
                    Next::Closing => {
                        Box::pin(close(&mut self.socket, CLOSE_GOING_AWAY, "server shutting down")).await;
                        return Err("shutdown");
                    }
                },
                Some(frame) = next_ack(&mut pending), if pending.as_ref().is_some_and(|p| !p.is_empty()) => {
                    Box::pin(self.write_acks(frame, &mut pending)).await?;
                    if pending.as_ref().is_some_and(FuturesUnordered::is_empty) {
                        pending = None;
                    }
                }
                incoming = self.socket.recv(), if pending.as_ref().map_or(0, FuturesUnordered::len) < max_in_flight => {
                    idle_at = TokioInstant::now() + idle_timeout;
                    match incoming {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Some(send) = Box::pin(self.handle(text.as_str())).await? {
                                pending.get_or_insert_with(FuturesUnordered::new).push(send);
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            self.send(frames::error("bad_request", "frames must be JSON text", None)).await?;
                        }
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                        Some(Ok(WsMessage::Close(_))) | None => return Ok(()),
                        Some(Err(error)) => {
                            if is_too_big(&error) {
                                Box::pin(close(&mut self.socket, CLOSE_TOO_BIG, "frame too large")).await;
                                return Err("frame too large");
                            }
                            return Err("read error");
                        }
                    }
                }
                () = &mut timer => {
                    let now = TokioInstant::now();
                    if now >= idle_at {
                        Box::pin(close(&mut self.socket, CLOSE_IDLE, "idle timeout")).await;
                        return Err("idle");
                    }
                    if now >= ping_at {
                        self.socket.send(WsMessage::Ping(Default::default())).await.map_err(|_| "write error")?;
                        ping_at = now + ping_every;
                    }
                    timer.as_mut().reset(ping_at.min(idle_at));
                }
            }
        }
    }

    /// Writes a queued frame and whatever else is already queued, then
    /// flushes once.
    async fn forward(&mut self, first: Frame, outbox: &Outbox) -> Result<(), &'static str> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(frame) = next.take() {
            if !self.already_delivered(&frame) {
                self.socket
                    .feed(text(frame))
                    .await
                    .map_err(|_| "write error")?;
                written += 1;
            }
            // A kill ends the batch; the loop sees it next (it stays).
            if written < 64
                && let Some(Next::Frame(frame)) = outbox.try_next()
            {
                next = Some(frame);
            }
        }
        self.socket.flush().await.map_err(|_| "write error")
    }

    /// Writes an ack and every other ack already done, then flushes once:
    /// the sends of one log batch are answered together, so a client with
    /// several in flight gets them in one write instead of one each.
    async fn write_acks(
        &mut self,
        first: Frame,
        pending: &mut Option<FuturesUnordered<PendingSend>>,
    ) -> Result<(), &'static str> {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            self.socket
                .feed(text(frame))
                .await
                .map_err(|_| "write error")?;
            next = ready_ack(pending).await;
        }
        self.socket.flush().await.map_err(|_| "write error")
    }

    fn per_conversation(&mut self) -> &mut PerConversation {
        self.per_conversation.get_or_insert_with(Box::default)
    }

    fn already_delivered(&self, frame: &Frame) -> bool {
        match frame.seq() {
            Some((conversation, seq)) => self.per_conversation.as_ref().is_some_and(|per| {
                per.caught_up
                    .get(&conversation)
                    .is_some_and(|&upto| seq <= upto)
            }),
            None => false,
        }
    }

    async fn send(&mut self, frame: Frame) -> Result<(), &'static str> {
        self.socket
            .send(text(frame))
            .await
            .map_err(|_| "write error")
    }

    async fn catch_up(&mut self, resume: HashMap<String, u64>) -> Result<(), &'static str> {
        let include_notes = matches!(self.author, Author::Agent(_));
        for (conversation, after) in resume {
            let Ok(conversation) = conversation.parse::<ConversationId>() else {
                self.send(frames::error(
                    "bad_request",
                    "resume: invalid conversation id",
                    None,
                ))
                .await?;
                continue;
            };
            if let Author::Visitor(visitor) = &self.author
                && visitor.conversation_id != conversation
            {
                self.send(frames::error(
                    "forbidden",
                    "resume: not your conversation",
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
                    close(&mut self.socket, CLOSE_INTERNAL, "internal error").await;
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
                        close(&mut self.socket, CLOSE_INTERNAL, "internal error").await;
                        return Err("catch-up read failed");
                    }
                };
                let full = page.len() == 200;
                for message in &page {
                    self.socket
                        .feed(text(frames::message(message)))
                        .await
                        .map_err(|_| "write error")?;
                    cursor = message.seq;
                }
                self.socket.flush().await.map_err(|_| "write error")?;
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
        let Some(frame) = ClientFrame::parse(text) else {
            self.send(frames::error(
                "bad_request",
                "frames must be JSON objects",
                None,
            ))
            .await?;
            return Ok(None);
        };
        let kind = frame.kind();
        match &*kind {
            "ping" => self.send(frames::pong()).await.map(|_| None),
            "send" => Ok(self.start_send(&frame).await?),
            "typing" | "read" => {
                let conversation = match self.conversation_of(&frame) {
                    Ok(conversation) => conversation,
                    Err(error) => {
                        self.send(frames::error(error.code(), &error.to_string(), None))
                            .await?;
                        return Ok(None);
                    }
                };
                if kind == "typing" {
                    let on = frame.on();
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
                    return Ok(None);
                }
                let Some(seq) = frame.seq() else {
                    self.send(frames::error(
                        "bad_request",
                        "read needs a numeric seq",
                        None,
                    ))
                    .await?;
                    return Ok(None);
                };
                self.read(conversation, seq).await?;
                Ok(None)
            }
            "hello" => {
                self.send(frames::error("bad_request", "already said hello", None))
                    .await?;
                Ok(None)
            }
            _ => {
                self.send(frames::error("bad_request", "unknown frame type", None))
                    .await?;
                Ok(None)
            }
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
            Err(error) => {
                self.send(frames::error(error.code(), &error.to_string(), None))
                    .await
            }
        }
    }

    /// The conversation a frame names, if this party may use it. Visitors
    /// may leave it out (they have one).
    fn conversation_of(&self, frame: &ClientFrame<'_>) -> Result<ConversationId, ApiError> {
        let given = frame.conversation_id();
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

    async fn start_send(
        &mut self,
        frame: &ClientFrame<'_>,
    ) -> Result<Option<PendingSend>, &'static str> {
        let client_msg_id = frame.client_msg_id().map(Cow::into_owned);
        let content = match frame.content() {
            Ok(content) => content,
            Err(WrongType) => {
                let error = frames::error(
                    "bad_request",
                    "content must be a string",
                    client_msg_id.as_deref(),
                );
                return self.send(error).await.map(|_| None);
            }
        };
        let private = frame.private();
        let attachment_id = match frame.attachment_id() {
            Ok(id) => id.map(Cow::into_owned),
            Err(WrongType) => {
                let error = frames::error(
                    "bad_request",
                    "attachment_id must be a string",
                    client_msg_id.as_deref(),
                );
                return self.send(error).await.map(|_| None);
            }
        };
        let checked = self.conversation_of(frame).and_then(|conversation| {
            let input = message::validate_send_with(
                &self.state.config.limits,
                client_msg_id.as_deref(),
                content.as_deref(),
                frame.meta().as_ref(),
                attachment_id.is_some(),
            )?;
            let kind = match (&self.author, private) {
                (Author::Agent(_), true) => MessageKind::Note,
                (Author::Visitor(_), true) => {
                    return Err(ApiError::forbidden("visitors cannot send notes"));
                }
                _ => MessageKind::Text,
            };
            Ok((conversation, input, kind))
        });
        let (conversation, input, kind) = match checked {
            Ok(ok) => ok,
            Err(error) => {
                return self
                    .send(frames::error(
                        error.code(),
                        &error.to_string(),
                        client_msg_id.as_deref(),
                    ))
                    .await
                    .map(|_| None);
            }
        };
        let state = self.state.clone();
        let author = self.author.clone();
        let origin = self.id;
        Ok(Some(Box::pin(async move {
            let client_msg_id = input.client_msg_id.clone();
            let sent = async {
                // Boxed: the attachment lookup's state would otherwise
                // enlarge every pending send (this future is allocated per send).
                let (kind, attachment) = match attachment_id.as_deref() {
                    None => (kind, None),
                    Some(id) => {
                        Box::pin(crate::attachments::attach(&state, &author, Some(id), kind))
                            .await?
                    }
                };
                conversations::send_with_attachment(
                    &state,
                    &author,
                    conversation,
                    input,
                    kind,
                    attachment,
                    Some(origin),
                )
                .await
            };
            match sent.await {
                Ok(appended) => frames::ack(&client_msg_id, &appended.message),
                Err(error) => frames::error(error.code(), &error.to_string(), Some(&client_msg_id)),
            }
        })))
    }
}

async fn read_hello(socket: &mut WebSocket, state: &AppState) -> Hello {
    #[derive(Deserialize)]
    struct HelloFrame {
        #[serde(rename = "type")]
        kind: String,
        token: String,
        #[serde(default)]
        resume: HashMap<String, u64>,
    }
    loop {
        let text = match socket.recv().await {
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Close(_))) | None => return Hello::Gone,
            Some(Ok(WsMessage::Binary(_))) => {
                return Hello::Refuse(CLOSE_UNAUTHORIZED, "first frame must be hello");
            }
            Some(Err(error)) => {
                if is_too_big(&error) {
                    return Hello::Refuse(CLOSE_TOO_BIG, "frame too large");
                }
                return Hello::Gone;
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
        return match auth::resolve_token(state, &hello.token).await {
            Ok(Some(principal)) => Hello::Ok(principal, hello.resume),
            Ok(None) => Hello::Refuse(CLOSE_UNAUTHORIZED, "invalid token"),
            Err(_) => Hello::Refuse(CLOSE_INTERNAL, "internal error"),
        };
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

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn is_too_big(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(tungstenite::Error::Capacity(_)) = current.downcast_ref::<tungstenite::Error>()
        {
            return true;
        }
        source = current.source();
    }
    false
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
