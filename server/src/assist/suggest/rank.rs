//! Ranking replies for a visitor's message: one app's snapshot of the
//! shop's canned replies and of the learnt pairs that may be shown.
//!
//! Every document is TF-IDF over the character 1–2-grams of
//! [`crate::assist::normalize::features`] (the FAQ index's weighting:
//! sublinear tf, smoothed idf, L2-normalised), and a reply's score is the
//! best cosine between the visitor's message and one of its documents:
//! - each learnt pair's visitor message, for the reply an agent gave it
//!   (a canned reply too, when the agent inserted it: `meta.canned_id`);
//! - each canned reply's own title and opening, weighted by
//!   [`CANNED_TEXT_WEIGHT`] (a reply's words are not a question's words,
//!   so this is weaker evidence than a visitor who asked the same).
//!
//! A reply more agents gave gets a small bonus ([`POPULARITY`]), so that
//! among close scores the habitual answer comes first.

use std::collections::HashMap;

use super::learnt::{Document, ReplyKey};
use crate::assist::normalize::{features, normalize};
use crate::ids::AgentId;

/// How much a canned reply's own text counts beside a question visitors
/// actually asked. Chosen by hand, not tuned: the evaluation set is too
/// small to tune it without fitting its test lines.
pub const CANNED_TEXT_WEIGHT: f32 = 0.8;
/// Most score a reply's popularity adds (reached at 20 conversations).
pub const POPULARITY: f32 = 0.05;
/// Below this score nothing is suggested (chosen by hand: a message that
/// shares a word or two by chance scores under it).
pub const SCORE_MIN: f32 = 0.15;
/// Characters of a canned reply's body that are indexed.
pub const CANNED_TEXT_CHARS: usize = 300;

/// A canned reply as the ranker needs it.
#[derive(Debug, Clone)]
pub struct CannedDoc {
    pub id: String,
    /// `None` for a shared reply.
    pub owner: Option<AgentId>,
    pub title: String,
    pub body: String,
}

/// What may be suggested.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidate {
    Canned {
        id: String,
        owner: Option<AgentId>,
    },
    /// A learnt reply, masked, and how many conversations it was sent in.
    Learnt {
        text: String,
        conversations: u32,
    },
}

/// One app's replies, ready to rank.
pub struct Ranker {
    candidates: Vec<Candidate>,
    bonus: Vec<f32>,
    /// Per document: (candidate, weight).
    docs: Vec<(u32, f32)>,
    terms: HashMap<String, u32>,
    idf: Vec<f32>,
    postings: Vec<Vec<(u32, f32)>>,
    unseen_idf: f32,
}

fn counts(normalized: &str) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for feature in features(normalized) {
        *counts.entry(feature).or_insert(0) += 1;
    }
    counts
}

fn tf(count: u32) -> f32 {
    1.0 + (count as f32).ln()
}

