import { describe, expect, it } from "vitest";
import { foundRows, looking, type FoundHost } from "./found";

const host = (over: Partial<FoundHost>): FoundHost => ({
  shop: "Tea House",
  address: "192.168.1.20:5339",
  addresses: ["192.168.1.20:5339"],
  device_id: "GAVW-HOZ3-54VJ-I6D3-LGKS-RMIV-XE4G-JUP2-GD3O-AEK6-675A-IYEH-PHIQ",
  short_id: "GAVW-HOZ3",
  term: 2,
  link: "kefu://pair?host=192.168.1.20:5339&id=GAVW-HOZ3-54VJ-I6D3-LGKS-RMIV-XE4G-JUP2-GD3O-AEK6-675A-IYEH-PHIQ",
  ...over,
});

describe("found hosts", () => {
  it("shows the shop, the address and the grouped ID, and picks the link", () => {
    const [row] = foundRows([host({})], "Unnamed shop");
    expect(row.title).toBe("Tea House");
    expect(row.address).toBe("192.168.1.20:5339");
    expect(row.deviceId).toContain("-");
    expect(row.target.startsWith("kefu://pair?host=192.168.1.20:5339&id=")).toBe(true);
  });

  it("names an unnamed shop by its short ID and bounds the list", () => {
    const [row] = foundRows([host({ shop: null })], "未命名店铺");
    expect(row.title).toBe("未命名店铺 (GAVW-HOZ3)");
    const many = Array.from({ length: 50 }, (_, i) => host({ address: `10.0.0.${i}:5339` }));
    const rows = foundRows(many, "x");
    expect(rows).toHaveLength(20);
    expect(new Set(rows.map((r) => r.key)).size).toBe(20);
  });

  it("looks only while the person is choosing", () => {
    expect(looking("idle")).toBe(true);
    expect(looking("failed")).toBe(true);
    expect(looking("connecting")).toBe(false);
    expect(looking("waiting")).toBe(false);
    expect(looking("joined")).toBe(false);
  });
});
