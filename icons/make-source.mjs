// Draws icons/source.png (1024x1024), the master of every app icon; then
// `npx tauri icon icons/source.png -o icons` makes the platform formats.
// Plain Node (zlib), so no image tool is needed: a teal rounded square with
// a white speech bubble and three dots.
import { deflateSync } from "node:zlib";
import { writeFileSync } from "node:fs";

const N = 1024;
const px = Buffer.alloc(N * N * 4);
const inRoundRect = (x, y, x0, y0, x1, y1, r) => {
  const cx = Math.min(Math.max(x, x0 + r), x1 - r);
  const cy = Math.min(Math.max(y, y0 + r), y1 - r);
  return x >= x0 && x <= x1 && y >= y0 && y <= y1 && (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
};
const inTriangle = (x, y, [ax, ay], [bx, by], [cx, cy]) => {
  const s = (px, py, qx, qy, rx, ry) => (px - rx) * (qy - ry) - (qx - rx) * (py - ry);
  const d1 = s(x, y, ax, ay, bx, by), d2 = s(x, y, bx, by, cx, cy), d3 = s(x, y, cx, cy, ax, ay);
  return !((d1 < 0 || d2 < 0 || d3 < 0) && (d1 > 0 || d2 > 0 || d3 > 0));
};
for (let y = 0; y < N; y++) {
  for (let x = 0; x < N; x++) {
    let c = [0, 0, 0, 0];
    // 4x supersampling for smooth edges
    let acc = [0, 0, 0, 0];
    for (const [dx, dy] of [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]) {
      const sx = x + dx, sy = y + dy;
      let s = [0, 0, 0, 0];
      if (inRoundRect(sx, sy, 64, 64, 960, 960, 200)) s = [15, 118, 110, 255];
      const bubble = inRoundRect(sx, sy, 220, 260, 804, 690, 120) ||
        inTriangle(sx, sy, [330, 660], [300, 820], [470, 680]);
      if (bubble) s = [255, 255, 255, 255];
      for (const cx of [372, 512, 652]) if ((sx - cx) ** 2 + (sy - 475) ** 2 <= 50 * 50) s = [15, 118, 110, 255];
      for (let i = 0; i < 4; i++) acc[i] += s[i] / 4;
    }
    c = acc.map(Math.round);
    px.set(c, (y * N + x) * 4);
  }
}
const raw = Buffer.alloc(N * (N * 4 + 1));
for (let y = 0; y < N; y++) px.copy(raw, y * (N * 4 + 1) + 1, y * N * 4, (y + 1) * N * 4);
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(crc(td));
  return Buffer.concat([len, td, c]);
};
const ihdr = Buffer.alloc(13);
ihdr.writeUInt32BE(N, 0);
ihdr.writeUInt32BE(N, 4);
ihdr[8] = 8; ihdr[9] = 6;
writeFileSync(new URL("./source.png", import.meta.url), Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw, { level: 9 })), chunk("IEND", Buffer.alloc(0)),
]));