impl Ranker {
    /// `documents` from [`super::learnt::Pairs::documents`]; pairs whose
    /// canned reply is not in `canned` (deleted since) are dropped.
    pub fn build(canned: &[CannedDoc], documents: &[Document]) -> Ranker {
        let mut candidates = Vec::new();
        let mut conversations: Vec<u32> = Vec::new();
        let mut by_key: HashMap<ReplyKey, u32> = HashMap::new();
        let mut doc_terms: Vec<HashMap<String, u32>> = Vec::new();
        let mut docs = Vec::new();
        for reply in canned {
            let index = candidates.len() as u32;
            candidates.push(Candidate::Canned {
                id: reply.id.clone(),
                owner: reply.owner,
            });
            conversations.push(0);
            by_key.insert(ReplyKey::Canned(reply.id.clone()), index);
            let opening: String = reply.body.chars().take(CANNED_TEXT_CHARS).collect();
            doc_terms.push(counts(&normalize(&format!("{} {opening}", reply.title))));
            docs.push((index, CANNED_TEXT_WEIGHT));
        }
        for document in documents {
            let index = match by_key.get(&document.reply) {
                Some(&index) => index,
                None => {
                    let Some(text) = &document.text else {
                        continue; // a canned reply deleted since
                    };
                    let index = candidates.len() as u32;
                    candidates.push(Candidate::Learnt {
                        text: text.clone(),
                        conversations: document.conversations,
                    });
                    conversations.push(0);
                    by_key.insert(document.reply.clone(), index);
                    index
                }
            };
            let seen = &mut conversations[index as usize];
            *seen = (*seen).max(document.conversations);
            doc_terms.push(counts(&document.question));
            docs.push((index, 1.0));
        }
        let mut terms: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        for counts in &doc_terms {
            for term in counts.keys() {
                let next = terms.len() as u32;
                let id = *terms.entry(term.clone()).or_insert(next);
                if id as usize == df.len() {
                    df.push(0);
                }
                df[id as usize] += 1;
            }
        }
        let n = docs.len() as f32;
        let idf: Vec<f32> = df
            .iter()
            .map(|&d| ((n + 1.0) / (d as f32 + 1.0)).ln() + 1.0)
            .collect();
        let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); idf.len()];
        for (d, counts) in doc_terms.iter().enumerate() {
            let weights: Vec<(u32, f32)> = counts
                .iter()
                .map(|(term, &count)| {
                    let id = terms[term];
                    (id, tf(count) * idf[id as usize])
                })
                .collect();
            let norm = weights.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
            if norm > 0.0 {
                for (id, w) in weights {
                    postings[id as usize].push((d as u32, w / norm));
                }
            }
        }
        let bonus = conversations
            .iter()
            .map(|&c| POPULARITY * (c.min(20) as f32 / 20.0))
            .collect();
        Ranker {
            candidates,
            bonus,
            docs,
            terms,
            idf,
            postings,
            unseen_idf: (n + 1.0).ln() + 1.0,
        }
    }

    /// How many replies may be suggested.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// The best replies for the visitor's `text`, best first, at most
    /// `max`, each scoring at least [`SCORE_MIN`] and passing `allowed`
    /// (the caller's own and shared canned replies).
    pub fn rank(
        &self,
        text: &str,
        max: usize,
        allowed: impl Fn(&Candidate) -> bool,
    ) -> Vec<(&Candidate, f32)> {
        let query = counts(&super::learnt::question_key(text));
        let mut weights: Vec<(u32, f32)> = Vec::new();
        let mut norm = 0.0f32;
        for (term, &count) in &query {
            match self.terms.get(term) {
                Some(&id) => {
                    let w = tf(count) * self.idf[id as usize];
                    norm += w * w;
                    weights.push((id, w));
                }
                None => {
                    let w = tf(count) * self.unseen_idf;
                    norm += w * w;
                }
            }
        }
        let norm = norm.sqrt();
        if norm == 0.0 || weights.is_empty() {
            return Vec::new();
        }
        let mut scores = vec![0.0f32; self.docs.len()];
        for (id, w) in weights {
            for &(doc, dw) in &self.postings[id as usize] {
                scores[doc as usize] += w / norm * dw;
            }
        }
        let mut best = vec![0.0f32; self.candidates.len()];
        for (d, &score) in scores.iter().enumerate() {
            if score > 0.0 {
                let (candidate, weight) = self.docs[d];
                let slot = &mut best[candidate as usize];
                *slot = slot.max(score.min(1.0) * weight);
            }
        }
        let mut ranked: Vec<(usize, f32)> = best
            .into_iter()
            .enumerate()
            .filter(|&(_, s)| s > 0.0)
            .map(|(c, s)| (c, s + self.bonus[c]))
            .filter(|&(c, s)| s >= SCORE_MIN && allowed(&self.candidates[c]))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(max)
            .map(|(c, s)| (&self.candidates[c], s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assist::suggest::learnt::question_key;

    fn canned(id: &str, title: &str, body: &str) -> CannedDoc {
        CannedDoc {
            id: id.into(),
            owner: None,
            title: title.into(),
            body: body.into(),
        }
    }

    fn learnt(question: &str, reply: ReplyKey, text: Option<&str>) -> Document {
        Document {
            question: question_key(question),
            reply,
            text: text.map(str::to_owned),
            conversations: 2,
        }
    }

    #[test]
    fn what_visitors_asked_ranks_the_reply_agents_gave() {
        let canned = [
            canned("invoice", "开发票", "下单时在发票一栏填写抬头和税号。"),
            canned("return", "退货流程", "在我的订单中点击申请售后，选择退货。"),
        ];
        let docs = [
            learnt(
                "钱什么时候能退回来",
                ReplyKey::Text("退款原路返回".into()),
                Some("退款原路返回，1-3 个工作日到账。"),
            ),
            learnt("衣服不想要了", ReplyKey::Canned("return".into()), None),
            learnt("x", ReplyKey::Canned("deleted".into()), None),
        ];
        let ranker = Ranker::build(&canned, &docs);
        assert_eq!(ranker.len(), 3);
        let all = |_: &Candidate| true;
        let top = ranker.rank("我的钱什么时候能退回来啊", 3, all);
        assert_eq!(
            top[0].0,
            &Candidate::Learnt {
                text: "退款原路返回，1-3 个工作日到账。".into(),
                conversations: 2
            }
        );
        // Learnt through meta.canned_id: no shared words with the canned text.
        let top = ranker.rank("这件衣服不想要了", 3, all);
        assert!(matches!(top[0].0, Candidate::Canned { id, .. } if id == "return"));
        // The canned text itself.
        let top = ranker.rank("能开发票吗", 3, all);
        assert!(matches!(top[0].0, Candidate::Canned { id, .. } if id == "invoice"));
        assert!(ranker.rank("🙂", 3, all).is_empty());
        assert!(ranker.rank("能开发票吗", 3, |_| false).is_empty());
        let scores: Vec<f32> = ranker
            .rank("退货 发票 退款", 3, all)
            .iter()
            .map(|r| r.1)
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
}
