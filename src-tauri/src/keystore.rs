//! The session token in the OS credential store (the `keyring` crate:
//! Secret Service — GNOME Keyring, KWallet — on Linux, Keychain on macOS,
//! Credential Manager on Windows). "Remember me" keeps the token there and
//! nowhere else: never in a plain file, never in the webview's storage.
//!
//! Each call runs on a short-lived thread of its own: the Secret Service
//! client blocks on its own executor, which must not run inside the app's
//! async runtime.

/// The keyring service name of every entry the app writes.
pub const SERVICE: &str = "app.kefu.desktop";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the OS keyring failed: {0}")]
    Keyring(#[from] keyring::Error),
    #[error("the keyring thread failed")]
    Thread,
}

/// One credential: the agent session for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStore {
    service: String,
    user: String,
}

impl KeyStore {
    /// The entry of the session on the server at `api_base`.
    pub fn for_server(api_base: &str) -> KeyStore {
        KeyStore::new(SERVICE, &format!("session@{api_base}"))
    }

    pub fn new(service: &str, user: &str) -> KeyStore {
        KeyStore {
            service: service.into(),
            user: user.into(),
        }
    }

    /// The stored token; `None` when there is none.
    pub fn get(&self) -> Result<Option<String>, KeyError> {
        self.run(|entry| match entry.get_password() {
            Ok(token) => Ok(Some(token)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(error) => Err(error.into()),
        })
    }

    pub fn set(&self, token: &str) -> Result<(), KeyError> {
        let token = token.to_owned();
        self.run(move |entry| Ok(entry.set_password(&token)?))
    }

    /// Removes the token; fine when there was none.
    pub fn clear(&self) -> Result<(), KeyError> {
        self.run(|entry| match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(error) => Err(error.into()),
        })
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&keyring::Entry) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, KeyError> {
        let (service, user) = (self.service.clone(), self.user.clone());
        std::thread::spawn(move || {
            let entry = keyring::Entry::new(&service, &user)?;
            f(&entry)
        })
        .join()
        .map_err(|_| KeyError::Thread)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_per_server() {
        let a = KeyStore::for_server("http://127.0.0.1:5338");
        let b = KeyStore::for_server("http://127.0.0.1:5339");
        assert_ne!(a, b);
        assert_eq!(a.service, SERVICE);
    }

    /// Against the real OS secret store: scripts/test-desktop runs it in a
    /// private D-Bus session with gnome-keyring-daemon.
    #[test]
    #[ignore = "needs a real secret store (scripts/test-desktop)"]
    fn real_keyring_round_trip() {
        let user = format!("test-{}", std::process::id());
        let store = KeyStore::new("app.kefu.desktop.test", &user);
        store.clear().unwrap();
        assert_eq!(store.get().unwrap(), None);
        store.set("kt_secret_token").unwrap();
        assert_eq!(store.get().unwrap().as_deref(), Some("kt_secret_token"));
        // A second handle (as after a restart) reads the same credential.
        let again = KeyStore::new("app.kefu.desktop.test", &user);
        assert_eq!(again.get().unwrap().as_deref(), Some("kt_secret_token"));
        store.set("kt_rotated").unwrap();
        assert_eq!(again.get().unwrap().as_deref(), Some("kt_rotated"));
        store.clear().unwrap();
        assert_eq!(again.get().unwrap(), None);
        store.clear().unwrap();
    }
}
