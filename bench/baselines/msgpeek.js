// The few top-level fields a load generator looks at in a msgpack map, read in place.
//
// Why: after the lean WebSocket client (leanws.js), msgpackr's unpack was the largest cost in
// user space of the engine's load generator (about a sixth of its busy time in a
// `fanout --pace flood` profile): it builds every string and array of every frame (question
// texts, choices, reveal results), while a player of the benchmark reads `t`, `q`, `rid` and
// `code`. peek(buf, want) walks the map and decodes only the values of the keys in `want`
// whose values are scalars (nil, bool, int, float, str); every other value is skipped by its
// length, without building it. Anything that is not a map returns null. A truncated or
// malformed value throws, as unpack does.
'use strict';

function u16(buf, pos) { return (buf[pos] << 8) | buf[pos + 1]; }
function u32(buf, pos) { return buf.readUInt32BE(pos); }

// The position just after the msgpack value starting at `pos`.
function skip(buf, pos) {
  let left = 1;  // values still to skip (a map or an array adds its members)
  while (left > 0) {
    left--;
    const b = buf[pos];
    if (b === undefined) throw new RangeError('msgpack: truncated');
    if (b <= 0x7f || b >= 0xe0) { pos += 1; continue; }     // fixint
    if (b <= 0x8f) { left += 2 * (b & 0x0f); pos += 1; continue; }  // fixmap
    if (b <= 0x9f) { left += b & 0x0f; pos += 1; continue; }        // fixarray
    if (b <= 0xbf) { pos += 1 + (b & 0x1f); continue; }             // fixstr
    switch (b) {
      case 0xc0: case 0xc2: case 0xc3: pos += 1; break;              // nil, false, true
      case 0xc4: case 0xd9: pos += 2 + buf[pos + 1]; break;          // bin8, str8
      case 0xc5: case 0xda: pos += 3 + u16(buf, pos + 1); break;     // bin16, str16
      case 0xc6: case 0xdb: pos += 5 + u32(buf, pos + 1); break;     // bin32, str32
      case 0xc7: pos += 3 + buf[pos + 1]; break;                     // ext8
      case 0xc8: pos += 4 + u16(buf, pos + 1); break;                // ext16
      case 0xc9: pos += 6 + u32(buf, pos + 1); break;                // ext32
      case 0xca: pos += 5; break;                                    // float32
      case 0xcb: pos += 9; break;                                    // float64
      case 0xcc: case 0xd0: pos += 2; break;                         // (u)int8
      case 0xcd: case 0xd1: pos += 3; break;                         // (u)int16
      case 0xce: case 0xd2: pos += 5; break;                         // (u)int32
      case 0xcf: case 0xd3: pos += 9; break;                         // (u)int64
      case 0xd4: pos += 3; break;                                    // fixext1
      case 0xd5: pos += 4; break;                                    // fixext2
      case 0xd6: pos += 6; break;                                    // fixext4
      case 0xd7: pos += 10; break;                                   // fixext8
      case 0xd8: pos += 18; break;                                   // fixext16
      case 0xdc: left += u16(buf, pos + 1); pos += 3; break;         // array16
      case 0xdd: left += u32(buf, pos + 1); pos += 5; break;         // array32
      case 0xde: left += 2 * u16(buf, pos + 1); pos += 3; break;     // map16
      case 0xdf: left += 2 * u32(buf, pos + 1); pos += 5; break;     // map32
      default: throw new RangeError(`msgpack: bad byte 0x${b.toString(16)}`);  // 0xc1
    }
  }
  if (pos > buf.length) throw new RangeError('msgpack: truncated');
  return pos;
}

// [value, next position] of a scalar at `pos`, or [undefined, next] for anything else.
function scalar(buf, pos) {
  const b = buf[pos];
  if (b <= 0x7f) return [b, pos + 1];
  if (b >= 0xe0) return [b - 256, pos + 1];
  if (b >= 0xa0 && b <= 0xbf) {
    const end = pos + 1 + (b & 0x1f);
    return [buf.toString('utf8', pos + 1, end), end];
  }
  switch (b) {
    case 0xc0: return [null, pos + 1];
    case 0xc2: return [false, pos + 1];
    case 0xc3: return [true, pos + 1];
    case 0xcc: return [buf[pos + 1], pos + 2];
    case 0xcd: return [u16(buf, pos + 1), pos + 3];
    case 0xce: return [u32(buf, pos + 1), pos + 5];
    case 0xcf: return [Number(buf.readBigUInt64BE(pos + 1)), pos + 9];
    case 0xd0: return [buf.readInt8(pos + 1), pos + 2];
    case 0xd1: return [buf.readInt16BE(pos + 1), pos + 3];
    case 0xd2: return [buf.readInt32BE(pos + 1), pos + 5];
    case 0xd3: return [Number(buf.readBigInt64BE(pos + 1)), pos + 9];
    case 0xca: return [buf.readFloatBE(pos + 1), pos + 5];
    case 0xcb: return [buf.readDoubleBE(pos + 1), pos + 9];
    case 0xd9: { const end = pos + 2 + buf[pos + 1]; return [buf.toString('utf8', pos + 2, end), end]; }
    case 0xda: { const end = pos + 3 + u16(buf, pos + 1); return [buf.toString('utf8', pos + 3, end), end]; }
    case 0xdb: { const end = pos + 5 + u32(buf, pos + 1); return [buf.toString('utf8', pos + 5, end), end]; }
    default: return [undefined, skip(buf, pos)];
  }
}

// `want`'s keys as bytes, by length: a key of the map is compared in place, and a string is
// made only for the keys asked for.
const compiled = new WeakMap();
function keysOf(want) {
  let byLen = compiled.get(want);
  if (!byLen) {
    byLen = [];
    for (const name of Object.keys(want)) {
      const bytes = Buffer.from(name, 'latin1');
      (byLen[bytes.length] = byLen[bytes.length] || []).push([bytes, name]);
    }
    compiled.set(want, byLen);
  }
  return byLen;
}

function match(buf, start, candidates) {
  for (let c = 0; c < candidates.length; c++) {
    const bytes = candidates[c][0];
    let i = 0;
    while (i < bytes.length && buf[start + i] === bytes[i]) i++;
    if (i === bytes.length) return candidates[c][1];
  }
  return undefined;
}

// {key: value} for the keys of `want` (an object whose own keys are the names) found at the
// top level of the map in `buf` with a scalar value; null when `buf` is not a map.
function peek(buf, want) {
  const b = buf[0];
  let n;
  let pos;
  if (b >= 0x80 && b <= 0x8f) { n = b & 0x0f; pos = 1; }
  else if (b === 0xde) { n = u16(buf, 1); pos = 3; }
  else if (b === 0xdf) { n = u32(buf, 1); pos = 5; }
  else return null;
  const byLen = keysOf(want);
  const out = {};
  for (let i = 0; i < n; i++) {
    const k = buf[pos];
    let start;
    let len;
    if (k >= 0xa0 && k <= 0xbf) { len = k & 0x1f; start = pos + 1; }
    else if (k === 0xd9) { len = buf[pos + 1]; start = pos + 2; }
    else { pos = skip(buf, skip(buf, pos)); continue; }  // a key that is not a short string
    pos = start + len;
    const candidates = byLen[len];
    const key = candidates === undefined ? undefined : match(buf, start, candidates);
    if (key === undefined) { pos = skip(buf, pos); continue; }
    const [value, next] = scalar(buf, pos);
    if (value !== undefined) out[key] = value;
    pos = next;
  }
  if (pos > buf.length) throw new RangeError('msgpack: truncated');
  return out;
}

module.exports = { peek, skip };
