//! FAQ retrieval: which entry a visitor's message asks, and how sure.
//!
//! Every question phrasing of every enabled entry is a document of
//! TF-IDF weights over the features of [`super::normalize::features`]
//! (sublinear term frequency `1 + ln tf`, smoothed idf
//! `ln((N + 1) / (df + 1)) + 1`), L2-normalised. A message is weighted the
//! same way (features the FAQ never uses get the highest idf: what the
//! FAQ cannot speak of lowers the score), and its **confidence** for an
//! entry is the cosine between the two, taking the entry's best phrasing.
//!
//! Why cosine and not raw BM25: a BM25 score grows with the query's length
//! and the rarity of its words, so the same number means "sure" for one
//! message and "unsure" for another, and no threshold fits both. A cosine
//! is bounded to 0..=1 and is 1 only when the message says what a phrasing
//! says, in the same proportions; one threshold then means roughly the
//! same everywhere, and the evaluation (`kefu-bench assist`) measures
//! what it buys.
//!
//! Scoring walks an inverted index (feature → postings), so a message
//! costs the postings of its own features, not the size of the FAQ.

use std::collections::HashMap;

use super::normalize::{features, normalize};
use crate::ids::FaqEntryId;

/// An entry as the index needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: FaqEntryId,
    pub questions: Vec<String>,
    pub answer: String,
}

/// A scored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub entry: FaqEntryId,
    /// Cosine of the message and the entry's best phrasing, 0..=1.
    pub confidence: f32,
    /// That phrasing, as the admin wrote it.
    pub question: String,
}

/// The thresholds of one app (`assist_settings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Answer at or above this confidence…
    pub answer: f32,
    /// …when the runner-up entry is at least this much lower.
    pub margin: f32,
    /// Between this and an answer: "did you mean…" choices. Below: a person.
    pub suggest: f32,
}

/// How many choices a "did you mean…" offers at most.
pub const CHOICES_MAX: usize = 3;

/// What the bot does with a message (before the hand-off words, which the
/// bot checks first).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Answer(Match),
    Choices(Vec<Match>),
    /// Nothing close enough: `best` is what came nearest, if anything.
    Unsure(Option<Match>),
}

struct Phrasing {
    entry: u32,
    text_index: u32,
}

/// One app's FAQ, ready to score messages against.
pub struct Index {
    entries: Vec<Entry>,
    docs: Vec<Phrasing>,
    terms: HashMap<String, u32>,
    idf: Vec<f32>,
    /// Per term: (document, normalised weight).
    postings: Vec<Vec<(u32, f32)>>,
    /// The idf of a feature no document has.
    unseen_idf: f32,
}

fn term_counts(text: &str) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for feature in features(&normalize(text)) {
        *counts.entry(feature).or_insert(0) += 1;
    }
    counts
}

fn tf(count: u32) -> f32 {
    1.0 + (count as f32).ln()
}

