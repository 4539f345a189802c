// A small QR code encoder (ISO/IEC 18004): byte mode, versions 1 to 10, error correction L or M.
//
// Enough for a join link (version 10-M holds 213 bytes). The algorithm follows the standard's
// steps in order; each function is one step:
//   encode the bytes -> add error correction per block and interleave -> draw the function
//   patterns -> place the codewords -> apply the mask with the lowest penalty -> format bits.
// Rules this module keeps:
// 1. Pure: returns a boolean matrix (true = dark); `qrSvg` turns it into SVG text with a quiet
//    zone, so the page needs no canvas and the code scales crisply on a projector.
// 2. Data tables are copied from the standard (per version and level: error correction
//    codewords per block and block counts); everything else is computed.
// 3. tests/web/js/qr.test.mjs compares whole matrices with libqrencode's output.

const MAX_VERSION = 10;
// Index 0 unused. From ISO/IEC 18004 table 9.
const ECC_PER_BLOCK = {
  L: [0, 7, 10, 15, 20, 26, 18, 20, 24, 30, 18],
  M: [0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26],
};
const NUM_BLOCKS = {
  L: [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4],
  M: [0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5],
};
// The two format bits of each level (yes, L is 01 and M is 00).
const FORMAT_BITS = { L: 1, M: 0 };

/** Modules available for data and error correction in `version` (no function patterns). */
function rawDataModules(version) {
  let result = (16 * version + 128) * version + 64;
  if (version >= 2) {
    const align = Math.floor(version / 7) + 2;
    result -= (25 * align - 10) * align - 55;
    if (version >= 7) result -= 36;
  }
  return result;
}

function dataCodewords(version, ecl) {
  return Math.floor(rawDataModules(version) / 8) -
    ECC_PER_BLOCK[ecl][version] * NUM_BLOCKS[ecl][version];
}

// --- Reed-Solomon over GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 ------------------

function gfMultiply(x, y) {
  let z = 0;
  for (let i = 7; i >= 0; i--) {
    z = (z << 1) ^ ((z >>> 7) * 0x11d);
    z ^= ((y >>> i) & 1) * x;
  }
  return z;
}

/** The generator polynomial of `degree` (roots 2^0 .. 2^(degree-1)), leading 1 omitted. */
function rsDivisor(degree) {
  const result = new Array(degree).fill(0);
  result[degree - 1] = 1;
  let root = 1;
  for (let i = 0; i < degree; i++) {
    for (let j = 0; j < degree; j++) {
      result[j] = gfMultiply(result[j], root);
      if (j + 1 < degree) result[j] ^= result[j + 1];
    }
    root = gfMultiply(root, 0x02);
  }
  return result;
}

function rsRemainder(data, divisor) {
  const result = new Array(divisor.length).fill(0);
  for (const byte of data) {
    const factor = byte ^ result.shift();
    result.push(0);
    divisor.forEach((coef, i) => {
      result[i] ^= gfMultiply(coef, factor);
    });
  }
  return result;
}

// --- step 1: the data codewords ----------------------------------------------------------------

function dataBits(bytes, version, ecl) {
  const bits = [];
  const put = (value, length) => {
    for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1);
  };
  put(0b0100, 4); // byte mode
  put(bytes.length, version <= 9 ? 8 : 16);
  for (const byte of bytes) put(byte, 8);
  const capacity = dataCodewords(version, ecl) * 8;
  put(0, Math.min(4, capacity - bits.length)); // terminator
  put(0, (8 - (bits.length % 8)) % 8);
  const codewords = [];
  for (let i = 0; i < bits.length; i += 8) {
    codewords.push(bits.slice(i, i + 8).reduce((acc, bit) => (acc << 1) | bit, 0));
  }
  for (let pad = 0xec; codewords.length < capacity / 8; pad ^= 0xec ^ 0x11) codewords.push(pad);
  return codewords;
}

// --- step 2: error correction and interleaving -------------------------------------------------

