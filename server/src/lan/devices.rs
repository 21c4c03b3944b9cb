//! The host's LAN devices: the ones that asked to pair (`pending`), the
//! allowlist (`approved`) and the ones an admin shut out (`revoked`).
//!
//! **Where they live.** In SQLite (`lan_devices`, migration 0009), not in
//! `lan/state.json`: which devices may use the shop is shop data, like
//! agents and apps. It goes with the store when the host role is handed
//! over (issue 18), changes in the same database as the audit record of
//! the admin who changed it, and is backed up with the rest. `state.json`
//! is about this device only (its role, its term, the host it pins).
//!
//! **In memory.** Every request over the LAN listener asks whether its
//! device is approved, so the approved set is mirrored in memory; it is
//! loaded at start and changed only after the database write succeeded.
//!
//! Rules: a device's status moves `pending → approved → revoked`; approving
//! needs the code the device shows (so an approval means the codes were
//! compared); a revoked device stays refused, even when it asks to pair
//! again, until an admin deletes it; at most [`MAX_PENDING`] devices wait.

use std::collections::HashSet;

use parking_lot::RwLock;
use serde::Serialize;
use sqlx::SqlitePool;

use super::device_id::DeviceId;
use super::pairing::PairingCode;
use crate::error::ApiError;
use crate::ids::AgentId;
use crate::time::now_ms;

/// Devices waiting for approval at most; more are refused (429) until an
/// admin approves or deletes some.
pub const MAX_PENDING: i64 = 32;
/// A device name: 1–64 characters, no control characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A device's standing with the host.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Pending,
    Approved,
    Revoked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Option<DeviceStatus> {
        match text {
            "pending" => Some(DeviceStatus::Pending),
            "approved" => Some(DeviceStatus::Approved),
            "revoked" => Some(DeviceStatus::Revoked),
            _ => None,
        }
    }
}

/// One device as the admin routes show it.
#[derive(Serialize, Clone, Debug)]
pub struct LanDevice {
    pub device_id: DeviceId,
    /// The first two groups, to tell devices apart in a list.
    pub short_id: String,
    pub name: String,
    pub status: DeviceStatus,
    /// The host's pairing code (`123 456`) while pending: the admin
    /// compares it with the device's screen.
    pub code: Option<String>,
    pub address: Option<String>,
    pub requested_at: i64,
    pub approved_at: Option<i64>,
    pub approved_by: Option<AgentId>,
    pub revoked_at: Option<i64>,
    pub updated_at: i64,
    /// LAN connections the device has open now.
    pub connections: usize,
}

#[derive(sqlx::FromRow)]
struct Row {
    device_id: String,
    name: String,
    status: String,
    code: Option<i64>,
    address: Option<String>,
    requested_at: i64,
    approved_at: Option<i64>,
    approved_by: Option<AgentId>,
    revoked_at: Option<i64>,
    updated_at: i64,
}

impl Row {
    fn into_device(self) -> Result<LanDevice, ApiError> {
        let device_id: DeviceId = self
            .device_id
            .parse()
            .map_err(|e| ApiError::internal(anyhow::anyhow!("lan_devices.device_id: {e}")))?;
        let status = DeviceStatus::parse(&self.status)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("lan_devices.status")))?;
        let code = self
            .code
            .filter(|_| status == DeviceStatus::Pending)
            .map(|code| format!("{:03} {:03}", code / 1000, code % 1000));
        Ok(LanDevice {
            short_id: device_id.short(),
            device_id,
            name: self.name,
            status,
            code,
            address: self.address,
            requested_at: self.requested_at,
            approved_at: self.approved_at,
            approved_by: self.approved_by,
            revoked_at: self.revoked_at,
            updated_at: self.updated_at,
            connections: 0,
        })
    }
}

const COLUMNS: &str = "device_id, name, status, code, address, requested_at, approved_at, approved_by, revoked_at, updated_at";

/// The devices, with the approved set in memory.
#[derive(Debug, Default)]
pub struct Devices {
    approved: RwLock<HashSet<DeviceId>>,
}

/// A checked device name.
pub fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{MAX_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(name.to_owned())
}

