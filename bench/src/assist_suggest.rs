//! `kefu-bench assist`, reply suggestions: how often the top 3 held the
//! canned reply the agent then used (docs/ASSIST.md, "Reply suggestions").
//!
//! The set (`bench/data/assist/suggest_*.tsv`) is an imaginary shop's
//! canned replies and chats: round 1 is the history of resolved chats the
//! suggestions learn from (visitor message → the agent's canned reply or
//! own text), round 2, written later, the test (visitor message → the
//! canned reply the agent used). Round-2 lines that are near duplicates of
//! a round-1 line (normalised character-bigram Jaccard ≥
//! [`crate::assist::NEAR_DUPLICATE`]) are dropped, so what is measured
//! was never learnt. It runs the server's own code in-process
//! (`assist::suggest`), learning the history as the learner does.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use hdrhistogram::Histogram;
use kefu_server::assist::normalize::normalize;
use kefu_server::assist::suggest::learnt::{Pair, Pairs};
use kefu_server::assist::suggest::rank::{Candidate, CannedDoc, Ranker};
use kefu_server::ids::{AppId, VisitorId};
use serde_json::{Value, json};

const CANNED: &str = include_str!("../data/assist/suggest_canned.tsv");
pub(crate) const CHATS: &str = include_str!("../data/assist/suggest_chats.tsv");

struct Line {
    round: u32,
    visitor: String,
    text: String,
    canned: Option<String>,
    reply: String,
}

fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
}

fn canned() -> Vec<CannedDoc> {
    rows(CANNED)
        .map(|c| CannedDoc {
            id: c[0].to_owned(),
            owner: None,
            title: c[1].to_owned(),
            body: c[2].to_owned(),
        })
        .collect()
}