function interleave(data, version, ecl) {
  const numBlocks = NUM_BLOCKS[ecl][version];
  const eccLen = ECC_PER_BLOCK[ecl][version];
  const rawCodewords = Math.floor(rawDataModules(version) / 8);
  const numShort = numBlocks - (rawCodewords % numBlocks);
  const shortLen = Math.floor(rawCodewords / numBlocks);
  const divisor = rsDivisor(eccLen);
  const blocks = [];
  for (let i = 0, k = 0; i < numBlocks; i++) {
    const take = shortLen - eccLen + (i < numShort ? 0 : 1);
    const block = data.slice(k, k + take);
    k += take;
    const ecc = rsRemainder(block, divisor);
    if (i < numShort) block.push(0); // a placeholder so that all blocks line up
    blocks.push(block.concat(ecc));
  }
  const result = [];
  for (let i = 0; i < blocks[0].length; i++) {
    blocks.forEach((block, j) => {
      // Skip the placeholder byte of the short blocks.
      if (i !== shortLen - eccLen || j >= numShort) result.push(block[i]);
    });
  }
  return result;
}

// --- step 3: function patterns -----------------------------------------------------------------

function alignmentPositions(version, size) {
  if (version === 1) return [];
  const count = Math.floor(version / 7) + 2;
  const step = Math.ceil((version * 4 + 4) / (count * 2 - 2)) * 2;
  const result = [6];
  for (let pos = size - 7; result.length < count; pos -= step) result.splice(1, 0, pos);
  return result;
}

class Grid {
  constructor(version) {
    this.version = version;
    this.size = version * 4 + 17;
    this.dark = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
    this.fixed = Array.from({ length: this.size }, () => new Array(this.size).fill(false));
  }

  set(x, y, dark) {
    this.dark[y][x] = dark;
    this.fixed[y][x] = true;
  }

  drawFunctionPatterns() {
    const size = this.size;
    for (let i = 0; i < size; i++) {
      this.set(6, i, i % 2 === 0);
      this.set(i, 6, i % 2 === 0);
    }
    for (const [cx, cy] of [[3, 3], [size - 4, 3], [3, size - 4]]) {
      for (let dy = -4; dy <= 4; dy++) {
        for (let dx = -4; dx <= 4; dx++) {
          const x = cx + dx;
          const y = cy + dy;
          const dist = Math.max(Math.abs(dx), Math.abs(dy));
          if (x >= 0 && x < size && y >= 0 && y < size) this.set(x, y, dist !== 2 && dist !== 4);
        }
      }
    }
    const positions = alignmentPositions(this.version, size);
    const last = positions.length - 1;
    positions.forEach((ay, i) => {
      positions.forEach((ax, j) => {
        // The three corners hold finder patterns.
        if ((i === 0 && j === 0) || (i === 0 && j === last) || (i === last && j === 0)) return;
        for (let dy = -2; dy <= 2; dy++) {
          for (let dx = -2; dx <= 2; dx++) {
            this.set(ax + dx, ay + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
          }
        }
      });
    });
    this.drawFormatBits("M", 0); // reserves the format areas; redrawn after masking
    this.drawVersionBits();
  }

  drawFormatBits(ecl, mask) {
    const data = (FORMAT_BITS[ecl] << 3) | mask;
    let rem = data;
    for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
    const bits = ((data << 10) | rem) ^ 0x5412;
    const bit = (i) => ((bits >>> i) & 1) === 1;
    const size = this.size;
    for (let i = 0; i <= 5; i++) this.set(8, i, bit(i));
    this.set(8, 7, bit(6));
    this.set(8, 8, bit(7));
    this.set(7, 8, bit(8));
    for (let i = 9; i < 15; i++) this.set(14 - i, 8, bit(i));
    for (let i = 0; i < 8; i++) this.set(size - 1 - i, 8, bit(i));
    for (let i = 8; i < 15; i++) this.set(8, size - 15 + i, bit(i));
    this.set(8, size - 8, true); // the dark module
  }

  drawVersionBits() {
    if (this.version < 7) return;
    let rem = this.version;
    for (let i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
    const bits = (this.version << 12) | rem;
    for (let i = 0; i < 18; i++) {
      const dark = ((bits >>> i) & 1) === 1;
      const a = this.size - 11 + (i % 3);
      const b = Math.floor(i / 3);
      this.set(a, b, dark);
      this.set(b, a, dark);
    }
  }

  // --- step 4: codewords in the zigzag ---------------------------------------------------------

  drawCodewords(codewords) {
    const size = this.size;
    let i = 0;
    for (let right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5; // skip the vertical timing pattern
      for (let vert = 0; vert < size; vert++) {
        for (let j = 0; j < 2; j++) {
          const x = right - j;
          const upward = ((right + 1) & 2) === 0;
          const y = upward ? size - 1 - vert : vert;
          if (!this.fixed[y][x] && i < codewords.length * 8) {
            this.dark[y][x] = ((codewords[i >>> 3] >>> (7 - (i & 7))) & 1) === 1;
            i++;
          }
        }
      }
    }
  }

  // --- step 5: masks ---------------------------------------------------------------------------

  applyMask(mask) {
    const rule = MASKS[mask];
    for (let y = 0; y < this.size; y++) {
      for (let x = 0; x < this.size; x++) {
        if (!this.fixed[y][x] && rule(x, y)) this.dark[y][x] = !this.dark[y][x];
      }
    }
  }

  /** The standard's penalty: long runs, 2x2 blocks, finder look-alikes, dark/light balance. */
  penalty() {
    const size = this.size;
    const at = (x, y, vertical) => (vertical ? this.dark[x][y] : this.dark[y][x]);
    let score = 0;
    for (const vertical of [false, true]) {
      for (let y = 0; y < size; y++) {
        let run = 1;
        for (let x = 1; x <= size; x++) {
          if (x < size && at(x, y, vertical) === at(x - 1, y, vertical)) {
            run++;
            continue;
          }
          if (run >= 5) score += 3 + (run - 5);
          run = 1;
        }
        for (let x = 0; x + 11 <= size; x++) {
          let line = "";
          for (let k = 0; k < 11; k++) line += at(x + k, y, vertical) ? "1" : "0";
          if (line === "10111010000" || line === "00001011101") score += 40;
        }
      }
    }
    let dark = 0;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        if (this.dark[y][x]) dark++;
        if (x + 1 < size && y + 1 < size) {
          const c = this.dark[y][x];
          if (c === this.dark[y][x + 1] && c === this.dark[y + 1][x] &&
              c === this.dark[y + 1][x + 1]) score += 3;
        }
      }
    }
    const total = size * size;
    score += (Math.ceil(Math.abs(dark * 20 - total * 10) / total) - 1) * 10;
    return score;
  }
}

