//! Who is connected and who gets which frame.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - every connection is in `conns` and in exactly one party index
//!   (`agents` or `by_conversation`), and nothing else is in the indexes;
//! - each connection's outbound queue is bounded; delivery never waits: a
//!   full queue cancels that connection (the client reconnects and resumes
//!   by seq), so one slow client never slows the others.
//!
//! - an agent is in `went_dark` only while it has no connection: the
//!   presence task (`routing::presence`) turns an `online` agent that stays
//!   there for the grace period into `away`.
//!
//! Typing and connections live only here, never in a store; availability
//! (`online|away|offline`) lives in SQLite.

pub mod frames;
pub mod outbox;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::Notify;

use crate::auth::tag::{Revoked, TokenTag};
use crate::ids::{AgentId, ConversationId, VisitorId};
use crate::metrics::Metrics;
use crate::store::messages::StoredMessage;
use frames::Frame;
use outbox::{Outbox, Push};

pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Agent(AgentId),
    Visitor {
        visitor: VisitorId,
        conversation: ConversationId,
    },
}

struct Entry {
    outbox: Arc<Outbox>,
    party: Party,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<ConnId, Entry>,
    /// Every agent connection: in v1 each receives every conversation's frames.
    agents: HashSet<ConnId>,
    by_agent: HashMap<AgentId, ConnSet>,
    /// The token each agent connection said hello with, so that revoking
    /// it closes the connection (`end_sessions`). Only agents': no path
    /// revokes a visitor token, and the many idle visitor connections do
    /// not pay for the entry.
    agent_tokens: HashMap<ConnId, TokenTag>,
    /// Visitor connections by the conversation they belong to.
    by_conversation: HashMap<ConversationId, ConnSet>,
    /// Agents without a connection, since when: their last one closed, or
    /// they were online with none (at start, or when set online over REST).
    went_dark: HashMap<AgentId, Instant>,
}

/// The connections of one conversation or one agent: almost always one,
/// kept inline (a visitor's tab); a set only while there are more, so the
/// common case costs no allocation of its own.
#[derive(Debug)]
enum ConnSet {
    One(ConnId),
    Many(HashSet<ConnId>),
}

impl ConnSet {
    fn insert(&mut self, id: ConnId) {
        match self {
            ConnSet::One(only) if *only == id => {}
            ConnSet::One(only) => *self = ConnSet::Many(HashSet::from([*only, id])),
            ConnSet::Many(set) => {
                set.insert(id);
            }
        }
    }