fn chats() -> Vec<Line> {
    rows(CHATS)
        .map(|c| Line {
            round: c[0].parse().unwrap_or(0),
            visitor: c[1].to_owned(),
            text: c[2].to_owned(),
            canned: (c[3] != "-").then(|| c[3].to_owned()),
            reply: c.get(4).copied().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn bigrams(text: &str) -> HashSet<(char, char)> {
    let chars: Vec<char> = normalize(text)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

fn near(a: &HashSet<(char, char)>, b: &HashSet<(char, char)>) -> bool {
    let union = a.union(b).count();
    union > 0 && a.intersection(b).count() as f64 / union as f64 >= crate::assist::NEAR_DUPLICATE
}

/// Learns the history as the server's learner does: one resolved chat per
/// line, from its visitor.
fn learn(history: &[&Line], app: AppId, canned: &[CannedDoc]) -> Pairs {
    let mut visitors: HashMap<&str, VisitorId> = HashMap::new();
    let known: HashSet<&str> = canned.iter().map(|c| c.id.as_str()).collect();
    let body = |slug: &str| {
        canned
            .iter()
            .find(|c| c.id == slug)
            .map(|c| c.body.clone())
            .unwrap_or_default()
    };
    let mut pairs = Pairs::default();
    for line in history {
        let visitor = *visitors.entry(line.visitor.as_str()).or_default();
        let pair = Pair {
            question: line.text.clone(),
            reply: match &line.canned {
                Some(slug) => body(slug),
                None => line.reply.clone(),
            },
            canned_id: line.canned.clone(),
        };
        pairs.learn(app, visitor, &[pair], &|id| known.contains(id));
    }
    pairs
}

#[derive(Default)]
struct Hits {
    lines: usize,
    top1: usize,
    top3: usize,
    /// Lines with no suggestion at all.
    empty: usize,
    /// Lines whose top 3 missed the canned reply used.
    missed: Vec<String>,
}

impl Hits {
    fn json(&self) -> Value {
        let rate = |n: usize| round(n as f64 / self.lines.max(1) as f64);
        json!({
            "lines": self.lines,
            "hit_rate_top3": rate(self.top3), "hits_top3": self.top3,
            "hit_rate_top1": rate(self.top1), "hits_top1": self.top1,
            "no_suggestion": self.empty,
            "missed": self.missed,
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn evaluate(ranker: &Ranker, test: &[&Line], shown: &mut Vec<String>) -> Hits {
    let mut hits = Hits::default();
    for line in test {
        hits.lines += 1;
        let top = ranker.rank(&line.text, 3, |_| true);
        if top.is_empty() {
            hits.empty += 1;
        }
        let is_expected = |c: &Candidate| matches!(c, Candidate::Canned { id, .. } if Some(id) == line.canned.as_ref());
        if top.first().is_some_and(|(c, _)| is_expected(c)) {
            hits.top1 += 1;
        }
        if top.iter().any(|(c, _)| is_expected(c)) {
            hits.top3 += 1;
        } else {
            hits.missed.push(line.text.clone());
        }
        for (candidate, _) in top {
            if let Candidate::Learnt { text, .. } = candidate {
                shown.push(text.clone());
            }
        }
    }
    hits
}

pub fn run(smoke: bool) -> anyhow::Result<Value> {
    let canned = canned();
    let all = chats();
    let history: Vec<&Line> = all.iter().filter(|l| l.round == 1).collect();
    let history_grams: Vec<_> = history.iter().map(|l| bigrams(&l.text)).collect();
    let mut dropped = Vec::new();
    let mut test: Vec<&Line> = Vec::new();
    for line in all.iter().filter(|l| l.round == 2) {
        let grams = bigrams(&line.text);
        if history_grams.iter().any(|h| near(&grams, h)) {
            dropped.push(line.text.clone());
        } else {
            test.push(line);
        }
    }
    let app = AppId::new();
    let pairs = learn(&history, app, &canned);
    let documents = pairs.documents(app);
    let with_history = Ranker::build(&canned, &documents);
    let canned_only = Ranker::build(&canned, &[]);
    let mut shown = Vec::new();
    let learnt_hits = evaluate(&with_history, &test, &mut shown);
    let mut ignored = Vec::new();
    let canned_hits = evaluate(&canned_only, &test, &mut ignored);

    // The privacy rule, checked from the data and not from the code under
    // test: a learnt text shown must have been sent to two visitors.
    let mut senders: HashMap<String, HashSet<&str>> = HashMap::new();
    for line in history.iter().filter(|l| l.canned.is_none()) {
        let masked = kefu_server::assist::suggest::mask::mask(line.reply.trim()).0;
        senders
            .entry(normalize(&masked))
            .or_default()
            .insert(&line.visitor);
    }
    let shown_from_one_visitor = shown
        .iter()
        .filter(|text| senders.get(&normalize(text)).is_none_or(|v| v.len() < 2))
        .count();
    let shown_unmasked_digits = shown
        .iter()
        .filter(|text| text.chars().filter(char::is_ascii_digit).count() >= 5)
        .count();

    // Speed: a shop's worth of history (every round-1 line asked about
    // many products, by as many visitors), ranked against round 2.
    let size = if smoke { 2_000 } else { 20_000 };
    let products = [
        "红色外套",
        "蓝色裤子",
        "黑色耳机",
        "白色水杯",
        "灰色背包",
        "绿色帽子",
        "粉色裙子",
        "紫色手表",
        "黄色台灯",
        "棕色围巾",
    ];
    let mut large = Pairs::default();
    let known: HashSet<&str> = canned.iter().map(|c| c.id.as_str()).collect();
    let mut learnt = 0;
    'outer: for round_of in 0.. {
        for product in products {
            for line in &history {
                if learnt >= size {
                    break 'outer;
                }
                let pair = Pair {
                    question: format!("{product}{round_of}{}", line.text),
                    reply: line.reply.clone(),
                    canned_id: line.canned.clone(),
                };
                large.learn(app, VisitorId::new(), &[pair], &|id| known.contains(id));
                learnt += 1;
            }
        }
    }
    let started = Instant::now();
    let large_documents = large.documents(app);
    let large_ranker = Ranker::build(&canned, &large_documents);
    let build_ms = started.elapsed().as_millis();
    let mut latency = Histogram::<u64>::new(3)?;
    let repeats = if smoke { 1 } else { 20 };
    for _ in 0..repeats {
        for line in &test {
            let started = Instant::now();
            std::hint::black_box(large_ranker.rank(&line.text, 3, |_| true));
            latency.record(started.elapsed().as_micros() as u64)?;
        }
    }

    Ok(json!({
        "set": {
            "canned_replies": canned.len(),
            "history_lines (round 1)": history.len(),
            "test_lines (round 2, after dedup)": test.len(),
            "round_2_dropped_as_near_duplicates_of_round_1": dropped,
            "pairs_learnt": pairs.len(),
            "documents_that_may_be_shown": documents.len(),
        },
        "suggestions (canned + learnt history)": learnt_hits.json(),
        "baseline (canned replies' own text only)": canned_hits.json(),
        "privacy": {
            "learnt_suggestions_shown": shown.len(),
            "shown_but_sent_to_fewer_than_2_visitors": shown_from_one_visitor,
            "shown_with_5_or_more_digits": shown_unmasked_digits,
        },
        "latency": {
            "pairs": large.len(),
            "ranker_build_ms": build_ms,
            "rank_us": {
                "p50": latency.value_at_quantile(0.5),
                "p99": latency.value_at_quantile(0.99),
                "max": latency.max(),
                "samples": latency.len(),
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_parses_and_labels_name_canned_replies() {
        let slugs: HashSet<String> = canned().into_iter().map(|c| c.id).collect();
        assert_eq!(slugs.len(), 15);
        for line in chats() {
            assert!(matches!(line.round, 1 | 2), "{}", line.text);
            match &line.canned {
                Some(slug) => assert!(slugs.contains(slug), "{slug}"),
                None => assert!(line.round == 1 && !line.reply.is_empty(), "{}", line.text),
            }
        }
    }

    #[test]
    fn the_smoke_run_finds_most_canned_replies() {
        let report = run(true).expect("runs");
        let rate = report["suggestions (canned + learnt history)"]["hit_rate_top3"]
            .as_f64()
            .expect("rate");
        assert!(rate > 0.5, "{report:#}");
        assert_eq!(
            report["privacy"]["shown_but_sent_to_fewer_than_2_visitors"],
            0
        );
    }
}
