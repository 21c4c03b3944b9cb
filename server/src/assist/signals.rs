//! Words that send a chat to a person at once, whatever the FAQ says: an
//! explicit request for a human, or an angry or urgent message. Matched
//! on normalised text ([`super::normalize`]), so `轉人工` and `转人工`,
//! `ＨＵＭＡＮ` and `human` are the same. Chinese phrases match as
//! substrings; English ones as whole words (so "agents" is not "agent" and
//! "humane" is not "human").

use super::normalize::words;

/// What a visitor's message asks for, beside its question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Asks for a person.
    Human,
    /// A complaint, anger or urgency.
    Urgent,
}

/// Chinese phrases asking for a person (Simplified: text is normalised).
const HUMAN_ZH: &[&str] = &[
    "人工",
    "真人",
    "转客服",
    "找客服",
    "接客服",
    "客服在吗",
    "客服呢",
    "有人吗",
    "有没有人",
];
/// English words or word pairs asking for a person.
const HUMAN_EN: &[&[&str]] = &[
    &["human"],
    &["agent"],
    &["operator"],
    &["representative"],
    &["person"],
    &["someone"],
    &["real", "people"],
    &["customer", "service"],
    &["staff"],
];
/// Complaints, anger, urgency (Simplified).
const URGENT_ZH: &[&str] = &[
    "投诉",
    "差评",
    "12315",
    "消协",
    "工商",
    "举报",
    "骗子",
    "骗人",
    "欺诈",
    "垃圾",
    "报警",
    "律师",
    "起诉",
    "曝光",
    "太差",
    "气死",
    "愤怒",
    "生气",
    "急死",
    "紧急",
    "十万火急",
    "马上处理",
    "立刻处理",
    "赶紧",
    "退钱",
];
const URGENT_EN: &[&[&str]] = &[
    &["complaint"],
    &["complain"],
    &["angry"],
    &["furious"],
    &["scam"],
    &["fraud"],
    &["lawyer"],
    &["sue"],
    &["urgent"],
    &["urgently"],
    &["asap"],
    &["emergency"],
    &["ridiculous"],
    &["unacceptable"],
    &["terrible"],
    &["worst"],
];

fn has_phrase(words: &[&str], phrase: &[&str]) -> bool {
    words.windows(phrase.len()).any(|w| w == phrase)
}

/// The strongest signal in a normalised message: a request for a person
/// first (it is what the visitor asked), then urgency.
pub fn detect(normalized: &str) -> Option<Signal> {
    let words: Vec<&str> = words(normalized).collect();
    let any = |zh: &[&str], en: &[&[&str]]| {
        zh.iter().any(|p| normalized.contains(p)) || en.iter().any(|p| has_phrase(&words, p))
    };
    if any(HUMAN_ZH, HUMAN_EN) {
        Some(Signal::Human)
    } else if any(URGENT_ZH, URGENT_EN) {
        Some(Signal::Urgent)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::normalize::normalize;
    use super::*;

    fn signal(text: &str) -> Option<Signal> {
        detect(&normalize(text))
    }

    #[test]
    fn requests_for_a_person() {
        for text in [
            "人工",
            "转人工",
            "轉人工客服",
            "我要找真人",
            "Can I talk to a HUMAN?",
            "agent please",
            "real people",
        ] {
            assert_eq!(signal(text), Some(Signal::Human), "{text}");
        }
    }

    #[test]
    fn complaints_and_urgency() {
        for text in [
            "我要投訴你們",
            "再不发货就差评",
            "打12315",
            "This is a SCAM",
            "urgent!!",
        ] {
            assert_eq!(signal(text), Some(Signal::Urgent), "{text}");
        }
    }

    #[test]
    fn ordinary_questions_are_not_signals() {
        for text in [
            "怎么退货",
            "运费多少",
            "how do agents ship",
            "humane packaging?",
            "发票怎么开",
        ] {
            assert_eq!(signal(text), None, "{text}");
        }
    }
}
