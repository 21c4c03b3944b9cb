-- LAN standbys (issue 18): approved devices an admin chose to keep a copy
-- of the shop (`lan::replication`). The device's own consent is running
-- `kefu-server lan standby`; this row is the host's side. Shop data: it
-- moves with the store on a takeover.
CREATE TABLE lan_standbys (
    device_id   TEXT PRIMARY KEY REFERENCES lan_devices(device_id) ON DELETE CASCADE,
    enabled_at  INTEGER NOT NULL,
    enabled_by  TEXT REFERENCES agents(id)
);