impl Index {
    pub fn build(entries: Vec<Entry>) -> Index {
        let mut docs = Vec::new();
        let mut doc_terms: Vec<HashMap<String, u32>> = Vec::new();
        for (e, entry) in entries.iter().enumerate() {
            for (q, question) in entry.questions.iter().enumerate() {
                docs.push(Phrasing {
                    entry: e as u32,
                    text_index: q as u32,
                });
                doc_terms.push(term_counts(question));
            }
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
        Index {
            entries,
            docs,
            terms,
            idf,
            postings,
            unseen_idf: (n + 1.0).ln() + 1.0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, id: FaqEntryId) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The best entries for `text`, best first, at most `max`, each entry
    /// once (its best phrasing).
    pub fn search(&self, text: &str, max: usize) -> Vec<Match> {
        let counts = term_counts(text);
        let mut query: Vec<(u32, f32)> = Vec::new();
        let mut norm = 0.0f32;
        for (term, count) in &counts {
            match self.terms.get(term) {
                Some(&id) => {
                    let w = tf(*count) * self.idf[id as usize];
                    norm += w * w;
                    query.push((id, w));
                }
                None => {
                    let w = tf(*count) * self.unseen_idf;
                    norm += w * w;
                }
            }
        }
        let norm = norm.sqrt();
        if norm == 0.0 || query.is_empty() {
            return Vec::new();
        }
        let mut scores = vec![0.0f32; self.docs.len()];
        for (id, w) in query {
            let w = w / norm;
            for &(doc, dw) in &self.postings[id as usize] {
                scores[doc as usize] += w * dw;
            }
        }
        // Each entry's best phrasing (documents are in entry order).
        let mut best: Vec<(f32, u32)> = vec![(0.0, 0); self.entries.len()];
        for (d, &score) in scores.iter().enumerate() {
            if score <= 0.0 {
                continue;
            }
            let doc = &self.docs[d];
            let slot = &mut best[doc.entry as usize];
            if score > slot.0 {
                *slot = (score, doc.text_index);
            }
        }
        let mut ranked: Vec<(u32, f32, u32)> = best
            .into_iter()
            .enumerate()
            .filter(|(_, (s, _))| *s > 0.0)
            .map(|(e, (s, q))| (e as u32, s, q))
            .collect();
        let order =
            |a: &(u32, f32, u32), b: &(u32, f32, u32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if ranked.len() > max && max > 0 {
            ranked.select_nth_unstable_by(max - 1, order);
            ranked.truncate(max);
        }
        ranked.sort_by(order);
        ranked
            .into_iter()
            .take(max)
            .map(|(e, score, q)| {
                let entry = &self.entries[e as usize];
                Match {
                    entry: entry.id,
                    confidence: score.min(1.0),
                    question: entry.questions[q as usize].clone(),
                }
            })
            .collect()
    }

    /// Answer, offer choices, or give up, by the thresholds.
    pub fn decide(&self, text: &str, thresholds: Thresholds) -> Decision {
        let matches = self.search(text, CHOICES_MAX.max(2));
        let Some(best) = matches.first().cloned() else {
            return Decision::Unsure(None);
        };
        let runner_up = matches.get(1).map_or(0.0, |m| m.confidence);
        if best.confidence >= thresholds.answer && best.confidence - runner_up >= thresholds.margin
        {
            return Decision::Answer(best);
        }
        let choices: Vec<Match> = matches
            .into_iter()
            .filter(|m| m.confidence >= thresholds.suggest)
            .take(CHOICES_MAX)
            .collect();
        if choices.is_empty() {
            Decision::Unsure(Some(best))
        } else {
            Decision::Choices(choices)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(questions: &[&str], answer: &str) -> Entry {
        Entry {
            id: FaqEntryId::new(),
            questions: questions.iter().map(|q| (*q).to_owned()).collect(),
            answer: answer.to_owned(),
        }
    }

    const THRESHOLDS: Thresholds = Thresholds {
        answer: 0.6,
        margin: 0.1,
        suggest: 0.3,
    };

    fn shop() -> Index {
        Index::build(vec![
            entry(
                &["怎么退货", "如何申请退货", "how do I return an item"],
                "退货：订单页点“申请售后”。",
            ),
            entry(&["运费多少", "包邮吗"], "满 99 元包邮。"),
            entry(&["发票怎么开", "可以开发票吗"], "下单时填写发票抬头。"),
            entry(&["退款多久到账"], "原路退回，1–3 个工作日。"),
        ])
    }

    #[test]
    fn the_same_question_is_certain_and_traditional_matches() {
        let index = shop();
        let best = &index.search("怎麼退貨？", 3)[0];
        assert_eq!(best.question, "怎么退货");
        assert!(best.confidence > 0.99, "{best:?}");
        assert!(matches!(
            index.decide("怎麼退貨", THRESHOLDS),
            Decision::Answer(_)
        ));
        let english = &index.search("How do I RETURN an item?", 1)[0];
        assert!(english.confidence > 0.99);
    }

    #[test]
    fn an_unrelated_message_is_unsure() {
        let index = shop();
        match index.decide("你们老板叫什么名字", THRESHOLDS) {
            Decision::Unsure(_) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(index.decide("🙂", THRESHOLDS), Decision::Unsure(None));
        assert_eq!(
            Index::build(Vec::new()).decide("退货", THRESHOLDS),
            Decision::Unsure(None)
        );
    }

    #[test]
    fn a_message_between_two_entries_gets_choices() {
        let index = shop();
        // Half of it is the return entry, half the refund entry.
        match index.decide("退货退款", THRESHOLDS) {
            Decision::Choices(choices) => assert!(choices.len() >= 2, "{choices:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn confidence_is_bounded_and_ranked() {
        let index = shop();
        let found = index.search("运费 包邮", 3);
        assert!(found[0].question.contains("包邮") || found[0].question.contains("运费"));
        for pair in found.windows(2) {
            assert!(pair[0].confidence >= pair[1].confidence);
        }
        assert!(found.iter().all(|m| (0.0..=1.0).contains(&m.confidence)));
    }
}
