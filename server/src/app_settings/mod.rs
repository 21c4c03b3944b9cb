//! Per-app settings a visitor meets: the welcome message, the offline
//! message and business hours in the shop's time zone; and what the
//! visitor side reads of them, `GET /api/v1/visitor/config`.
//!
//! Availability = inside business hours (or none set) and at least one
//! agent `online`. When the shop is unavailable the widget shows the
//! offline message and the offline form (a ticket with the visitor's email).
//!
//! The door is in [`routes`].

pub mod routes;

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::apps::App;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest welcome or offline message, in characters.
pub const MESSAGE_MAX_CHARS: usize = 2_000;
/// At most this many opening intervals per weekday.
pub const INTERVALS_PER_DAY_MAX: usize = 4;
/// At most this many closed dates (holidays).
pub const CLOSED_DATES_MAX: usize = 366;

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One opening interval, `"09:00"`–`"18:00"`, local time; `end` may be
/// `"24:00"` for the end of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub start: String,
    pub end: String,
}

/// Business hours: weekly opening intervals in an IANA time zone, and
/// dates on which the shop is closed all day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    pub timezone: String,
    /// `mon`…`sun` → intervals; a day left out is closed.
    #[serde(default)]
    pub weekly: BTreeMap<String, Vec<Interval>>,
    /// `YYYY-MM-DD` dates (holidays) closed all day.
    #[serde(default)]
    pub closed_dates: Vec<String>,
}

/// Minutes since midnight of `HH:MM` (`24:00` allowed as an end).
fn minutes(text: &str, allow_24: bool) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl BusinessHours {
    /// Checks everything a client may get wrong; the message says what.
    pub fn validate(&self) -> Result<(), ApiError> {
        self.time_zone()?;
        for (day, intervals) in &self.weekly {
            if !WEEKDAYS.contains(&day.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "business_hours.weekly: {day:?} is not one of mon, tue, wed, thu, fri, sat, sun"
                ))
                .in_field("business_hours.weekly"));
            }
            if intervals.len() > INTERVALS_PER_DAY_MAX {
                return Err(ApiError::bad_request(format!(
                    "business_hours.weekly.{day}: at most {INTERVALS_PER_DAY_MAX} intervals"
                ))
                .in_field(format!("business_hours.weekly.{day}")));
            }
            let mut spans = Vec::with_capacity(intervals.len());
            for interval in intervals {
                let start = minutes(&interval.start, false);
                let end = minutes(&interval.end, true);
                match (start, end) {
                    (Some(start), Some(end)) if start < end => spans.push((start, end)),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "business_hours.weekly.{day}: {:?}-{:?} is not HH:MM-HH:MM with start before end",
                            interval.start, interval.end
                        )).in_field(format!("business_hours.weekly.{day}")));
                    }
                }
            }
            spans.sort_unstable();
            if spans.windows(2).any(|pair| pair[0].1 > pair[1].0) {
                return Err(ApiError::bad_request(format!(
                    "business_hours.weekly.{day}: intervals overlap"
                ))
                .in_field(format!("business_hours.weekly.{day}")));
            }
        }
        if self.closed_dates.len() > CLOSED_DATES_MAX {
            return Err(ApiError::bad_request(format!(
                "business_hours.closed_dates: at most {CLOSED_DATES_MAX} dates"
            ))
            .in_field("business_hours.closed_dates"));
        }
        for date in &self.closed_dates {
            if date.len() != 10 || date.parse::<Date>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "business_hours.closed_dates: {date:?} is not a YYYY-MM-DD date"
                ))
                .in_field("business_hours.closed_dates"));
            }
        }
        Ok(())
    }

    fn time_zone(&self) -> Result<TimeZone, ApiError> {
        if self.timezone.is_empty() || self.timezone.len() > 64 {
            return Err(ApiError::bad_request(
                "business_hours.timezone must be an IANA time zone such as Asia/Shanghai",
            )
            .in_field("business_hours.timezone"));
        }
        TimeZone::get(&self.timezone).map_err(|_| {
            ApiError::bad_request(format!(
                "business_hours.timezone: unknown time zone {:?} (use an IANA name such as Asia/Shanghai)",
                self.timezone
            )).in_field("business_hours.timezone")
        })
    }

    /// Whether the shop is open at `at` (Unix ms). A zone that cannot be
    /// loaded any more (validated when saved) counts as open: better a
    /// chat nobody expected than a shop that silently never opens.
    pub fn is_open_at(&self, at_ms: i64) -> bool {
        let Ok(zone) = self.time_zone() else {
            return true;
        };
        let Ok(timestamp) = Timestamp::from_millisecond(at_ms) else {
            return true;
        };
        let local = timestamp.to_zoned(zone).datetime();
        let date = local.date().to_string();
        if self.closed_dates.contains(&date) {
            return false;
        }
        let day = WEEKDAYS[weekday_index(local.date().weekday())];
        let now = minutes_of(local.time());
        self.weekly.get(day).is_some_and(|intervals| {
            intervals.iter().any(|interval| {
                let start = minutes(&interval.start, false).unwrap_or(u32::MAX);
                let end = minutes(&interval.end, true).unwrap_or(0);
                start <= now && now < end
            })
        })
    }
}

