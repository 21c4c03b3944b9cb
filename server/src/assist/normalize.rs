//! Text normalisation shared by everything in Assist: the FAQ index, the
//! visitor's message, the hand-off and urgency word lists. Two texts that
//! a person reads as the same words must come out equal:
//!
//! 1. NFKC (`unicode-normalization`): compatibility forms fold to their
//!    plain ones, which also turns full-width ASCII into half-width
//!    (`１２３ＡＢＣ` → `123ABC`, `！` → `!`, U+3000 → space) and half-width
//!    katakana into full-width;
//! 2. lower case (Unicode `to_lowercase`, which covers every cased script
//!    the shops write in);
//! 3. Traditional → Simplified Chinese (`hanconv::t2s`, OpenCC's phrase
//!    and character tables: `退貨` → `退货`, `發票` → `发票`);
//! 4. runs of whitespace become one space, trimmed.
//!
//! [`features`] then cuts the result into the retrieval features: every
//! Han character and every pair of neighbouring Han characters (character
//! 1–2-grams: Chinese has no spaces, and a segmenter would be a model to
//! ship and to keep), and every run of letters or digits as one word.

use unicode_normalization::UnicodeNormalization;

/// Longest text (in characters) normalised; the rest is ignored. A
/// visitor message may be 16 KiB: the bot only needs its opening.
pub const INPUT_MAX_CHARS: usize = 1_000;

/// NFKC, lower case, Traditional → Simplified, whitespace collapsed.
pub fn normalize(text: &str) -> String {
    let folded: String = text
        .chars()
        .take(INPUT_MAX_CHARS)
        .nfkc()
        .flat_map(char::to_lowercase)
        .collect();
    let simplified = hanconv::t2s(&folded);
    let mut out = String::with_capacity(simplified.len());
    for word in simplified.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A Han (CJK ideograph) character.
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
}

/// The retrieval features of a normalised text: Han 1-grams and 2-grams,
/// and letter/digit words (a word of other scripts is one feature too).
pub fn features(normalized: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut previous_han: Option<char> = None;
    for c in normalized.chars() {
        if is_han(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
            if let Some(previous) = previous_han {
                let mut pair = String::with_capacity(6);
                pair.push(previous);
                pair.push(c);
                out.push(pair);
            }
            previous_han = Some(c);
        } else if c.is_alphanumeric() {
            word.push(c);
            previous_han = None;
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            previous_han = None;
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The letter/digit words of a normalised text (no Han characters), for
/// word lists in Latin scripts.
pub fn words(normalized: &str) -> impl Iterator<Item = &str> {
    normalized
        .split(|c: char| !c.is_alphanumeric() || is_han(c))
        .filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_and_simplified_meet() {
        assert_eq!(normalize("退貨"), normalize("退货"));
        assert_eq!(normalize("怎麼退貨？"), "怎么退货?");
        assert_eq!(normalize("發票"), "发票");
        assert_eq!(normalize("退款"), normalize("退款"));
    }

    #[test]
    fn full_width_folds_to_half_width_and_case_folds() {
        assert_eq!(normalize("订单号１２３４５"), "订单号12345");
        assert_eq!(normalize("ＷＩＦＩ密码"), "wifi密码");
        assert_eq!(normalize("Hello　World！"), "hello world!");
        assert_eq!(normalize("  REFUND \t\n please "), "refund please");
        // Compatibility ideographs and ligatures.
        assert_eq!(normalize("ﬁle"), "file");
        assert_eq!(normalize("Straße"), "straße");
    }

    #[test]
    fn features_are_han_grams_and_words() {
        assert_eq!(
            features(&normalize("退貨 SKU-12")),
            vec!["退", "货", "退货", "sku", "12"]
        );
        assert_eq!(
            features("我要退款"),
            vec!["我", "要", "我要", "退", "要退", "款", "退款"]
        );
        assert!(features("?!").is_empty());
        assert_eq!(
            words("转人工 human agent").collect::<Vec<_>>(),
            vec!["human", "agent"]
        );
    }

    #[test]
    fn long_input_is_cut() {
        let long = "退".repeat(INPUT_MAX_CHARS * 3);
        assert_eq!(normalize(&long).chars().count(), INPUT_MAX_CHARS);
    }
}
