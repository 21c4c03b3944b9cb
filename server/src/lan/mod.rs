//! LAN hosting, the self-contained core: one Kefu device hosts the shop,
//! the others (peers) join it over the LAN. See docs/LAN.md for the model,
//! the trust and threat model, and what is not wired yet.
//!
//! - [`device_id`] — `DeviceId`, the SHA-256 of a device's public key, and
//!   its human text form.
//! - [`identity`] — the device key and self-signed certificate in
//!   `data_dir/lan/`, made on first use.
//! - [`tls`] — rustls configs for the host's LAN listener and for a peer,
//!   with verifiers that trust keys (pinned, or first contact), always
//!   checking the handshake signature.
//! - [`pairing`] — the short code both screens compare (with a nonce
//!   commitment against offline grinding) and the `kefu://pair` link.
//! - [`state`] — role, history, term and pinned host in `state.json`,
//!   written atomically.
//! - [`discovery`] — mDNS advertising and a bounded browser.
//! - [`config`] — `LanConfig`, the `[lan]` settings (all off by default).
//! - [`host`] — the host's TLS listener (`--lan-bind`): start-up (identity,
//!   term), the TLS handshake step, the gate deciding what each client may
//!   reach. [`routes`] — pairing and the admin's device routes.
//!   [`devices`] — pending and approved devices in SQLite.
//!   [`connections`] — open connections by device, closed on revocation.
//!   [`client`] — a device's HTTP client over mutual TLS (`lan pair`).
//! - [`peer`] — peer mode (`--peer-of`): the loopback server relaying the
//!   API and the WebSocket to the pinned host, and the link's status.
//! - [`replication`] — standby replication, the host's side: full sync,
//!   the WAL tail, fencing an old host. [`standby`] — `lan standby`, the
//!   standby's side. [`takeover`] — `lan takeover`, and the new host
//!   fencing the old one. [`handover`] — a planned handover: the write
//!   gate, the grant, the signed successor notice.
//! - [`address`], [`shop_name`] — checked values shared by the above.

pub mod address;
pub mod cli;
pub mod client;
pub mod config;
pub mod connections;
pub mod device_id;
pub mod devices;
pub mod discovery;
pub mod fork;
mod fs;
pub mod handover;
pub mod host;
pub mod identity;
pub mod pairing;
pub mod peer;
pub mod replication;
pub mod restored;
pub mod routes;
pub mod shop_name;
pub mod standby;
pub mod state;
pub mod sync_standby;
pub mod takeover;
pub mod tls;

pub use address::HostAddress;
pub use config::LanConfig;
pub use device_id::DeviceId;
pub use identity::Identity;
pub use shop_name::ShopName;
