//! Kefu's black-box suites, linked as one test binary: each module starts
//! real servers and talks to them over real sockets (see tests/src/lib.rs).
//! One binary, not one per file: every test binary links RocksDB and the
//! whole server, so fourteen of them cost fourteen links and gigabytes of
//! disk for the same code.

mod api_errors;
mod assist;
mod assist_intent;
mod attachments;
mod auth_cache;
mod cli;
mod durability;
mod event_lines;
mod export;
mod export_cli;
mod first_minute;
mod hardening_edge;
mod hardening_store;
mod hardening_ws;
mod lan_carry;
mod lan_cli;
mod lan_copy;
mod lan_discovery;
mod lan_failover;
mod lan_handover;
mod lan_host;
mod lan_netns;
mod lan_partition;
mod lan_peer;
mod lan_reconcile;
mod lan_restore;
mod lan_shop;
mod lan_state;
mod lan_sync_standby;
mod lan_tls;
mod log_timing;
mod metrics_lint;
mod ops;
mod ops_deploy;
mod ops_notify;
mod package_server;
mod profile;
mod public_listener;
mod public_proxy;
mod reads;
mod reports;
mod rest;
mod routing;
mod search;
mod settings;
mod shutdown;
mod store_faults;
mod storm;
mod suggest;
mod ticket_workflow;
mod tickets;
mod tidy;
mod websocket;