    /// Removes `id`; true when nothing is left (drop the set then).
    fn remove(&mut self, id: ConnId) -> bool {
        match self {
            ConnSet::One(only) => *only == id,
            ConnSet::Many(set) => {
                set.remove(&id);
                let mut left = set.iter();
                match (left.next(), left.next()) {
                    (None, _) => true,
                    (Some(&last), None) => {
                        *self = ConnSet::One(last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            ConnSet::One(_) => 1,
            ConnSet::Many(set) => set.len(),
        }
    }

    fn contains(&self, id: ConnId) -> bool {
        match self {
            ConnSet::One(only) => *only == id,
            ConnSet::Many(set) => set.contains(&id),
        }
    }

    fn iter(&self) -> ConnSetIter<'_> {
        match self {
            ConnSet::One(only) => ConnSetIter::One(Some(only)),
            ConnSet::Many(set) => ConnSetIter::Many(set.iter()),
        }
    }
}

enum ConnSetIter<'a> {
    One(Option<&'a ConnId>),
    Many(std::collections::hash_set::Iter<'a, ConnId>),
}

impl<'a> Iterator for ConnSetIter<'a> {
    type Item = &'a ConnId;

    fn next(&mut self) -> Option<&'a ConnId> {
        match self {
            ConnSetIter::One(only) => only.take(),
            ConnSetIter::Many(iter) => iter.next(),
        }
    }
}

impl<'a> IntoIterator for &'a ConnSet {
    type Item = &'a ConnId;
    type IntoIter = ConnSetIter<'a>;

    fn into_iter(self) -> ConnSetIter<'a> {
        self.iter()
    }
}

/// What a new connection gets from [`Hub::register`].
pub struct Registration {
    pub id: ConnId,
    /// Frames for this connection; killed when the hub drops it (queue
    /// full), revoked when its session ends.
    pub outbox: Arc<Outbox>,
}

pub struct Hub {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    queue: usize,
    metrics: Arc<Metrics>,
    /// Woken when an agent goes dark, for the presence task.
    presence_wake: Notify,
    /// Set (under the registry's write lock) by [`Hub::close_all`]: a
    /// connection registered afterwards is told at once.
    closing: AtomicBool,
}

impl Hub {
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> Hub {
        Hub {
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            queue,
            metrics,
            presence_wake: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// The server is shutting down: every connection, and any registered
    /// from now on, closes as "going away" (its outbox says
    /// [`Next::Closing`](outbox::Next::Closing)).
    pub fn close_all(&self) {
        let registry = self.registry.write();
        self.closing.store(true, Ordering::Release);
        for entry in registry.conns.values() {
            entry.outbox.close();
        }
    }

    /// Registers a connection that said hello with `token` (kept for
    /// agents only, see `agent_tokens`).
    pub fn register(&self, party: Party, token: TokenTag) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::default());
        let mut registry = self.registry.write();
        registry.conns.insert(
            id,
            Entry {
                outbox: Arc::clone(&outbox),
                party,
            },
        );
        match party {
            Party::Agent(agent) => {
                registry.agents.insert(id);
                registry.agent_tokens.insert(id, token);
                registry
                    .by_agent
                    .entry(agent)
                    .and_modify(|set| set.insert(id))
                    .or_insert(ConnSet::One(id));
                registry.went_dark.remove(&agent);
            }
            Party::Visitor { conversation, .. } => {
                registry
                    .by_conversation
                    .entry(conversation)
                    .and_modify(|set| set.insert(id))
                    .or_insert(ConnSet::One(id));
            }
        }
        if self.closing.load(Ordering::Acquire) {
            outbox.close();
        }
        drop(registry);
        self.metrics
            .connection_opened(matches!(party, Party::Agent(_)));
        Registration { id, outbox }
    }

    pub fn unregister(&self, id: ConnId) {
        let mut registry = self.registry.write();
        let Some(entry) = registry.conns.remove(&id) else {
            return;
        };
        match entry.party {
            Party::Agent(agent) => {
                registry.agents.remove(&id);
                registry.agent_tokens.remove(&id);
                if let Some(set) = registry.by_agent.get_mut(&agent)
                    && set.remove(id)
                {
                    registry.by_agent.remove(&agent);
                    registry.went_dark.insert(agent, Instant::now());
                    self.presence_wake.notify_one();
                }
            }
            Party::Visitor { conversation, .. } => {
                if let Some(set) = registry.by_conversation.get_mut(&conversation)
                    && set.remove(id)
                {
                    registry.by_conversation.remove(&conversation);
                }
            }
        }
        drop(registry);
        self.metrics
            .connection_closed(matches!(entry.party, Party::Agent(_)));
    }

    /// Fans committed messages out: to the conversation's visitor
    /// connections (unless a note) and to every agent connection, except the
    /// connection that sent it (which gets the ack instead).
    pub fn publish_messages(&self, messages: &[(Arc<StoredMessage>, Option<ConnId>)]) {
        let registry = self.registry.read();
        for (message, origin) in messages {
            let frame = frames::message(message);
            let visitors = if message.note {
                None
            } else {
                registry.by_conversation.get(&message.conversation_id)
            };
            let targets = registry.agents.iter().chain(visitors.into_iter().flatten());
            for id in targets {
                if Some(*id) == *origin {
                    continue;
                }
                if let Some(entry) = registry.conns.get(id) {
                    self.deliver(entry, &frame);
                }
            }
        }
    }

    /// To every agent connection.
    pub fn broadcast_agents(&self, frame: &Frame) {
        let registry = self.registry.read();
        for id in &registry.agents {
            if let Some(entry) = registry.conns.get(id) {
                self.deliver(entry, frame);
            }
        }
    }

    /// To the visitor connections of one conversation.
    pub fn send_to_visitors(&self, conversation: ConversationId, frame: &Frame) {
        let registry = self.registry.read();
        for id in registry
            .by_conversation
            .get(&conversation)
            .into_iter()
            .flatten()
        {
            if let Some(entry) = registry.conns.get(id) {
                self.deliver(entry, frame);
            }
        }
    }

    /// Typing and read frames go to the other side of the conversation and,
    /// for agents, to the other agents too (so colleagues see who is on it);
    /// never back to the connection they came from.
    pub fn relay(&self, from: ConnId, party: Party, conversation: ConversationId, frame: &Frame) {
        let registry = self.registry.read();
        let visitors = registry
            .by_conversation
            .get(&conversation)
            .into_iter()
            .flatten();
        let targets: Box<dyn Iterator<Item = &ConnId>> = match party {
            Party::Visitor { .. } => Box::new(registry.agents.iter()),
            Party::Agent(_) => Box::new(visitors.chain(registry.agents.iter())),
        };
        for id in targets {
            if *id == from {
                continue;
            }
            if let Some(entry) = registry.conns.get(id) {
                self.deliver(entry, frame);
            }
        }
    }

    pub fn is_agent_connected(&self, agent: AgentId) -> bool {
        self.registry.read().by_agent.contains_key(&agent)
    }

    /// The agents with at least one connection (for `/metrics`).
    pub fn connected_agents(&self) -> std::collections::HashSet<AgentId> {
        self.registry.read().by_agent.keys().copied().collect()
    }

    /// Closes the connections of revoked sessions with 4401 (called only
    /// by `auth::sessions`, after the revocation committed and the auth
    /// cache forgot the tokens). Returns how many it closed.
    pub fn end_sessions(&self, revoked: Revoked) -> usize {
        let (agent, only, except) = match revoked {
            Revoked::AgentToken { agent, token } => (agent, Some(token), None),
            Revoked::AgentTokens { agent, except } => (agent, None, except),
        };
        let registry = self.registry.read();
        let mut closed = 0;
        for id in registry.by_agent.get(&agent).into_iter().flatten() {
            let Some(&token) = registry.agent_tokens.get(id) else {
                continue;
            };
            if let Some(entry) = registry.conns.get(id)
                && only.is_none_or(|only| only == token)
                && except != Some(token)
            {
                entry.outbox.revoke();
                closed += 1;
            }
        }
        closed
    }

    /// How many connections an agent has open.
    pub fn agent_connections(&self, agent: AgentId) -> usize {
        self.registry
            .read()
            .by_agent
            .get(&agent)
            .map_or(0, ConnSet::len)
    }

    /// (Re)starts the grace period of an agent that has no connection (one
    /// set online over REST, or online when the server started). No-op for
    /// a connected agent.
    pub fn mark_dark(&self, agent: AgentId) {
        let mut registry = self.registry.write();
        if registry.by_agent.contains_key(&agent) {
            return;
        }
        registry.went_dark.insert(agent, Instant::now());
        drop(registry);
        self.presence_wake.notify_one();
    }

    /// Removes and returns the agents dark since `before` or earlier.
    pub fn take_dark(&self, before: Instant) -> Vec<AgentId> {
        let mut registry = self.registry.write();
        let due: Vec<AgentId> = registry
            .went_dark
            .iter()
            .filter(|(_, since)| **since <= before)
            .map(|(agent, _)| *agent)
            .collect();
        for agent in &due {
            registry.went_dark.remove(agent);
        }
        due
    }

    /// When the agent that has been dark longest went dark.
    pub fn oldest_dark(&self) -> Option<Instant> {
        self.registry.read().went_dark.values().min().copied()
    }

    /// Resolves when an agent goes dark (a wake-up is never lost: one
    /// that comes while nobody waits is kept for the next wait).
    pub async fn dark_changed(&self) {
        self.presence_wake.notified().await;
    }

    pub fn connection_count(&self) -> usize {
        self.registry.read().conns.len()
    }

    /// Never waits. A full queue means the client cannot keep up: it is
    /// cancelled, and its task closes the socket and unregisters it.
    fn deliver(&self, entry: &Entry, frame: &Frame) {
        match entry.outbox.push(frame.clone(), self.queue) {
            Push::Queued | Push::Dead => {}
            Push::Overflowed => self.metrics.slow_client_dropped(),
        }
    }

    /// Proves the indexes agree with `conns`. For tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let registry = self.registry.read();
        let mut indexed = 0usize;
        for (id, entry) in &registry.conns {
            match entry.party {
                Party::Agent(agent) => {
                    if !registry.agents.contains(id)
                        || !registry
                            .by_agent
                            .get(&agent)
                            .is_some_and(|s| s.contains(*id))
                    {
                        return Err(format!("agent connection {id} missing from an index"));
                    }
                }
                Party::Visitor { conversation, .. } => {
                    if !registry
                        .by_conversation
                        .get(&conversation)
                        .is_some_and(|s| s.contains(*id))
                    {
                        return Err(format!(
                            "visitor connection {id} missing from by_conversation"
                        ));
                    }
                    indexed += 1;
                }
            }
        }
        if registry.agent_tokens.len() != registry.agents.len()
            || registry
                .agents
                .iter()
                .any(|id| !registry.agent_tokens.contains_key(id))
        {
            return Err("agent_tokens does not match the agent connections".into());
        }
        let by_conv: usize = registry.by_conversation.values().map(ConnSet::len).sum();
        let by_agent: usize = registry.by_agent.values().map(ConnSet::len).sum();
        if by_conv != indexed
            || by_agent != registry.agents.len()
            || registry.agents.len() + indexed != registry.conns.len()
        {
            return Err("an index holds a connection that is gone".into());
        }
        if let Some(agent) = registry
            .went_dark
            .keys()
            .find(|agent| registry.by_agent.contains_key(agent))
        {
            return Err(format!("agent {agent} is connected and dark"));
        }
        if registry
            .by_conversation
            .values()
            .chain(registry.by_agent.values())
            .any(|set| matches!(set, ConnSet::Many(many) if many.len() < 2))
        {
            return Err("an empty or one-entry set was left in an index".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbox::Next;

    fn tag() -> TokenTag {
        TokenTag::of(&crate::auth::new_token())
    }

    fn next_seq(registration: &Registration) -> Option<(ConversationId, u64)> {
        match registration.outbox.try_next() {
            Some(Next::Frame(frame)) => frame.seq(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn stored(conversation: ConversationId, seq: u64, note: bool) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            conversation_id: conversation,
            seq,
            note,
            created_at: 0,
            json: Arc::from("{}"),
            start: false,
        })
    }

    #[test]
    fn routing_and_slow_clients() {
        let hub = Hub::new(2, Arc::new(Metrics::new()));
        let conv = ConversationId::new();
        let other = ConversationId::new();
        let agent = hub.register(Party::Agent(AgentId::new()), tag());
        let visitor = hub.register(
            Party::Visitor {
                visitor: VisitorId::new(),
                conversation: conv,
            },
            tag(),
        );
        let stranger = hub.register(
            Party::Visitor {
                visitor: VisitorId::new(),
                conversation: other,
            },
            tag(),
        );
        hub.check_invariants().expect("invariants");

        hub.publish_messages(&[
            (stored(conv, 1, false), Some(visitor.id)),
            (stored(conv, 2, true), None),
        ]);
        // The agent gets both, the sending visitor neither (ack instead, and
        // notes never), the other conversation's visitor nothing.
        assert_eq!(next_seq(&agent), Some((conv, 1)));
        assert_eq!(next_seq(&agent), Some((conv, 2)));
        assert!(visitor.outbox.try_next().is_none());
        assert!(stranger.outbox.try_next().is_none());

        // Queue of 2: the third undelivered frame kills the connection,
        // and the kill is what it sees next.
        for seq in 3..=5 {
            hub.publish_messages(&[(stored(conv, seq, false), None)]);
        }
        assert!(visitor.outbox.is_killed());
        assert!(agent.outbox.is_killed());
        assert!(!stranger.outbox.is_killed());
        assert!(matches!(visitor.outbox.try_next(), Some(Next::Killed)));

        hub.unregister(visitor.id);
        hub.unregister(agent.id);
        hub.check_invariants().expect("invariants after unregister");
        assert_eq!(hub.connection_count(), 1);
        hub.unregister(stranger.id);
        hub.check_invariants().expect("empty");
    }

    #[test]
    fn close_all_tells_every_connection_and_any_that_comes_later() {
        let hub = Hub::new(8, Arc::new(Metrics::new()));
        let conv = ConversationId::new();
        let agent = hub.register(Party::Agent(AgentId::new()), tag());
        let visitor = hub.register(
            Party::Visitor {
                visitor: VisitorId::new(),
                conversation: conv,
            },
            tag(),
        );
        hub.close_all();
        assert!(matches!(agent.outbox.try_next(), Some(Next::Closing)));
        assert!(matches!(visitor.outbox.try_next(), Some(Next::Closing)));
        // Frames published after the close are dropped, not queued.
        hub.publish_messages(&[(stored(conv, 1, false), None)]);
        assert!(matches!(agent.outbox.try_next(), Some(Next::Closing)));
        // A connection that registers during the shutdown is told at once.
        let late = hub.register(Party::Agent(AgentId::new()), tag());
        assert!(matches!(late.outbox.try_next(), Some(Next::Closing)));
        hub.check_invariants().expect("invariants");
    }

    #[test]
    fn a_conversation_open_in_several_tabs_reaches_each_until_it_closes() {
        let hub = Hub::new(8, Arc::new(Metrics::new()));
        let conv = ConversationId::new();
        let visitor = VisitorId::new();
        let party = Party::Visitor {
            visitor,
            conversation: conv,
        };
        let tabs: Vec<Registration> = (0..3).map(|_| hub.register(party, tag())).collect();
        hub.check_invariants().expect("three tabs");
        hub.send_to_visitors(conv, &frames::pong());
        for tab in &tabs {
            assert!(matches!(tab.outbox.try_next(), Some(Next::Frame(_))));
        }
        // Down to one (the set collapses back to its inline form), then none.
        hub.unregister(tabs[0].id);
        hub.unregister(tabs[2].id);
        hub.check_invariants().expect("one tab left");
        hub.send_to_visitors(conv, &frames::pong());
        assert!(tabs[0].outbox.try_next().is_none());
        assert!(matches!(tabs[1].outbox.try_next(), Some(Next::Frame(_))));
        hub.unregister(tabs[1].id);
        hub.check_invariants().expect("no tab left");
        assert_eq!(hub.connection_count(), 0);
    }

    #[test]
    fn ending_sessions_closes_exactly_the_revoked_tokens_connections() {
        let hub = Hub::new(8, Arc::new(Metrics::new()));
        let (amy, bob) = (AgentId::new(), AgentId::new());
        let (t1, t2) = (tag(), tag());
        let amy_t1 = hub.register(Party::Agent(amy), t1);
        let amy_t1_again = hub.register(Party::Agent(amy), t1);
        let amy_t2 = hub.register(Party::Agent(amy), t2);
        let bob_t = hub.register(Party::Agent(bob), tag());
        // Logout of t1: both its connections, nothing else.
        assert_eq!(
            hub.end_sessions(Revoked::AgentToken {
                agent: amy,
                token: t1
            }),
            2
        );
        assert!(matches!(amy_t1.outbox.try_next(), Some(Next::Revoked)));
        assert!(matches!(
            amy_t1_again.outbox.try_next(),
            Some(Next::Revoked)
        ));
        assert!(amy_t2.outbox.try_next().is_none());
        // Another agent's token with the same value names nothing of Amy's.
        assert_eq!(
            hub.end_sessions(Revoked::AgentToken {
                agent: bob,
                token: t2
            }),
            0
        );
        // A password change keeps the session that made it.
        assert_eq!(
            hub.end_sessions(Revoked::AgentTokens {
                agent: amy,
                except: Some(t2),
            }),
            2
        );
        assert!(amy_t2.outbox.try_next().is_none());
        // A reset keeps none.
        assert_eq!(
            hub.end_sessions(Revoked::AgentTokens {
                agent: amy,
                except: None,
            }),
            3
        );
        assert!(matches!(amy_t2.outbox.try_next(), Some(Next::Revoked)));
        assert!(bob_t.outbox.try_next().is_none());
        hub.check_invariants().expect("invariants");
    }

    #[test]
    fn an_agent_goes_dark_with_its_last_connection_only() {
        let hub = Hub::new(8, Arc::new(Metrics::new()));
        let amy = AgentId::new();
        let laptop = hub.register(Party::Agent(amy), tag());
        let phone = hub.register(Party::Agent(amy), tag());
        assert_eq!(hub.agent_connections(amy), 2);
        hub.unregister(laptop.id);
        assert_eq!(hub.oldest_dark(), None, "one connection is left");
        hub.unregister(phone.id);
        let since = hub.oldest_dark().expect("dark");
        hub.check_invariants().expect("invariants");
        // Coming back clears it; mark_dark ignores a connected agent.
        let back = hub.register(Party::Agent(amy), tag());
        hub.mark_dark(amy);
        assert_eq!(hub.oldest_dark(), None);
        hub.check_invariants().expect("invariants");
        hub.unregister(back.id);
        assert!(hub.take_dark(since).is_empty(), "went dark after `since`");
        assert_eq!(hub.take_dark(Instant::now()), vec![amy]);
        assert_eq!(hub.oldest_dark(), None);
    }
}