fn weekday_index(day: Weekday) -> usize {
    usize::try_from(day.to_monday_zero_offset()).unwrap_or(0)
}

fn minutes_of(time: Time) -> u32 {
    u32::try_from(time.hour()).unwrap_or(0) * 60 + u32::try_from(time.minute()).unwrap_or(0)
}

/// Validates a welcome or offline message: trimmed, at most
/// [`MESSAGE_MAX_CHARS`]; empty means none.
pub fn validate_message(field: &str, text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(ApiError::too_large(format!(
            "{field} is longer than {MESSAGE_MAX_CHARS} characters"
        ))
        .in_field(field.to_owned()));
    }
    Ok(text.to_owned())
}

/// Whether any agent is `online` (routing's notion of available).
pub async fn agents_online(state: &AppState) -> Result<bool, ApiError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM agents WHERE status = 'online' LIMIT 1")
            .fetch_optional(&state.db)
            .await?;
    Ok(row.is_some())
}

/// What a visitor's client needs to greet, or to say the shop is away.
#[derive(Debug, Serialize)]
pub struct VisitorConfig {
    pub app_name: String,
    pub welcome_message: Option<String>,
    pub offline_message: Option<String>,
    pub business_hours: Option<BusinessHours>,
    /// Inside business hours (or none are set).
    pub open: bool,
    /// At least one agent is online.
    pub agents_online: bool,
    /// `open && agents_online`: a chat gets an answer now. When false the
    /// widget offers the offline form.
    pub available: bool,
}

pub async fn visitor_config(state: &AppState, app: &App) -> Result<VisitorConfig, ApiError> {
    let open = app
        .business_hours
        .as_ref()
        .is_none_or(|hours| hours.is_open_at(crate::time::now_ms()));
    let agents_online = agents_online(state).await?;
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    Ok(VisitorConfig {
        app_name: app.name.clone(),
        welcome_message: non_empty(&app.welcome_message),
        offline_message: non_empty(&app.offline_message),
        business_hours: app.business_hours.clone(),
        open,
        agents_online,
        available: open && agents_online,
    })
}

/// After a visitor's message opened (or reopened) a session: when the shop
/// is unavailable and the app has an offline message, answer once with it,
/// as a `system` text message, so APP clients without our widget learn it
/// too. Idempotent per session: the client message id is derived from the
/// session's start, so a retry stores nothing twice.
pub async fn offline_auto_reply(
    state: &AppState,
    conversation: crate::ids::ConversationId,
    app_id: crate::ids::AppId,
    opened_at: i64,
) -> Result<(), ApiError> {
    // From the auth cache (kept in step with every app change): a burst of
    // starts asks for the same app once, not once per conversation.
    let Some(app) = state.auth_cache.app(&state.db, app_id).await? else {
        return Ok(());
    };
    if app.offline_message.is_empty() {
        return Ok(());
    }
    let config = visitor_config(state, &app).await?;
    if config.available {
        return Ok(());
    }
    let line = crate::conversations::Line::system(
        "system",
        app.name.clone(),
        app.offline_message.clone(),
        serde_json::json!({"auto_reply": "offline"}),
    )
    .once(format!("offline-{opened_at}"));
    crate::conversations::send::line(state, conversation, line).await?;
    Ok(())
}

