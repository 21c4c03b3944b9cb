//! The tray icon: the unread count (as its label and tooltip, and in the
//! window title), the LAN line (hosting, or the link to the shop's host:
//! connected / reconnecting / unreachable), the availability switch
//! (online / away / offline), and open / preferences / quit.

use std::sync::Arc;

use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};

use crate::Shell;

const TRAY: &str = "kefu";
const STATUSES: [&str; 3] = ["online", "away", "offline"];

/// The tray's labels in the UI language of the system (en or zh-CN).
fn labels() -> [&'static str; 7] {
    if zh() {
        [
            "打开客服",
            "在线",
            "离开",
            "离线",
            "偏好设置…",
            "退出",
            "客服",
        ]
    } else {
        [
            "Open Kefu",
            "Online",
            "Away",
            "Offline",
            "Preferences…",
            "Quit Kefu",
            "Kefu",
        ]
    }
}

/// The window title and tray tooltip for an unread count.
pub fn title(unread_label: &str) -> String {
    if unread_label.is_empty() {
        "Kefu".into()
    } else {
        format!("Kefu ({unread_label})")
    }
}

pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let [open, online, away, offline, prefs, quit, _] = labels();
    let lan_item = MenuItem::with_id(app, "lan", "", false, None::<&str>)?;
    let status_items = [
        CheckMenuItem::with_id(app, "status:online", online, true, true, None::<&str>)?,
        CheckMenuItem::with_id(app, "status:away", away, true, false, None::<&str>)?,
        CheckMenuItem::with_id(app, "status:offline", offline, true, false, None::<&str>)?,
    ];
    let menu = Menu::with_items(
        app,
        &[
            &MenuItem::with_id(app, "open", open, true, None::<&str>)?,
            &lan_item,
            &PredefinedMenuItem::separator(app)?,
            &status_items[0],
            &status_items[1],
            &status_items[2],
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, "prefs", prefs, true, None::<&str>)?,
            &MenuItem::with_id(app, "quit", quit, true, None::<&str>)?,
        ],
    )?;
    app.manage(StatusItems(status_items));
    app.manage(LanItem(lan_item));
    let mut builder = TrayIconBuilder::with_id(TRAY)
        .tooltip("Kefu")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "open" => crate::show_main(app),
            "prefs" => {
                crate::show_main(app);
                crate::call_page(app, "prefs", &serde_json::Value::Null);
            }
            "quit" => app.exit(0),
            id => {
                if let Some(status) = id.strip_prefix("status:") {
                    crate::call_page(app, "status", &serde_json::Value::String(status.into()));
                    // Until the page confirms, keep the marks where they were.
                    refresh(app);
                }
            }
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                crate::show_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}

struct StatusItems([CheckMenuItem<tauri::Wry>; 3]);
struct LanItem(MenuItem<tauri::Wry>);

fn zh() -> bool {
    std::env::var("LANG").is_ok_and(|l| l.starts_with("zh"))
}

/// Brings the tray, the window title and the launcher badge up to date.
pub fn refresh(app: &AppHandle) {
    let Some(shell) = app.try_state::<Arc<Shell>>() else {
        return;
    };
    let unread = *shell.unread.lock();
    let label = unread.label();
    let title = title(&label);
    let role = shell.role();
    let lan_line = crate::lan::tray_line(role, shell.link().as_ref(), zh());
    if let Some(item) = app.try_state::<LanItem>() {
        let _ = item.0.set_text(&lan_line);
    }
    if let Some(tray) = app.tray_by_id(TRAY) {
        let tooltip = if role == "solo" {
            title.clone()
        } else {
            format!("{title} — {lan_line}")
        };
        let _ = tray.set_tooltip(Some(&tooltip));
        let _ = tray.set_title(if label.is_empty() {
            None
        } else {
            Some(label.as_str())
        });
    }
    if let Some(window) = app.get_webview_window(crate::MAIN) {
        let _ = window.set_title(&title);
        let count = unread.count();
        let _ = window.set_badge_count(if count == 0 {
            None
        } else {
            Some(i64::from(count))
        });
    }
    if let Some(items) = app.try_state::<StatusItems>() {
        let current = shell.availability.lock().clone();
        for (item, status) in items.0.iter().zip(STATUSES) {
            let _ = item.set_checked(status == current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_carries_the_unread_count() {
        assert_eq!(title(""), "Kefu");
        assert_eq!(title("3"), "Kefu (3)");
        assert_eq!(title("99+"), "Kefu (99+)");
    }
}
