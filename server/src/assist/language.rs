//! The language a visitor writes in, by script first:
//!
//! - kana → `ja` (Japanese mixes kana with Han characters), Hangul → `ko`;
//! - Han → Chinese, `zh-Hant` when Traditional → Simplified conversion
//!   changes any character of the message (`退貨` → `退货`), else
//!   `zh-Hans` (a message whose characters are the same in both, such as
//!   `你好`, counts as Simplified);
//! - Cyrillic → `ru`, Arabic → `ar`, Thai → `th` (one language each: the
//!   ones Kefu's shops meet; the script is what matters for routing);
//! - Latin → the few languages in [`LATIN`], told apart by `whatlang`
//!   (trigram profiles) restricted to that list; a message too short to
//!   tell (fewer than 12 letters, or fewer than 24 and a guess whatlang
//!   does not call reliable) is `en`, the most common Latin-script
//!   language of these shops' visitors.
//!
//! `None`: no letter at all (digits, emoji, punctuation).

use whatlang::{Detector, Lang};

use super::normalize::{INPUT_MAX_CHARS, is_han};

/// Latin-script languages told apart (whatlang's allowlist).
pub const LATIN: &[(Lang, &str)] = &[
    (Lang::Eng, "en"),
    (Lang::Spa, "es"),
    (Lang::Fra, "fr"),
    (Lang::Deu, "de"),
    (Lang::Por, "pt"),
    (Lang::Ind, "id"),
    (Lang::Vie, "vi"),
];

/// Fewer Latin letters than this are too few to tell languages apart
/// (trigram statistics need a sentence): `en`.
const LATIN_MIN_LETTERS: usize = 12;
/// From this many letters whatlang's guess is taken even when it does not
/// call it reliable (it rarely does for one short sentence); below, only
/// a reliable guess, else `en`.
const LATIN_SENTENCE_LETTERS: usize = 24;

/// Every code [`detect`] may return.
pub const CODES: &[&str] = &[
    "zh-Hans", "zh-Hant", "ja", "ko", "ru", "ar", "th", "en", "es", "fr", "de", "pt", "id", "vi",
];

fn detector() -> &'static Detector {
    static DETECTOR: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
    DETECTOR.get_or_init(|| Detector::with_allowlist(LATIN.iter().map(|(l, _)| *l).collect()))
}

#[derive(Default)]
struct Counts {
    han: usize,
    kana: usize,
    hangul: usize,
    cyrillic: usize,
    arabic: usize,
    thai: usize,
    latin: usize,
}

fn count(text: &str) -> Counts {
    let mut counts = Counts::default();
    for c in text.chars().take(INPUT_MAX_CHARS) {
        match c as u32 {
            0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9D => counts.kana += 1,
            0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => counts.hangul += 1,
            0x0400..=0x04FF => counts.cyrillic += 1,
            0x0600..=0x06FF => counts.arabic += 1,
            0x0E00..=0x0E7F => counts.thai += 1,
            _ if is_han(c) => counts.han += 1,
            _ if c.is_alphabetic() && (c.is_ascii() || ('\u{00C0}'..='\u{024F}').contains(&c)) => {
                counts.latin += 1;
            }
            _ if ('\u{1E00}'..='\u{1EFF}').contains(&c)
                || ('\u{FF21}'..='\u{FF5A}').contains(&c) =>
            {
                counts.latin += 1;
            }
            _ => {}
        }
    }
    counts
}

/// The language code of a visitor's message (see the module doc).
pub fn detect(text: &str) -> Option<&'static str> {
    let counts = count(text);
    if counts.kana > 0 {
        return Some("ja");
    }
    if counts.hangul > 0 {
        return Some("ko");
    }
    // The script with the most letters, a Han character weighing as a
    // short word (three letters); Han wins a tie (a Chinese message with
    // an English product name is Chinese).
    let scripts = [
        (counts.han * 3, "han"),
        (counts.latin, "latin"),
        (counts.cyrillic, "ru"),
        (counts.arabic, "ar"),
        (counts.thai, "th"),
    ];
    let (letters, script) = scripts.iter().copied().max_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| (b.1 == "han").cmp(&(a.1 == "han")))
    })?;
    if letters == 0 {
        return None;
    }
    match script {
        "han" => Some(if is_traditional(text) {
            "zh-Hant"
        } else {
            "zh-Hans"
        }),
        "latin" => Some(latin(text, counts.latin)),
        other => CODES.iter().copied().find(|code| *code == other),
    }
}

/// Whether Traditional → Simplified conversion changes any Han character.
pub fn is_traditional(text: &str) -> bool {
    let han: String = text
        .chars()
        .take(INPUT_MAX_CHARS)
        .filter(|c| is_han(*c))
        .collect();
    !han.is_empty() && hanconv::t2s(&han) != han
}

fn latin(text: &str, letters: usize) -> &'static str {
    if letters < LATIN_MIN_LETTERS {
        return "en";
    }
    let cut: String = text.chars().take(INPUT_MAX_CHARS).collect();
    detector()
        .detect(&cut)
        .filter(|info| info.is_reliable() || letters >= LATIN_SENTENCE_LETTERS)
        .and_then(|info| LATIN.iter().find(|(lang, _)| *lang == info.lang()))
        .map_or("en", |(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_first() {
        assert_eq!(detect("我要退款"), Some("zh-Hans"));
        assert_eq!(detect("我要退貨，發票呢"), Some("zh-Hant"));
        assert_eq!(detect("你好"), Some("zh-Hans"));
        assert_eq!(detect("iPhone 15 的保修多久"), Some("zh-Hans"));
        assert_eq!(detect("返品したいです"), Some("ja"));
        assert_eq!(detect("환불해 주세요"), Some("ko"));
        assert_eq!(detect("Где мой заказ?"), Some("ru"));
        assert_eq!(detect("أين طلبي"), Some("ar"));
        assert_eq!(detect("สินค้าอยู่ที่ไหน"), Some("th"));
        assert_eq!(detect("12345 !!! 👍"), None);
        assert_eq!(detect(""), None);
    }

    #[test]
    fn latin_languages() {
        assert_eq!(
            detect("Hello, where is my order? It has not arrived yet."),
            Some("en")
        );
        assert_eq!(
            detect("Hola, ¿dónde está mi pedido? Todavía no ha llegado."),
            Some("es")
        );
        assert_eq!(
            detect("Bonjour, où est ma commande ? Elle n'est pas encore arrivée."),
            Some("fr")
        );
        assert_eq!(
            detect("Hallo, wo ist meine Bestellung? Sie ist noch nicht angekommen."),
            Some("de")
        );
        assert_eq!(
            detect("Halo, di mana pesanan saya? Belum sampai sampai sekarang."),
            Some("id")
        );
        // Too short to tell: English.
        assert_eq!(detect("ok"), Some("en"));
        assert_eq!(detect("refund status?"), Some("en"));
    }
}