impl Devices {
    /// Loads the approved set from the database.
    pub async fn load(db: &SqlitePool) -> Result<Devices, ApiError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT device_id FROM lan_devices WHERE status = 'approved'")
                .fetch_all(db)
                .await?;
        let approved = ids
            .iter()
            .filter_map(|id| id.parse::<DeviceId>().ok())
            .collect();
        Ok(Devices {
            approved: RwLock::new(approved),
        })
    }

    /// Whether `device` is on the allowlist (answered from memory).
    pub fn is_approved(&self, device: &DeviceId) -> bool {
        self.approved.read().contains(device)
    }

    pub async fn get(&self, db: &SqlitePool, device: &DeviceId) -> Result<LanDevice, ApiError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM lan_devices WHERE device_id = ?"
        ))
        .bind(device.to_string())
        .fetch_optional(db)
        .await?;
        row.ok_or_else(|| ApiError::not_found("device"))?
            .into_device()
    }

    pub async fn list(&self, db: &SqlitePool) -> Result<Vec<LanDevice>, ApiError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM lan_devices ORDER BY requested_at, device_id LIMIT 1000"
        ))
        .fetch_all(db)
        .await?;
        rows.into_iter().map(Row::into_device).collect()
    }

    /// A device finished the pairing exchange with `code` on the host's
    /// side: it waits for approval (a pending device gets the new code; an
    /// approved one stays approved; a revoked one is refused).
    pub async fn request(
        &self,
        db: &SqlitePool,
        device: &DeviceId,
        name: &str,
        code: PairingCode,
        address: &str,
    ) -> Result<DeviceStatus, ApiError> {
        let now = now_ms();
        let mut tx = crate::store::db::begin_write(db).await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM lan_devices WHERE device_id = ?")
                .bind(device.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        match status.as_deref().and_then(DeviceStatus::parse) {
            Some(DeviceStatus::Revoked) => {
                return Err(ApiError::forbidden(
                    "this device was revoked on the host; an admin must delete it before it can pair again",
                ));
            }
            Some(DeviceStatus::Approved) => return Ok(DeviceStatus::Approved),
            Some(DeviceStatus::Pending) => {
                sqlx::query(
                    "UPDATE lan_devices SET code = ?, name = ?, address = ?, updated_at = ? WHERE device_id = ?",
                )
                .bind(i64::from(code.value()))
                .bind(name)
                .bind(address)
                .bind(now)
                .bind(device.to_string())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                let pending: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM lan_devices WHERE status = 'pending'")
                        .fetch_one(&mut *tx)
                        .await?;
                if pending >= MAX_PENDING {
                    return Err(ApiError::RateLimited);
                }
                sqlx::query(
                    "INSERT INTO lan_devices (device_id, name, status, code, address, requested_at, updated_at)
                     VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                )
                .bind(device.to_string())
                .bind(name)
                .bind(i64::from(code.value()))
                .bind(address)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(DeviceStatus::Pending)
    }

    /// Approves a pending device whose code is `code` (what the device
    /// shows). Approving an approved device again changes nothing.
    pub async fn approve(
        &self,
        db: &SqlitePool,
        device: &DeviceId,
        code: u32,
        by: AgentId,
    ) -> Result<LanDevice, ApiError> {
        let current = self.get(db, device).await?;
        match current.status {
            DeviceStatus::Approved => return Ok(current),
            DeviceStatus::Revoked => {
                return Err(ApiError::Conflict(
                    "the device was revoked; delete it and pair again".into(),
                ));
            }
            DeviceStatus::Pending => {}
        }
        let now = now_ms();
        let mut tx = crate::store::db::begin_write(db).await?;
        let changed = sqlx::query(
            "UPDATE lan_devices SET status = 'approved', code = NULL, approved_at = ?, approved_by = ?, updated_at = ?
             WHERE device_id = ? AND status = 'pending' AND code = ?",
        )
        .bind(now)
        .bind(by)
        .bind(now)
        .bind(device.to_string())
        .bind(i64::from(code))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(ApiError::bad_request(
                "the code does not match the device's pairing: compare the codes on both screens",
            ));
        }
        crate::audit::record(
            &mut *tx,
            Some(by),
            "lan.device.approve",
            Some(("lan_device", &device.to_string())),
            serde_json::json!({"name": current.name}),
        )
        .await?;
        tx.commit().await?;
        self.approved.write().insert(*device);
        self.get(db, device).await
    }

    pub async fn rename(
        &self,
        db: &SqlitePool,
        device: &DeviceId,
        name: &str,
        by: AgentId,
    ) -> Result<LanDevice, ApiError> {
        let name = check_name(name)?;
        let mut tx = crate::store::db::begin_write(db).await?;
        let changed =
            sqlx::query("UPDATE lan_devices SET name = ?, updated_at = ? WHERE device_id = ?")
                .bind(&name)
                .bind(now_ms())
                .bind(device.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Err(ApiError::not_found("device"));
        }
        crate::audit::record(
            &mut *tx,
            Some(by),
            "lan.device.rename",
            Some(("lan_device", &device.to_string())),
            serde_json::json!({"name": name}),
        )
        .await?;
        tx.commit().await?;
        self.get(db, device).await
    }

    /// Revokes a device (pending or approved): off the allowlist before
    /// this returns. The caller closes its connections.
    pub async fn revoke(
        &self,
        db: &SqlitePool,
        device: &DeviceId,
        by: AgentId,
    ) -> Result<LanDevice, ApiError> {
        let now = now_ms();
        let mut tx = crate::store::db::begin_write(db).await?;
        let changed = sqlx::query(
            "UPDATE lan_devices SET status = 'revoked', code = NULL, revoked_at = COALESCE(revoked_at, ?), updated_at = ?
             WHERE device_id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(device.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(ApiError::not_found("device"));
        }
        crate::audit::record(
            &mut *tx,
            Some(by),
            "lan.device.revoke",
            Some(("lan_device", &device.to_string())),
            serde_json::json!({}),
        )
        .await?;
        // Off the allowlist before the commit, so no request is let in
        // between the commit and the memory change; if the commit fails
        // the device is refused until the next start (which reloads).
        self.approved.write().remove(device);
        tx.commit().await?;
        self.get(db, device).await
    }

    /// Forgets a device entirely (it may then pair again, needing a new
    /// approval). The caller closes its connections.
    pub async fn delete(
        &self,
        db: &SqlitePool,
        device: &DeviceId,
        by: AgentId,
    ) -> Result<(), ApiError> {
        let mut tx = crate::store::db::begin_write(db).await?;
        let changed = sqlx::query("DELETE FROM lan_devices WHERE device_id = ?")
            .bind(device.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(ApiError::not_found("device"));
        }
        crate::audit::record(
            &mut *tx,
            Some(by),
            "lan.device.delete",
            Some(("lan_device", &device.to_string())),
            serde_json::json!({}),
        )
        .await?;
        self.approved.write().remove(device);
        tx.commit().await?;
        Ok(())
    }

    /// Counts by status, for the status route.
    pub async fn counts(&self, db: &SqlitePool) -> Result<serde_json::Value, ApiError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM lan_devices GROUP BY status")
                .fetch_all(db)
                .await?;
        let mut counts = serde_json::json!({"pending": 0, "approved": 0, "revoked": 0});
        for (status, count) in rows {
            counts[status] = count.into();
        }
        Ok(counts)
    }
}
