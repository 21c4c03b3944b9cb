//! Cluster mode (feature `cluster`, docs/CLUSTER.md): several kefu-server
//! nodes on PostgreSQL, the system of record, behind the same seams as the
//! embedded build ([`crate::store::seam::MessageStore`]). This round holds
//! the PostgreSQL message store ([`postgres`]) and the throwaway server the
//! tests and the bench run it on ([`throwaway`]); the server does not use
//! them yet (the wiring is the next step, docs/CLUSTER.md "Not built yet").

pub mod postgres;
#[cfg(unix)]
pub mod throwaway;
