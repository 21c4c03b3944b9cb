//! What the shop's agents answered: (visitor message → agent reply) pairs
//! from resolved chats, in memory, bounded, and the privacy rule that
//! decides which replies may ever be shown in another chat.
//!
//! **Invariants.**
//! - A learnt reply is stored masked ([`super::mask`]) and becomes
//!   *shown-able* only once it was seen in the chats of at least
//!   [`VISITORS_MIN`] different visitors (so in as many conversations): a
//!   reply one customer got, with whatever of theirs it holds, is never
//!   offered in another customer's chat. A reply an agent inserted from a
//!   canned reply (`meta.canned_id`) is learnt as that canned reply: what
//!   may be shown is the shop's own canned text.
//! - The visitor messages are kept only as retrieval keys (masked and
//!   normalised); nothing here ever returns them.
//! - At most [`EXAMPLES_MAX`] pairs over all apps: the oldest go first,
//!   and a reply goes with its last pair. One pair is kept once however
//!   often it recurs (its reply's count of conversations still grows).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::mask::mask;
use crate::assist::normalize::{features, normalize};
use crate::ids::{AppId, VisitorId};

/// Pairs kept, over all apps. Each costs about 1 KB with its share of an
/// app's ranking index, so the learnt suggestions stay under ~30 MB.
pub const EXAMPLES_MAX: usize = 20_000;
/// Characters of the visitor's side of a pair kept (after masking).
pub const QUESTION_MAX_CHARS: usize = 200;
/// Longer replies are not learnt: a long answer is rarely reused word for
/// word, and is the likelier to hold one customer's details.
pub const REPLY_MAX_CHARS: usize = 500;
/// A learnt reply is suggested only once this many different visitors
/// were sent it.
pub const VISITORS_MIN: usize = 2;

/// One visitor turn and the agent reply that answered it.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The visitor's message (up to three in a row, joined).
    pub question: String,
    pub reply: String,
    /// `meta.canned_id` of the reply: inserted from that canned reply.
    pub canned_id: Option<String>,
}

/// What a pair's reply is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplyKey {
    Canned(String),
    /// The masked reply, normalised: two replies that differ only in an
    /// order number or a full-width comma are one.
    Text(String),
}

#[derive(Debug)]
struct Reply {
    /// Masked, as an agent first wrote it (empty for a canned reply).
    text: String,
    first_visitor: VisitorId,
    /// Sent to a visitor other than the first one.
    others: bool,
    conversations: u32,
    examples: u32,
}

#[derive(Debug)]
struct Example {
    app: AppId,
    question: String,
    reply: ReplyKey,
}

/// The learnt pairs of every app.
#[derive(Debug, Default)]
pub struct Pairs {
    examples: VecDeque<Example>,
    present: HashSet<u64>,
    replies: HashMap<(AppId, ReplyKey), Reply>,
}

fn example_hash(app: AppId, question: &str, reply: &ReplyKey) -> u64 {
    let mut hasher = DefaultHasher::new();
    app.hash(&mut hasher);
    question.hash(&mut hasher);
    reply.hash(&mut hasher);
    hasher.finish()
}

/// The visitor's side of a pair as it is kept and matched: masked,
/// normalised, cut.
pub fn question_key(text: &str) -> String {
    let masked = mask(text).0;
    normalize(&masked)
        .chars()
        .take(QUESTION_MAX_CHARS)
        .collect()
}

/// A pair's document for the ranker, when its reply may be shown.
#[derive(Debug, Clone)]
pub struct Document {
    pub question: String,
    pub reply: ReplyKey,
    /// The masked text of a learnt reply (`None` for canned).
    pub text: Option<String>,
    pub conversations: u32,
}

impl Pairs {
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Learns one conversation's pairs; `canned` says whether a canned
    /// reply id exists (an unknown one is learnt as text). Returns how many
    /// pairs were new.
    pub fn learn(
        &mut self,
        app: AppId,
        visitor: VisitorId,
        pairs: &[Pair],
        canned: &dyn Fn(&str) -> bool,
    ) -> usize {
        let mut counted: HashSet<ReplyKey> = HashSet::new();
        let mut added = 0;
        for pair in pairs {
            let question = question_key(&pair.question);
            if features(&question).is_empty() {
                continue;
            }
            let (key, text) = match pair.canned_id.as_deref().filter(|id| canned(id)) {
                Some(id) => (ReplyKey::Canned(id.to_owned()), String::new()),
                None => {
                    let reply = pair.reply.trim();
                    let length = reply.chars().count();
                    if !(2..=REPLY_MAX_CHARS).contains(&length) {
                        continue;
                    }
                    let masked = mask(reply).0;
                    let key = normalize(&masked);
                    if features(&key).is_empty() {
                        continue;
                    }
                    (ReplyKey::Text(key), masked)
                }
            };
            let reply = self
                .replies
                .entry((app, key.clone()))
                .or_insert_with(|| Reply {
                    text,
                    first_visitor: visitor,
                    others: false,
                    conversations: 0,
                    examples: 0,
                });
            if reply.first_visitor != visitor {
                reply.others = true;
            }
            if counted.insert(key.clone()) {
                reply.conversations = reply.conversations.saturating_add(1);
            }
            let hash = example_hash(app, &question, &key);
            if !self.present.insert(hash) {
                continue;
            }
            reply.examples += 1;
            self.examples.push_back(Example {
                app,
                question,
                reply: key,
            });
            added += 1;
            while self.examples.len() > EXAMPLES_MAX {
                self.evict();
            }
        }
        added
    }

