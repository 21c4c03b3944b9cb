//! Masking a customer's data out of a reply before it may be suggested in
//! another chat: phone numbers, email addresses and order (or any other
//! long) numbers become `[电话]`, `[邮箱]`, `[号码]` (`[phone]`, `[email]`,
//! `[number]` in a reply without Chinese characters).
//!
//! A hand-written scanner rather than regular expressions: three patterns,
//! each a run of "code" characters, and the edge cases (a phone written in
//! groups `138 0013 8000`, a date `2026-12-07` that must stay) read more
//! plainly as code than as a regex. It masks generously: any run with 5 or
//! more digits is a number (order numbers, tracking codes `SF1234567890`,
//! ID and card numbers, verification codes, postcodes), so a price such
//! as `12999 元` is masked too. What it cannot see is a customer's data
//! without digits or `@` (a name, a street): see docs/ASSIST.md, "Limits".

/// What a masked run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masked {
    Phone,
    Email,
    Number,
}

/// Digits at or above which a run is a number (or a phone).
const NUMBER_DIGITS: usize = 5;
/// A phone number's digits (with its country code: 86 138 0013 8000 is
/// 13), a run of digits, spaces, `-`, `+`, `(` and `)` only; a longer run
/// of digits is an order number.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=13;

fn code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@' | '(' | ')')
}

/// `2026-12-07`, `2026/12/7`, `2026.12.07`: a date stays.
fn is_date(run: &str) -> bool {
    let parts: Vec<&str> = run.split(['-', '/', '.']).collect();
    parts.len() == 3
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
        && parts[1].len() <= 2
        && parts[2].len() <= 2
}

fn is_email(run: &str) -> bool {
    let Some((local, domain)) = run.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

fn classify(run: &str) -> Option<Masked> {
    if is_email(run) {
        return Some(Masked::Email);
    }
    let digits = run.chars().filter(char::is_ascii_digit).count();
    if digits < NUMBER_DIGITS || is_date(run) {
        return None;
    }
    let phone_like = run
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '+' | '(' | ')'));
    // 11 digits is a mobile number; 12 or 13 only with a country or area
    // code or written in groups, else it is an order number.
    let phone_shaped = digits <= 11
        || run.starts_with(['+', '0', '('])
        || run.starts_with("86")
        || run.contains([' ', '-']);
    if phone_like && PHONE_DIGITS.contains(&digits) && phone_shaped {
        Some(Masked::Phone)
    } else {
        Some(Masked::Number)
    }
}

fn label(kind: Masked, chinese: bool) -> &'static str {
    match (kind, chinese) {
        (Masked::Phone, true) => "[电话]",
        (Masked::Email, true) => "[邮箱]",
        (Masked::Number, true) => "[号码]",
        (Masked::Phone, false) => "[phone]",
        (Masked::Email, false) => "[email]",
        (Masked::Number, false) => "[number]",
    }
}

/// `text` with every phone number, email address and long number
/// replaced by its label, and what was masked.
pub fn mask(text: &str) -> (String, Vec<Masked>) {
    let chinese = text.chars().any(super::super::normalize::is_han);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        if !code_char(chars[at]) {
            out.push(chars[at]);
            at += 1;
            continue;
        }
        // A run of code characters; a single space between two digits
        // joins (a phone number written in groups).
        let start = at;
        while at < chars.len() {
            let c = chars[at];
            let joins_digits = c == ' '
                && at > start
                && (chars[at - 1].is_ascii_digit() || chars[at - 1] == ')')
                && chars.get(at + 1).is_some_and(char::is_ascii_digit);
            if code_char(c) || joins_digits {
                at += 1;
            } else {
                break;
            }
        }
        // Sentence punctuation at the end is not part of it.
        let mut end = at;
        while end > start && matches!(chars[end - 1], '.' | '-' | '(' | '+' | '%' | '_') {
            end -= 1;
        }
        // A `)` without its `(` closes the sentence, not the number.
        if end > start && chars[end - 1] == ')' && !chars[start..end].contains(&'(') {
            end -= 1;
        }
        let run: String = chars[start..end].iter().collect();
        match classify(&run) {
            Some(kind) => {
                out.push_str(label(kind, chinese));
                found.push(kind);
            }
            None => out.push_str(&run),
        }
        out.extend(&chars[end..at]);
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_emails_and_numbers_are_masked() {
        assert_eq!(
            mask("已为您登记，联系电话 13800138000，邮箱 li.lei@example.com。").0,
            "已为您登记，联系电话 [电话]，邮箱 [邮箱]。"
        );
        assert_eq!(
            mask("您的订单号是DD2026120712345，快递单号SF1234567890").0,
            "您的订单号是[号码]，快递单号[号码]"
        );
        assert_eq!(
            mask("请拨打 138 0013 8000 或 +86-21-5555-1234 联系我们").0,
            "请拨打 [电话] 或 [电话] 联系我们"
        );
        assert_eq!(
            mask("Call (021) 5555-1234 or mail help@shop.example.").0,
            "Call [phone] or mail [email]."
        );
        assert_eq!(
            mask("Your order 1234567890123456789 has shipped").1,
            vec![Masked::Number]
        );
    }

    #[test]
    fn short_numbers_dates_and_words_stay() {
        for text in [
            "满 99 元包邮，1-3 个工作日到账。",
            "预计 2026-12-07 发货，10:30 前下单当天发",
            "支持 7 天无理由退换，运费 8 元",
            "Visa/Mastercard 信用卡",
            "hello @everyone, see you.",
        ] {
            let (masked, found) = mask(text);
            assert_eq!(masked, text);
            assert!(found.is_empty(), "{text}");
        }
    }

    #[test]
    fn masking_makes_different_customers_replies_equal() {
        let a = mask("李先生，您的订单 202612070001 已发货，单号 YT9876543210。").0;
        let b = mask("李先生，您的订单 202612079999 已发货，单号 YT1111111111。").0;
        assert_eq!(a, b);
    }
}
