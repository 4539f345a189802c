// qr.js against whole matrices made by libqrencode (qr_fixtures.json: versions 2 to 10, levels
// L and M, ASCII and UTF-8 text). libqrencode picks its own mask; the test reads that mask from
// the fixture's format bits and asks qr.js for the same one, so the comparison is exact.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { qrMatrix, qrSvg } from "../../../pubquiz_engine/web/static/qr.js";

const fixtures = JSON.parse(readFileSync(new URL("./qr_fixtures.json", import.meta.url), "utf-8"));

/** The mask number written in a matrix's first copy of the format bits. */
function maskOf(rows) {
  const dark = (x, y) => rows[y][x] === "1";
  let bits = 0;
  const order = [[8, 0], [8, 1], [8, 2], [8, 3], [8, 4], [8, 5], [8, 7], [8, 8], [7, 8],
    [5, 8], [4, 8], [3, 8], [2, 8], [1, 8], [0, 8]];
  order.forEach(([x, y], i) => {
    if (dark(x, y)) bits |= 1 << i;
  });
  return ((bits ^ 0x5412) >>> 10) & 0b111;
}

const render = (modules) => modules.map((row) => row.map((d) => (d ? "1" : "0")).join(""));

for (const fixture of fixtures.codes) {
  test(`matches libqrencode: ${fixture.ecl} v${fixture.version} ${fixture.text.slice(0, 30)}`,
    () => {
      const mask = maskOf(fixture.rows);
      const code = qrMatrix(fixture.text, { ecl: fixture.ecl, mask });
      assert.equal(code.version, fixture.version);
      assert.deepEqual(render(code.modules), fixture.rows);
    });
}

test("the chosen mask is one of the eight and the format bits name it", () => {
  for (const fixture of fixtures.codes) {
    const code = qrMatrix(fixture.text, { ecl: fixture.ecl });
    assert.ok(code.mask >= 0 && code.mask < 8);
    assert.equal(maskOf(render(code.modules)), code.mask);
  }
});

test("too long a text is refused, and the SVG has a quiet zone", () => {
  assert.throws(() => qrMatrix("x".repeat(300)), RangeError);
  const svg = qrSvg("http://127.0.0.1/play?code=K7QX");
  assert.match(svg, /viewBox="0 0 37 37"/); // version 2: 25 modules + 2 * 4
});
