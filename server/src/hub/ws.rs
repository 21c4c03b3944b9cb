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

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::frames::{self, Frame};
use super::{Party, Registration};
use crate::auth::{self, Principal};
use crate::conversations::{self, Author};
use crate::error::ApiError;
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
        match crate::apps::find_by_key(&state.db, &app_key).await {
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
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(limits.ws_frame_bytes)
        .max_frame_size(limits.ws_frame_bytes)
        .on_upgrade(move |socket| async move {
            Connection::run(socket, state, origin, peer, permit).await;
        })
}

type PendingSend = Pin<Box<dyn Future<Output = Frame> + Send>>;

struct Connection {
    socket: WebSocket,
    state: AppState,
    author: Author,
    party: Party,
    id: u64,
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
        peer: SocketAddr,
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
            caught_up: HashMap::new(),
            marked: HashMap::new(),
            typing: TypingGate::default(),
        };
        // The served loop gets a task of its own, sized for the loop alone:
        // this task (with the upgrade's and the hello's state) ends here.
        tokio::spawn(async move {
            let result = connection.serve(registration, role, &id_text, resume).await;
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
                match Box::pin(crate::apps::find(&state.db, visitor.app_id)).await {
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

    async fn serve(
        &mut self,
        registration: Registration,
        role: &str,
        id: &str,
        resume: HashMap<String, u64>,
    ) -> Result<(), &'static str> {
        let Registration { mut rx, kill, .. } = registration;
        self.send(frames::welcome(role, id)).await?;
        Box::pin(self.catch_up(resume)).await?;

        let config = &self.state.config;
        let idle_timeout = Duration::from_secs(config.ws.idle_timeout_secs);
        let max_in_flight = config.limits.ws_sends_in_flight;
        let mut ping =
            tokio::time::interval(Duration::from_secs(config.ws.ping_interval_secs.max(1)));
        ping.reset();
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let shutdown = self.state.shutdown.clone();
        let mut pending: FuturesUnordered<PendingSend> = FuturesUnordered::new();

        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    close(&mut self.socket, CLOSE_GOING_AWAY, "server shutting down").await;
                    return Err("shutdown");
                }
                _ = kill.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), close(&mut self.socket, CLOSE_SLOW, "too slow, resume by seq")).await;
                    return Err("slow consumer");
                }
                Some(frame) = pending.next(), if !pending.is_empty() => {
                    self.send(frame).await?;
                }
                frame = rx.recv() => {
                    let Some(frame) = frame else { return Err("hub closed") };
                    Box::pin(self.forward(frame, &mut rx)).await?;
                }
                incoming = self.socket.recv(), if pending.len() < max_in_flight => {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                    match incoming {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Some(send) = Box::pin(self.handle(text.as_str())).await? {
                                pending.push(send);
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            self.send(frames::error("bad_request", "frames must be JSON text", None)).await?;
                        }
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                        Some(Ok(WsMessage::Close(_))) | None => return Ok(()),
                        Some(Err(error)) => {
                            if is_too_big(&error) {
                                close(&mut self.socket, CLOSE_TOO_BIG, "frame too large").await;
                                return Err("frame too large");
                            }
                            return Err("read error");
                        }
                    }
                }
                _ = ping.tick() => {
                    self.socket.send(WsMessage::Ping(Default::default())).await.map_err(|_| "write error")?;
                }
                _ = &mut idle => {
                    close(&mut self.socket, CLOSE_IDLE, "idle timeout").await;
                    return Err("idle");
                }
            }
        }
    }

    /// Writes a queued frame and whatever else is already queued, then
    /// flushes once.
    async fn forward(
        &mut self,
        first: Frame,
        rx: &mut tokio::sync::mpsc::Receiver<Frame>,
    ) -> Result<(), &'static str> {
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
            if written < 64 {
                next = rx.try_recv().ok();
            }
        }
        self.socket.flush().await.map_err(|_| "write error")
    }

    fn already_delivered(&self, frame: &Frame) -> bool {
        match frame.seq() {
            Some((conversation, seq)) => self
                .caught_up
                .get(&conversation)
                .is_some_and(|&upto| seq <= upto),
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
            self.caught_up.insert(conversation, cursor);
        }
        Ok(())
    }

    /// One client frame. Returns a pending send to await alongside others.
    async fn handle(&mut self, text: &str) -> Result<Option<PendingSend>, &'static str> {
        let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
            self.send(frames::error(
                "bad_request",
                "frames must be JSON objects",
                None,
            ))
            .await?;
            return Ok(None);
        };
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
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
                    let on = frame.get("on").and_then(Value::as_bool).unwrap_or(false);
                    if self.typing.should_relay(conversation, on, Instant::now()) {
                        let out = frames::typing(conversation, on, &self.author.sender());
                        self.state
                            .hub
                            .relay(self.id, self.party, conversation, &out);
                    }
                    return Ok(None);
                }
                let Some(seq) = frame.get("seq").and_then(Value::as_u64) else {
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
        if self
            .marked
            .get(&conversation)
            .is_some_and(|&marked| seq <= marked)
        {
            return Ok(());
        }
        match crate::reads::mark_and_relay(&self.state, &self.author, conversation, seq, self.id)
            .await
        {
            Ok(marked) => {
                if self.marked.len() >= PER_CONNECTION_MAP_MAX {
                    self.marked.clear();
                }
                self.marked.insert(conversation, marked.seq);
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
    fn conversation_of(
        &self,
        frame: &serde_json::Map<String, Value>,
    ) -> Result<ConversationId, ApiError> {
        let given = frame.get("conversation_id").and_then(Value::as_str);
        match (&self.author, given) {
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
        frame: &serde_json::Map<String, Value>,
    ) -> Result<Option<PendingSend>, &'static str> {
        let client_msg_id = frame
            .get("client_msg_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let content = match frame.get("content") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                let error = frames::error(
                    "bad_request",
                    "content must be a string",
                    client_msg_id.as_deref(),
                );
                return self.send(error).await.map(|_| None);
            }
        };
        let private = frame
            .get("private")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let attachment_id = match frame.get("attachment_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
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
                content,
                frame.get("meta"),
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
                let (kind, attachment) =
                    crate::attachments::attach(&state, &author, attachment_id.as_deref(), kind)
                        .await?;
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
        return match auth::resolve_token(&state.db, &hello.token).await {
            Ok(Some(principal)) => Hello::Ok(principal, hello.resume),
            Ok(None) => Hello::Refuse(CLOSE_UNAUTHORIZED, "invalid token"),
            Err(_) => Hello::Refuse(CLOSE_INTERNAL, "internal error"),
        };
    }
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
