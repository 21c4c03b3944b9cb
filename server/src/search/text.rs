//! The text side of search: which characters are indexed by bigram, how
//! a query is parsed into trigram and bigram terms, and snippets (plain
//! text segments, never HTML).

use serde::Serialize;

use super::{QUERY_MAX_CHARS, TERMS_MAX};
use crate::error::ApiError;

/// Chinese, Japanese and Korean characters: indexed by bigram.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x3FFFF) // CJK Extensions B–H
}

/// Overlapping pairs of adjacent CJK characters, space-separated, with a
/// `0` token between runs so that a phrase of bigrams only matches inside
/// one run: "我要退款!ok 发票" → "我要 要退 退款 0 发票".
pub fn cjk_bigrams(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut previous_pair_at: Option<usize> = None;
    for (at, pair) in chars.windows(2).enumerate() {
        if is_cjk(pair[0]) && is_cjk(pair[1]) {
            match previous_pair_at {
                Some(previous) if previous + 1 == at => out.push(' '),
                Some(_) => out.push_str(" 0 "),
                None => {}
            }
            out.push(pair[0]);
            out.push(pair[1]);
            previous_pair_at = Some(at);
        }
    }
    out
}

/// A parsed query: trigram terms (3+ characters) and bigram terms
/// (exactly 2 CJK characters), all of which must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub terms: Vec<String>,
    trigram: Vec<String>,
    bigram: Vec<String>,
}

/// Refuses free text that cannot be a search: control characters other
/// than whitespace (tabs and line breaks separate terms). A NUL is the one
/// that matters: FTS5 reads its query as a C string, so `a\0bc` would end
/// inside a quoted phrase ("unterminated string", an SQL error), and
/// nobody types the others. Shared by every route whose free text reaches
/// SQL (`/search`, the ticket list's `q`, the audit log's `action`).
pub fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(
            ApiError::bad_request(format!("{field} must not contain control characters"))
                .in_field(field.to_owned()),
        );
    }
    Ok(())
}

impl Query {
    pub fn parse(q: &str) -> Result<Query, ApiError> {
        let q = q.trim();
        if q.is_empty() {
            return Err(ApiError::bad_request("q is required").in_field("q"));
        }
        if q.chars().count() > QUERY_MAX_CHARS {
            return Err(ApiError::bad_request(format!(
                "q is longer than {QUERY_MAX_CHARS} characters"
            ))
            .in_field("q"));
        }
        check_text("q", q)?;
        let terms: Vec<String> = q.split_whitespace().map(str::to_owned).collect();
        if terms.len() > TERMS_MAX {
            return Err(
                ApiError::bad_request(format!("q has more than {TERMS_MAX} terms")).in_field("q"),
            );
        }
        let mut query = Query {
            terms: Vec::new(),
            trigram: Vec::new(),
            bigram: Vec::new(),
        };
        for term in terms {
            let count = term.chars().count();
            if count >= 3 {
                query.trigram.push(term.clone());
            } else if count == 2 && term.chars().all(is_cjk) {
                query.bigram.push(term.clone());
            } else {
                return Err(ApiError::bad_request(
                    "each search term needs at least 3 characters (2 for Chinese, Japanese or Korean)",
                ).in_field("q"));
            }
            if !query.terms.contains(&term) {
                query.terms.push(term);
            }
        }
        Ok(query)
    }

    /// The FTS5 queries to run: `(trigram, bigram)`. When every term is
    /// Chinese/Japanese/Korean and one is 2 characters, the bigram table
    /// answers alone: a longer CJK term is the phrase of its bigrams
    /// (`快递单号` → `"快递 递单 单号"`), so one FTS scan drives the page.
    pub(super) fn indexes(&self) -> (Option<String>, Option<String>) {
        let all_cjk = self.trigram.iter().all(|t| t.chars().all(is_cjk));
        if !self.bigram.is_empty() && all_cjk {
            let phrases: Vec<String> = self
                .bigram
                .iter()
                .cloned()
                .chain(self.trigram.iter().map(|t| cjk_bigrams(t)))
                .collect();
            return (None, Self::fts(&phrases));
        }
        (Self::fts(&self.trigram), Self::fts(&self.bigram))
    }

    /// How a ticket list's `q` filter reads the ticket indexes: the table
    /// that drives (in rowid order) with its MATCH text, and optionally a
    /// second table every row must also match. `None` when `q` is not a
    /// search query (a term too short): the caller falls back to a scan.
    pub fn ticket_filter(q: &str) -> Option<TicketFilter> {
        let query = Query::parse(q).ok()?;
        match query.indexes() {
            (Some(trigram), bigram) => Some(TicketFilter {
                driver: ("ticket_fts", trigram),
                also: bigram.map(|bigram| ("ticket_bigram", bigram)),
            }),
            (None, Some(bigram)) => Some(TicketFilter {
                driver: ("ticket_bigram", bigram),
                also: None,
            }),
            (None, None) => None,
        }
    }