/// The visitor side's config, before it has a session: the app named by
/// its public `app_key`, or by a visitor `token`; a cross-site `origin`
/// must be one of the app's.
pub async fn config_for(
    state: &AppState,
    app_key: Option<&str>,
    token: Option<&str>,
    origin: Option<&str>,
) -> Result<VisitorConfig, ApiError> {
    let app = match (app_key, token) {
        (Some(key), _) => state
            .auth_cache
            .app_by_key(&state.db, key)
            .await?
            .ok_or_else(|| ApiError::not_found("app"))?,
        (None, Some(token)) => match crate::auth::resolve_token(state, token).await? {
            Some(crate::auth::Principal::Visitor(visitor)) => state
                .auth_cache
                .app(&state.db, visitor.app_id)
                .await?
                .ok_or_else(|| ApiError::not_found("app"))?,
            _ => return Err(ApiError::Unauthorized("a visitor token is required".into())),
        },
        (None, None) => {
            return Err(ApiError::bad_request("app_key is required").in_field("app_key"));
        }
    };
    if !app.origin_allowed(origin) {
        return Err(ApiError::forbidden("origin not allowed for this app"));
    }
    visitor_config(state, &app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(zone: &str) -> BusinessHours {
        let nine_to_six = vec![Interval {
            start: "09:00".into(),
            end: "18:00".into(),
        }];
        BusinessHours {
            timezone: zone.into(),
            weekly: ["mon", "tue", "wed", "thu", "fri"]
                .into_iter()
                .map(|day| (day.to_owned(), nine_to_six.clone()))
                .collect(),
            closed_dates: vec!["2026-10-01".into()],
        }
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("timestamp")
            .as_millisecond()
    }

    #[test]
    fn open_follows_the_shops_time_zone() {
        let shanghai = hours("Asia/Shanghai");
        assert_eq!(shanghai.validate().map_err(|e| e.to_string()), Ok(()));
        // Thu 2026-11-26 01:30 UTC = 09:30 in Shanghai: open.
        assert!(shanghai.is_open_at(ms("2026-11-26T01:30:00Z")));
        // 00:59 UTC = 08:59 in Shanghai: not yet.
        assert!(!shanghai.is_open_at(ms("2026-11-26T00:59:00Z")));
        // 10:00 UTC = 18:00: closed (end is exclusive).
        assert!(!shanghai.is_open_at(ms("2026-11-26T10:00:00Z")));
        // Saturday.
        assert!(!shanghai.is_open_at(ms("2026-11-28T03:00:00Z")));
        // A closed date, a Thursday.
        assert!(!shanghai.is_open_at(ms("2026-10-01T03:00:00Z")));
        // The same instant is 20:30 the evening before in New York.
        assert!(!hours("America/New_York").is_open_at(ms("2026-11-26T01:30:00Z")));
    }

    #[test]
    fn bad_hours_are_refused_with_the_reason() {
        let mut bad = hours("Mars/Olympus");
        assert!(bad.validate().is_err());
        bad.timezone = "UTC".into();
        bad.weekly.insert(
            "funday".into(),
            vec![Interval {
                start: "09:00".into(),
                end: "10:00".into(),
            }],
        );
        assert!(bad.validate().is_err());
        let mut bad = hours("UTC");
        bad.weekly.insert(
            "sat".into(),
            vec![Interval {
                start: "10:00".into(),
                end: "09:00".into(),
            }],
        );
        assert!(bad.validate().is_err());
        let mut bad = hours("UTC");
        bad.weekly.insert(
            "sun".into(),
            vec![
                Interval {
                    start: "09:00".into(),
                    end: "12:00".into(),
                },
                Interval {
                    start: "11:00".into(),
                    end: "13:00".into(),
                },
            ],
        );
        assert!(bad.validate().is_err());
        let mut bad = hours("UTC");
        bad.closed_dates.push("2026-13-01".into());
        assert!(bad.validate().is_err());
        let mut whole_day = hours("UTC");
        whole_day.weekly.insert(
            "sun".into(),
            vec![Interval {
                start: "00:00".into(),
                end: "24:00".into(),
            }],
        );
        assert_eq!(whole_day.validate().map_err(|e| e.to_string()), Ok(()));
        assert!(whole_day.is_open_at(ms("2026-11-29T23:59:00Z")));
    }
}
