-- LAN devices that asked to pair with this host (issue 17): pending until
-- an admin approves them, then on the allowlist until revoked. Shop data,
-- kept with the rest of it (and moved with it when the host role is
-- handed over), not in the device's own lan/state.json.
CREATE TABLE lan_devices (
    device_id     TEXT PRIMARY KEY,   -- grouped base32, lan::DeviceId's text
    name          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'revoked')),
    code          INTEGER,            -- the host's pairing code while pending
    address       TEXT,               -- the IP it asked from
    requested_at  INTEGER NOT NULL,
    approved_at   INTEGER,
    approved_by   TEXT REFERENCES agents(id),
    revoked_at    INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX lan_devices_status ON lan_devices(status);
