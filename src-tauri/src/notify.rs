//! Native notifications: which events become one (the decision, pure and
//! unit-tested), what they say (plain text only), the unread count shown in
//! the tray, and showing them with notify-rust (D-Bus on Linux, the
//! notification centre on macOS, toasts on Windows).
//!
//! The workstation page watches its live connection and reports each event
//! (`notify` command); the shell decides here whether to show it.

use serde::{Deserialize, Serialize};

use crate::prefs::NotifyPrefs;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A new chat waits in the queue.
    Queue,
    /// A visitor wrote in one of my chats.
    Message,
    /// A ticket was assigned to me.
    Ticket,
}

/// One event reported by the page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub kind: Kind,
    /// Who or what: a visitor's name, a ticket subject (visitor-supplied text:
    /// shown as plain text only).
    pub title: String,
    /// The message text or a short description (plain text).
    pub body: String,
    /// A conversation id, or a ticket number, that a click opens.
    pub target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Show,
    /// The window has the focus: the agent sees it already.
    Focused,
    /// The agent turned this kind off.
    Disabled,
    /// The target is not a plain id: never forwarded to the page.
    BadTarget,
}

/// Whether an event becomes a notification.
pub fn decide(event: &Event, prefs: &NotifyPrefs, window_focused: bool) -> Decision {
    if !valid_target(event.kind, &event.target) {
        return Decision::BadTarget;
    }
    let enabled = match event.kind {
        Kind::Queue => prefs.queue,
        Kind::Message => prefs.messages,
        Kind::Ticket => prefs.tickets,
    };
    if !enabled {
        Decision::Disabled
    } else if window_focused {
        Decision::Focused
    } else {
        Decision::Show
    }
}

/// Conversation ids are `[A-Za-z0-9_-]{1,64}`, ticket numbers digits: the
/// click hands them to the page, so nothing else may pass.
pub fn valid_target(kind: Kind, target: &str) -> bool {
    let len_ok = (1..=64).contains(&target.len());
    match kind {
        Kind::Ticket => len_ok && target.bytes().all(|b| b.is_ascii_digit()),
        Kind::Queue | Kind::Message => {
            len_ok
                && target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
    }
}

/// The page route a click on the notification opens.
pub fn route(kind: Kind, target: &str) -> String {
    match kind {
        Kind::Queue => format!("#/queue/{target}"),
        Kind::Message => format!("#/chats/{target}"),
        Kind::Ticket => format!("#/tickets/{target}"),
    }
}

/// Plain text for the notification: some daemons read the body as markup
/// (`<b>`, `<a href>`), so it is escaped; control characters go, and it is
/// cut to `max` characters.
pub fn plain_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in text.chars() {
        if count == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\t' => out.push(' '),
            c if c.is_control() => continue,
            c => out.push(c),
        }
        count += 1;
    }
    out
}

/// The localized summary line of a notification.
pub fn summary(kind: Kind, title: &str, zh: bool) -> String {
    let title = plain_text(title, 60);
    match (kind, zh) {
        (Kind::Queue, false) => format!("New chat: {title}"),
        (Kind::Queue, true) => format!("新会话：{title}"),
        (Kind::Message, false) => format!("{title} wrote"),
        (Kind::Message, true) => format!("{title} 发来消息"),
        (Kind::Ticket, false) => format!("Ticket assigned to you: {title}"),
        (Kind::Ticket, true) => format!("分配给你的工单：{title}"),
    }
}

/// The tray's count: the workstation's unread messages in the agent's own
/// chats (the number on its Chats tab and in its title), reported by the
/// page whenever it changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unread(u32);

impl Unread {
    /// Larger reports are clamped (a badge needs no more).
    pub const MAX: u32 = 100_000;

    /// The page reported a new total; returns whether it changed. Bounded:
    /// the label stops at 99+ and the badge at [`Unread::MAX`].
    pub fn set(&mut self, count: u32) -> bool {
        let count = count.min(Self::MAX);
        std::mem::replace(&mut self.0, count) != count
    }

    pub fn count(self) -> u32 {
        self.0
    }

    /// Tray label: empty at zero, "99+" past 99.
    pub fn label(self) -> String {
        match self.0 {
            0 => String::new(),
            n if n > 99 => "99+".into(),
            n => n.to_string(),
        }
    }
}