    /// FTS5 query text: every term a quoted phrase, implicitly ANDed.
    fn fts(terms: &[String]) -> Option<String> {
        if terms.is_empty() {
            return None;
        }
        Some(
            terms
                .iter()
                .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// See [`Query::ticket_filter`]: `(table, MATCH text)` pairs over the
/// ticket indexes, whose rowid is the ticket number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFilter {
    pub driver: (&'static str, String),
    pub also: Option<(&'static str, String)>,
}

/// One run of a snippet: matched text or the text around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub text: String,
    #[serde(rename = "match")]
    pub matched: bool,
}

/// Characters of context kept before the first match.
const SNIPPET_BEFORE: usize = 30;
/// Longest snippet, in characters.
pub(super) const SNIPPET_MAX: usize = 160;

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// Where `terms` occur in `text` (case-insensitive), as char ranges, merged.
fn match_ranges(text: &[char], terms: &[String]) -> Vec<(usize, usize)> {
    let folded: Vec<char> = text.iter().map(|&c| fold(c)).collect();
    let mut ranges = Vec::new();
    for term in terms {
        let term: Vec<char> = term.chars().map(fold).collect();
        if term.is_empty() || term.len() > folded.len() {
            continue;
        }
        for start in 0..=folded.len() - term.len() {
            if folded[start..start + term.len()] == term[..] {
                ranges.push((start, start + term.len()));
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// A window of `text` around its first match, split into segments; `None`
/// when no term occurs in it.
pub fn snippet(text: &str, terms: &[String]) -> Option<Vec<Segment>> {
    let chars: Vec<char> = text.chars().collect();
    let ranges = match_ranges(&chars, terms);
    let first = ranges.first()?.0;
    let start = first.saturating_sub(SNIPPET_BEFORE);
    let end = (start + SNIPPET_MAX).min(chars.len());
    let mut segments = Vec::new();
    let mut push = |from: usize, to: usize, matched: bool| {
        if from < to {
            let mut text: String = chars[from..to].iter().collect();
            if !matched && from == start && start > 0 {
                text.insert(0, '…');
            }
            if !matched && to == end && end < chars.len() {
                text.push('…');
            }
            segments.push(Segment { text, matched });
        }
    };
    let mut at = start;
    for (from, to) in ranges {
        let (from, to) = (from.max(start), to.min(end));
        if from >= end {
            break;
        }
        if to <= at {
            continue;
        }
        push(at, from, false);
        push(from.max(at), to, true);
        at = to;
    }
    push(at, end, false);
    Some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_only_pair_cjk() {
        assert_eq!(cjk_bigrams("我要退款!ok 发票"), "我要 要退 退款 0 发票");
        assert_eq!(cjk_bigrams("退款"), "退款");
        assert_eq!(cjk_bigrams("refund"), "");
    }

    #[test]
    fn query_terms_by_length_and_script() {
        let q = Query::parse(" 退款  refund ").expect("parse");
        assert_eq!(q.bigram, vec!["退款".to_owned()]);
        assert_eq!(q.trigram, vec!["refund".to_owned()]);
        assert_eq!(
            q.indexes(),
            (Some("\"refund\"".into()), Some("\"退款\"".into()))
        );
        let cjk = Query::parse("退款 快递单号").expect("parse");
        assert_eq!(
            cjk.indexes(),
            (None, Some("\"退款\" \"快递 递单 单号\"".into()))
        );
        assert!(Query::parse("ok").is_err());
        assert!(Query::parse("退").is_err());
        assert!(Query::parse("   ").is_err());
        // A NUL would end the FTS5 query inside its quotes; other control
        // characters are refused alike, whitespace ones separate terms.
        assert!(Query::parse("a\0bcd").is_err());
        assert!(Query::parse("退款\0").is_err());
        assert!(Query::parse("abc\u{1b}def").is_err());
        assert_eq!(
            Query::parse("refund\tinvoice\nabc").expect("parse").terms,
            vec!["refund".to_owned(), "invoice".to_owned(), "abc".to_owned()]
        );
        assert_eq!(
            Query::fts(&["a\"b c".to_owned()]).as_deref(),
            Some("\"a\"\"b c\"")
        );
    }

    #[test]
    fn snippet_marks_matches_case_insensitively() {
        let segments =
            snippet("Please REFUND my order, refund now", &["refund".into()]).expect("matches");
        let matched: Vec<&str> = segments
            .iter()
            .filter(|s| s.matched)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(matched, vec!["REFUND", "refund"]);
        let joined: String = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, "Please REFUND my order, refund now");
        assert!(snippet("nothing here", &["refund".into()]).is_none());
    }
}