    fn evict(&mut self) {
        let Some(old) = self.examples.pop_front() else {
            return;
        };
        self.present
            .remove(&example_hash(old.app, &old.question, &old.reply));
        let id = (old.app, old.reply);
        if let Some(reply) = self.replies.get_mut(&id) {
            reply.examples = reply.examples.saturating_sub(1);
            if reply.examples == 0 {
                self.replies.remove(&id);
            }
        }
    }

    /// The pairs of `app` whose reply may be shown: canned ones, and
    /// learnt ones sent to at least [`VISITORS_MIN`] visitors.
    pub fn documents(&self, app: AppId) -> Vec<Document> {
        self.examples
            .iter()
            .filter(|e| e.app == app)
            .filter_map(|e| {
                let reply = self.replies.get(&(app, e.reply.clone()))?;
                let text = match &e.reply {
                    ReplyKey::Canned(_) => None,
                    ReplyKey::Text(_) if reply.others => Some(reply.text.clone()),
                    ReplyKey::Text(_) => return None,
                };
                Some(Document {
                    question: e.question.clone(),
                    reply: e.reply.clone(),
                    text,
                    conversations: reply.conversations,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(question: &str, reply: &str) -> Pair {
        Pair {
            question: question.into(),
            reply: reply.into(),
            canned_id: None,
        }
    }

    #[test]
    fn a_reply_is_shown_only_once_two_visitors_got_it() {
        let app = AppId::new();
        let none = |_: &str| false;
        let mut pairs = Pairs::default();
        let (alice, bob) = (VisitorId::new(), VisitorId::new());
        pairs.learn(
            app,
            alice,
            &[pair(
                "怎么退货",
                "您的订单 202612070001 可以退，寄回地址是李雷家",
            )],
            &none,
        );
        assert!(pairs.documents(app).is_empty());
        // The same visitor again, in another chat: still one customer.
        pairs.learn(
            app,
            alice,
            &[pair(
                "退货怎么弄",
                "您的订单 202612070002 可以退，寄回地址是李雷家",
            )],
            &none,
        );
        assert!(pairs.documents(app).is_empty());
        pairs.learn(
            app,
            bob,
            &[pair(
                "我要退货",
                "您的订单 202612079999 可以退，寄回地址是李雷家",
            )],
            &none,
        );
        let docs = pairs.documents(app);
        assert_eq!(docs.len(), 3);
        assert!(docs.iter().all(|d| d.text.as_deref()
            == Some("您的订单 [号码] 可以退，寄回地址是李雷家")
            && d.conversations == 3));
        // Another app learns nothing from it.
        assert!(pairs.documents(AppId::new()).is_empty());
    }

    #[test]
    fn long_replies_are_not_learnt_and_questions_are_cut() {
        let app = AppId::new();
        let none = |_: &str| false;
        let mut pairs = Pairs::default();
        let long = "好".repeat(REPLY_MAX_CHARS + 1);
        let longest = "行".repeat(REPLY_MAX_CHARS);
        for visitor in [VisitorId::new(), VisitorId::new()] {
            let question = format!("问{}", "题".repeat(QUESTION_MAX_CHARS * 2));
            pairs.learn(
                app,
                visitor,
                &[
                    pair(&question, &long),
                    pair(&question, &longest),
                    pair(&question, "好"),
                ],
                &none,
            );
        }
        let docs = pairs.documents(app);
        assert_eq!(docs.len(), 1, "{docs:?}");
        assert_eq!(docs[0].text.as_deref(), Some(longest.as_str()));
        assert_eq!(docs[0].question.chars().count(), QUESTION_MAX_CHARS);
    }

    fn letters(n: usize) -> String {
        format!("{n:06}")
            .bytes()
            .map(|d| char::from(b'a' + d - b'0'))
            .collect()
    }

    #[test]
    fn canned_replies_are_learnt_by_id_and_memory_is_bounded() {
        let app = AppId::new();
        let mut pairs = Pairs::default();
        let known = |id: &str| id == "c1";
        let with_canned = |id: &str| Pair {
            canned_id: Some(id.into()),
            ..pair("发票怎么开", "下单时填写抬头")
        };
        pairs.learn(
            app,
            VisitorId::new(),
            &[with_canned("c1"), with_canned("unknown")],
            &known,
        );
        let docs = pairs.documents(app);
        assert_eq!(docs.len(), 1, "{docs:?}");
        assert_eq!(docs[0].reply, ReplyKey::Canned("c1".into()));
        for n in 0..EXAMPLES_MAX + 10 {
            pairs.learn(
                app,
                VisitorId::new(),
                // Letters, not digits: 5 digits would be masked alike.
                &[pair(&format!("问题 {}", letters(n)), "好的")],
                &known,
            );
        }
        assert_eq!(pairs.len(), EXAMPLES_MAX);
        // The first pairs went first.
        assert!(
            pairs
                .documents(app)
                .iter()
                .all(|d| d.reply != ReplyKey::Canned("c1".into()))
        );
        assert_eq!(pairs.replies.len(), 1);
    }
}