/// Shows a notification. `on_click` runs (on a helper thread) when the
/// agent clicks it, where the platform reports clicks (XDG; elsewhere a
/// click brings the app forward by itself).
pub fn show(
    summary: &str,
    body: &str,
    on_click: impl FnOnce() + Send + 'static,
) -> Result<(), notify_rust::error::Error> {
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Kefu")
        .summary(summary)
        .body(&plain_text(body, 200));
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        notification
            .action("default", "Open")
            .icon("kefu-desktop")
            .hint(notify_rust::Hint::Category("im.received".into()))
            .hint(notify_rust::Hint::DesktopEntry("Kefu".into()));
        let handle = notification.show()?;
        std::thread::Builder::new()
            .name("kefu-notification".into())
            .spawn(move || {
                handle.wait_for_action(|action| {
                    if action == "default" {
                        on_click();
                    }
                })
            })
            .map_err(|e| {
                notify_rust::error::Error::from(notify_rust::error::ErrorKind::Msg(e.to_string()))
            })?;
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        let _ = on_click;
        notification.show()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Kind, target: &str) -> Event {
        Event {
            kind,
            title: "Ann".into(),
            body: "hello".into(),
            target: target.into(),
        }
    }

    #[test]
    fn shows_only_when_unfocused_and_enabled() {
        let all = NotifyPrefs::default();
        for kind in [Kind::Queue, Kind::Message] {
            assert_eq!(decide(&event(kind, "01J9ZC"), &all, false), Decision::Show);
            assert_eq!(
                decide(&event(kind, "01J9ZC"), &all, true),
                Decision::Focused
            );
        }
        assert_eq!(
            decide(&event(Kind::Ticket, "42"), &all, false),
            Decision::Show
        );
    }

    #[test]
    fn each_kind_can_be_turned_off_alone() {
        let prefs = NotifyPrefs {
            queue: false,
            messages: true,
            tickets: false,
        };
        assert_eq!(
            decide(&event(Kind::Queue, "c1"), &prefs, false),
            Decision::Disabled
        );
        assert_eq!(
            decide(&event(Kind::Message, "c1"), &prefs, false),
            Decision::Show
        );
        assert_eq!(
            decide(&event(Kind::Ticket, "7"), &prefs, false),
            Decision::Disabled
        );
    }

    #[test]
    fn targets_must_be_plain_ids() {
        let all = NotifyPrefs::default();
        for bad in ["", "a/b", "x\");alert(1)//", "#/settings", &"a".repeat(65)] {
            assert_eq!(
                decide(&event(Kind::Message, bad), &all, false),
                Decision::BadTarget,
                "{bad}"
            );
        }
        assert_eq!(
            decide(&event(Kind::Ticket, "12a"), &all, false),
            Decision::BadTarget
        );
        assert_eq!(route(Kind::Message, "c_1-X"), "#/chats/c_1-X");
        assert_eq!(route(Kind::Queue, "c1"), "#/queue/c1");
        assert_eq!(route(Kind::Ticket, "12"), "#/tickets/12");
    }

    #[test]
    fn text_is_escaped_flattened_and_cut() {
        assert_eq!(
            plain_text("<b>hi</b> & <a href=x>", 100),
            "&lt;b&gt;hi&lt;/b&gt; &amp; &lt;a href=x&gt;"
        );
        assert_eq!(plain_text("a\nb\u{7}c", 100), "a bc");
        assert_eq!(plain_text("你好世界", 2), "你好…");
        assert_eq!(
            summary(Kind::Queue, "<Ann>", false),
            "New chat: &lt;Ann&gt;"
        );
        assert_eq!(summary(Kind::Message, "Ann", true), "Ann 发来消息");
    }

    #[test]
    fn unread_follows_the_reported_total() {
        let mut unread = Unread::default();
        assert_eq!(unread.label(), "");
        assert!(unread.set(2));
        assert!(!unread.set(2), "an unchanged total needs no refresh");
        assert_eq!(unread.count(), 2);
        assert_eq!(unread.label(), "2");
        assert!(unread.set(150));
        assert_eq!(unread.label(), "99+");
        assert!(unread.set(u32::MAX));
        assert_eq!(unread.count(), Unread::MAX);
        assert!(unread.set(0));
        assert_eq!(unread.label(), "");
    }

    /// Against a real notification daemon: scripts/test-desktop runs it in
    /// a private D-Bus session with Debian's dunst under Xvfb. Checks that
    /// the notification arrived (dunst's history), that its markup was
    /// escaped, and that a click (dunst's default action) reaches us.
    #[test]
    #[ignore = "needs a D-Bus session with dunst (scripts/test-desktop)"]
    fn real_daemon_shows_and_reports_clicks() {
        use std::process::Command;
        use std::sync::mpsc;
        use std::time::Duration;
        let dunstctl = |args: &[&str]| {
            let out = Command::new("dunstctl")
                .args(args)
                .output()
                .expect("dunstctl runs");
            assert!(out.status.success(), "dunstctl {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let tag = format!("kefu-test-{}", std::process::id());
        let (clicked, was_clicked) = mpsc::channel();
        show(
            &summary(Kind::Message, &tag, false),
            "<b>hi</b> there",
            move || {
                let _ = clicked.send(());
            },
        )
        .expect("the daemon accepts the notification");
        // A click on the notification: dunst's default action.
        let mut shown = false;
        for _ in 0..50 {
            if dunstctl(&["count", "displayed"]).trim() != "0" {
                shown = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(shown, "dunst displays it");
        dunstctl(&["action", "0"]);
        was_clicked
            .recv_timeout(Duration::from_secs(5))
            .expect("the click reaches the app");
        dunstctl(&["close-all"]);
        let history = dunstctl(&["history"]);
        assert!(history.contains(&format!("{tag} wrote")), "{history}");
        // What the daemon got is escaped: markup-reading daemons show it as text.
        assert!(history.contains("&lt;b&gt;hi&lt;/b&gt; there"), "{history}");
    }
}