const MASKS = [
  (x, y) => (x + y) % 2 === 0,
  (x, y) => y % 2 === 0,
  (x) => x % 3 === 0,
  (x, y) => (x + y) % 3 === 0,
  (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
  (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
  (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
  (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
];

/**
 * The QR code of `text` (UTF-8, byte mode): `{version, size, mask, ecl, modules}` where
 * `modules[y][x]` is true for a dark module. Options: `ecl` ("L" or "M", default "M"),
 * `mask` (0..7; default: the one with the lowest penalty). Throws if the text is too long.
 */
export function qrMatrix(text, { ecl = "M", mask = null } = {}) {
  if (!(ecl in ECC_PER_BLOCK)) throw new RangeError(`error correction level ${ecl}: use L or M`);
  const bytes = [...new TextEncoder().encode(text)];
  let version = 1;
  // 4 bits of mode, the count (8 bits up to version 9, 16 from 10), then the bytes.
  while (version <= MAX_VERSION &&
         4 + (version <= 9 ? 8 : 16) + bytes.length * 8 > dataCodewords(version, ecl) * 8) {
    version++;
  }
  if (version > MAX_VERSION) throw new RangeError(`${bytes.length} bytes is too long for a QR code here`);
  const codewords = interleave(dataBits(bytes, version, ecl), version, ecl);
  const build = (m) => {
    const grid = new Grid(version);
    grid.drawFunctionPatterns();
    grid.drawCodewords(codewords);
    grid.applyMask(m);
    grid.drawFormatBits(ecl, m);
    return grid;
  };
  let best = null;
  let bestMask = mask;
  if (mask === null) {
    let bestScore = Infinity;
    for (let m = 0; m < 8; m++) {
      const grid = build(m);
      const score = grid.penalty();
      if (score < bestScore) [best, bestScore, bestMask] = [grid, score, m];
    }
  } else {
    best = build(mask);
  }
  return { version, size: best.size, mask: bestMask, ecl, modules: best.dark };
}

/** SVG text drawing `text` as a QR code with a 4-module quiet zone (black on white). */
export function qrSvg(text, options = {}) {
  const { size, modules } = qrMatrix(text, options);
  const quiet = 4;
  let path = "";
  modules.forEach((row, y) => {
    row.forEach((dark, x) => {
      if (dark) path += `M${x + quiet},${y + quiet}h1v1h-1z`;
    });
  });
  const full = size + quiet * 2;
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${full} ${full}" ` +
    `shape-rendering="crispEdges" aria-hidden="true"><rect width="${full}" height="${full}" ` +
    `fill="#fff"/><path d="${path}" fill="#000"/></svg>`;
}
