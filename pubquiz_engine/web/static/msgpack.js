// msgpack for pubquiz.v1: the subset the protocol uses (SPEC section 3), with hard limits.
//
// Rules this module keeps:
// 1. Pure: no DOM, no WebSocket, no globals beyond TextEncoder/TextDecoder, so node's test
//    runner and the browser load the same file.
// 2. `unpack` trusts nothing. Every way bytes can be wrong throws a `CodecError` whose `code`
//    is the protocol's stable error code. Which code a frame with several faults gets is
//    `firstFault`'s answer (SPEC section 12: the first fault in byte order), as on the server;
//    `unpack` itself stops at the first fault it meets, in msgpack-python's order:
//    - a str/bin/ext body must be present before its declared length is held to a limit;
//    - an array or map length is held to its limit at the header, before anything is allocated;
//    - nesting deeper than HARD_DEPTH is `limit_exceeded` (the protocol's own depth limit is
//      checked afterwards by protocol.js, per field, as the server does);
//    - map keys must be strings (an empty bin key is kept, as bytes, for the caller to refuse).
//    When `unpack` refuses a frame part-way, `readEnvelope` recovers the top-level map's "rid"
//    and "t" with a bounded walk (the server codec's `_recover_envelope`, SPEC section 12).
// 3. Numbers keep their msgpack kind: integers decode to `number` (or `bigint` when outside
//    +-(2^53-1), which the schema then refuses), floats decode to `Float64` wrappers so the
//    caller can tell `1.0` from `1` (JavaScript cannot). protocol.js unwraps them for the pages.
// 4. `pack` writes the canonical form: integers in their shortest form, floats (`Float64`, or
//    any non-integer number) as float64, strings as fixstr/str8/str16/str32, and map entries in
//    insertion order (protocol.js builds maps with "t" first and fields in schema order).
// 5. Maps decode to `Map` objects (no prototype pitfalls with keys like "__proto__", key order
//    kept); protocol.js turns them into plain objects once they are validated.

/** An error with a stable pubquiz.v1 error code (`malformed_frame`, `limit_exceeded`, ...). */
export class CodecError extends Error {
  /**
   * `rid` and `messageType` are the frame's request id and `"t"` when they could be read (as on
   * the server's DecodeError); `valueComplete` is true only for bytes after a complete value
   * (the framing is wrong, not the value: no rid is recovered for it).
   */
  constructor(code, message, rid = null, messageType = null) {
    super(message);
    this.name = "CodecError";
    this.code = code;
    this.rid = rid;
    this.messageType = messageType;
    this.valueComplete = false;
  }
}

/** A number that is (or must be encoded as) a msgpack float64. */
export class Float64 {
  constructor(value) {
    this.value = Number(value);
  }
  valueOf() {
    return this.value;
  }
}

/** Limits for frames a server decodes from clients (protocol/limits.py CLIENT_LIMITS). */
export const CLIENT_LIMITS = Object.freeze({
  maxFrameBytes: 64 * 1024,
  maxOperatorFrameBytes: 1024 * 1024,
  maxStrBytes: 4 * 1024,
  maxArrayLen: 1000,
  maxMapLen: 1000,
  maxDepth: 16,
});

/** Limits for frames a client decodes from the server (SERVER_LIMITS): a host's state is big. */
export const SERVER_LIMITS = Object.freeze({
  maxFrameBytes: 4 * 1024 * 1024,
  maxOperatorFrameBytes: 4 * 1024 * 1024,
  maxStrBytes: 64 * 1024,
  maxArrayLen: 100000,
  maxMapLen: 100000,
  maxDepth: 16,
});

/** Containers nested deeper than this stop the decoder (msgpack-python's fixed stack). */
export const HARD_DEPTH = 1024;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

// --- decoding -------------------------------------------------------------------------------

class Reader {
  constructor(bytes, limits) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.limits = limits;
    // Declared entry count and distinct keys of the frame's own (top-level) map: a repeated
    // key there is refused by the protocol layer, which needs both numbers.
    this.topDeclared = null;
    this.topDistinct = null;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) {
      throw new CodecError("malformed_frame", "truncated frame");
    }
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }
  u16() {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  int64(signed) {
    this.need(8);
    const big = signed ? this.view.getBigInt64(this.pos) : this.view.getBigUint64(this.pos);
    this.pos += 8;
    // Beyond the safe range a number would silently lose digits: keep it a bigint, which the
    // schema refuses (SPEC: such integers are `invalid_message` wherever a number is allowed).
    if (big > 9007199254740991n || big < -9007199254740991n) return big;
    return Number(big);
  }

  str(n) {
    this.need(n); // the body first, then the limit (msgpack-python's order)
    if (n > this.limits.maxStrBytes) {
      throw new CodecError("limit_exceeded", `a string of ${n} bytes is over the limit`);
    }
    const slice = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(slice);
    } catch {
      throw new CodecError("malformed_frame", "a string is not valid UTF-8");
    }
  }

  bin(n) {
    this.need(n);
    if (n > 0) throw new CodecError("unsupported_type", "bin values are not allowed");
    // An empty bin gets through msgpack-python too; the schema refuses it with the frame's rid.
    return new Uint8Array(0);
  }

  ext(n) {
    this.need(n + 1); // type byte and body
    throw new CodecError("unsupported_type", "ext values are not allowed");
  }

  array(n, depth) {
    if (n > this.limits.maxArrayLen) {
      throw new CodecError("limit_exceeded", `an array of ${n} elements is over the limit`);
    }
    if (depth >= HARD_DEPTH) throw new CodecError("limit_exceeded", "nested too deeply");
    const out = [];
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  map(n, depth) {
    if (n > this.limits.maxMapLen) {
      throw new CodecError("limit_exceeded", `a map of ${n} entries is over the limit`);
    }
    if (depth >= HARD_DEPTH) throw new CodecError("limit_exceeded", "nested too deeply");
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      const item = this.value(depth + 1);
      // msgpack-python checks the key once its value is read too (a truncated value after a
      // non-string key is malformed_frame).
      if (typeof key !== "string" && !(key instanceof Uint8Array)) {
        throw new CodecError("invalid_message", "map keys must be strings");
      }
      out.set(key, item); // a repeated key keeps the last value
    }
    if (depth === 0) {
      this.topDeclared = n;
      this.topDistinct = out.size;
    }
    return out;
  }

  /** Step over `n` bytes that must be in the frame. */
  advance(n) {
    this.need(n);
    this.pos += n;
  }

  /** The entry count of a map header (no limit checked), or throw if the next value is no map. */
  mapHeader() {
    const b = this.u8();
    if (b >= 0x80 && b <= 0x8f) return b & 0x0f;
    if (b === 0xde) return this.u16();
    if (b === 0xdf) return this.u32();
    throw new CodecError("invalid_message", "not a map");
  }

  /**
   * Step over one whole value by its declared lengths, building nothing and checking no limit
   * (msgpack-python's `Unpacker.skip()`): it fails only on a declared length the bytes do not
   * hold, a reserved byte, or containers nested more than HARD_DEPTH deep (msgpack's fixed stack,
   * counted from the skipped value itself). Iterative; each step consumes at least one byte.
   */
  skip() {
    const pending = []; // values still to come in each open container
    for (;;) {
      const b = this.u8();
      let items = -1; // a container's number of values (keys and values for a map)
      if (b <= 0x7f || b >= 0xe0) {
        // fixint
      } else if (b <= 0x8f) items = (b & 0x0f) * 2;
      else if (b <= 0x9f) items = b & 0x0f;
      else if (b <= 0xbf) this.advance(b & 0x1f);
      else {
        switch (b) {
          case 0xc0: case 0xc2: case 0xc3: break;
          case 0xc4: case 0xd9: this.advance(this.u8()); break;
          case 0xc5: case 0xda: this.advance(this.u16()); break;
          case 0xc6: case 0xdb: this.advance(this.u32()); break;
          case 0xc7: this.advance(this.u8() + 1); break; // ext: type byte and body
          case 0xc8: this.advance(this.u16() + 1); break;
          case 0xc9: this.advance(this.u32() + 1); break;
          case 0xcc: case 0xd0: this.advance(1); break;
          case 0xcd: case 0xd1: this.advance(2); break;
          case 0xca: case 0xce: case 0xd2: this.advance(4); break;
          case 0xcb: case 0xcf: case 0xd3: this.advance(8); break;
          case 0xd4: this.advance(2); break;
          case 0xd5: this.advance(3); break;
          case 0xd6: this.advance(5); break;
          case 0xd7: this.advance(9); break;
          case 0xd8: this.advance(17); break;
          case 0xdc: items = this.u16(); break;
          case 0xdd: items = this.u32(); break;
          case 0xde: items = this.u16() * 2; break;
          case 0xdf: items = this.u32() * 2; break;
          default: // 0xc1, reserved
            throw new CodecError("malformed_frame", "reserved byte 0xc1");
        }
      }
      if (items >= 0) {
        if (pending.length >= HARD_DEPTH) {
          throw new CodecError("limit_exceeded", "nested too deeply");
        }
        if (items > 0) {
          pending.push(items);
          continue;
        }
      }
      // A value is complete: count it in its container, and close every container it fills.
      for (;;) {
        if (pending.length === 0) return;
        if (--pending[pending.length - 1] > 0) break;
        pending.pop();
      }
    }
  }

  value(depth) {
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b <= 0xbf) return this.str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: {
        this.need(4);
        const v = this.view.getFloat32(this.pos);
        this.pos += 4;
        return new Float64(v);
      }
      case 0xcb: {
        this.need(8);
        const v = this.view.getFloat64(this.pos);
        this.pos += 8;
        return new Float64(v);
      }
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.int64(false);
      case 0xd0: { const v = this.u8(); return v > 0x7f ? v - 0x100 : v; }
      case 0xd1: { const v = this.u16(); return v > 0x7fff ? v - 0x10000 : v; }
      case 0xd2: { const v = this.u32(); return v > 0x7fffffff ? v - 0x100000000 : v; }
      case 0xd3: return this.int64(true);
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: // 0xc1, reserved
        throw new CodecError("malformed_frame", "reserved byte 0xc1");
    }
  }
}

/**
 * Decode one msgpack value that must fill `bytes` exactly.
 * Returns `{value, topDeclared, topDistinct}`; see the module rules for the value's shapes.
 */
export function unpack(bytes, limits = SERVER_LIMITS) {
  const reader = new Reader(bytes, limits);
  const value = reader.value(0);
  if (reader.pos !== bytes.length) {
    const error = new CodecError("malformed_frame", "bytes after the frame's value");
    error.valueComplete = true;
    throw error;
  }
  return { value, topDeclared: reader.topDeclared, topDistinct: reader.topDistinct };
}

// --- the first fault ------------------------------------------------------------------------

const FIXED_SIZE = new Map([
  [0xc0, 0], [0xc2, 0], [0xc3, 0], [0xca, 4], [0xcb, 8],
  [0xcc, 1], [0xcd, 2], [0xce, 4], [0xcf, 8], [0xd0, 1], [0xd1, 2], [0xd2, 4], [0xd3, 8],
]);
const FIXEXT_SIZE = new Map([[0xd4, 1], [0xd5, 2], [0xd6, 4], [0xd7, 8], [0xd8, 16]]);
const SIZED = new Map([
  [0xc4, [1, "bin"]], [0xc5, [2, "bin"]], [0xc6, [4, "bin"]],
  [0xc7, [1, "ext"]], [0xc8, [2, "ext"]], [0xc9, [4, "ext"]],
  [0xd9, [1, "str"]], [0xda, [2, "str"]], [0xdb, [4, "str"]],
  [0xdc, [2, "array"]], [0xdd, [4, "array"]], [0xde, [2, "map"]], [0xdf, [4, "map"]],
]);

/** `[kind, length, headerSize]` of the value at `pos`, or null when its header is cut short. */
function header(bytes, pos) {
  const b = bytes[pos];
  if (b <= 0x7f || b >= 0xe0) return ["fixed", 0, 1];
  if (b <= 0x8f) return ["map", b & 0x0f, 1];
  if (b <= 0x9f) return ["array", b & 0x0f, 1];
  if (b <= 0xbf) return ["str", b & 0x1f, 1];
  if (FIXED_SIZE.has(b)) return ["fixed", FIXED_SIZE.get(b), 1];
  if (FIXEXT_SIZE.has(b)) return ["ext", FIXEXT_SIZE.get(b), 2];
  const [width, kind] = SIZED.get(b);
  if (pos + 1 + width > bytes.length) return null;
  let length = 0;
  for (let i = 1; i <= width; i++) length = length * 256 + bytes[pos + i];
  return [kind, length, kind === "ext" ? 2 + width : 1 + width];
}

/**
 * The frame's first decoding fault in byte order, as `{code, message}`, or null when it decodes
 * (the server codec's `_first_fault`; SPEC section 12): a length the frame does not hold is
 * `malformed_frame` whatever the type, before that value's limits; depth over `maxDepth` and a
 * key repeated in the top-level map are decoding faults too. Run only on refused frames.
 */
export function firstFault(bytes, limits = SERVER_LIMITS) {
  const size = bytes.length;
  const fault = (code, message) => ({ code, message });
  if (!size) return fault("malformed_frame", "empty frame");
  if (bytes[0] === 0xc1) return fault("malformed_frame", "reserved byte 0xc1");
  if (!((bytes[0] >= 0x80 && bytes[0] <= 0x8f) || bytes[0] === 0xde || bytes[0] === 0xdf)) {
    return fault("invalid_message", "a frame must be a map");
  }
  let pos = 0;
  const stack = []; // [slots left, is a map] per open container
  const topKeys = new Set();
  for (;;) {
    if (pos >= size) return fault("malformed_frame", "the frame ends inside a value");
    const parent = stack.length ? stack[stack.length - 1] : null;
    const isKey = parent !== null && parent[1] && parent[0] % 2 === 0;
    const depth = stack.length + 1;
    if (bytes[pos] === 0xc1) return fault("malformed_frame", "reserved byte 0xc1");
    const head = header(bytes, pos);
    if (head === null) return fault("malformed_frame", "the frame ends inside a header");
    const [kind, length, headSize] = head;
    if (isKey && kind !== "str" && kind !== "bin" && kind !== "ext") {
      return fault("invalid_message", "map keys must be strings");
    }
    const body = pos + headSize;
    if (kind === "array" || kind === "map") {
      const need = kind === "array" ? length : 2 * length;
      if (body + need > size) return fault("malformed_frame", `a ${kind} declares more than the frame holds`);
      if (depth > limits.maxDepth) return fault("limit_exceeded", `nested more than ${limits.maxDepth} levels`);
      const limit = kind === "array" ? limits.maxArrayLen : limits.maxMapLen;
      if (length > limit) return fault("limit_exceeded", `a msgpack ${kind} is over its length limit`);
      pos = body;
    } else {
      if (body + length > size) return fault("malformed_frame", `a ${kind} declares more than the frame holds`);
      if (kind === "bin" || kind === "ext") return fault("unsupported_type", `${kind} values are not allowed`);
      if (kind === "str") {
        if (length > limits.maxStrBytes) return fault("limit_exceeded", "a msgpack str is over its length limit");
        let text;
        try {
          text = utf8.decode(bytes.subarray(body, body + length));
        } catch {
          return fault("malformed_frame", "a string is not valid UTF-8");
        }
        if (isKey && depth === 2) {
          if (topKeys.has(text)) return fault("invalid_message", `duplicate key ${text.slice(0, 64)}`);
          topKeys.add(text);
        }
      }
      pos = body + length;
    }
    if (parent !== null) parent[0] -= 1;
    if ((kind === "array" || kind === "map") && length) {
      stack.push([kind === "array" ? length : 2 * length, kind === "map"]);
    } else if (!stack.length && kind === "map") {
      break; // an empty top-level map
    }
    while (stack.length && stack[stack.length - 1][0] === 0) stack.pop();
    if (!stack.length) break;
  }
  if (pos !== size) return fault("malformed_frame", "bytes after the frame's value");
  return null;
}

// First bytes of an int (fixints, uint8..uint64, int8..int64) and of a str (fixstr, str8..32).
const isIntHead = (b) => b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3);
const isStrHead = (b) => (b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb);

/**
 * The `"rid"` and `"t"` values of a frame `unpack` refused part-way, read by a bounded walk of
 * its top-level map (the server codec's `_recover_envelope`; SPEC section 12). Returns
 * `{rid, t}`, each `undefined` when not read; the caller still checks their types.
 *
 * - nothing unless the frame is a map of at most `maxMapLen` entries;
 * - entries are read in order and the walk ends at the first one it cannot read: a key must be
 *   a str; keys and the `"t"` value are stepped over and then read only when within
 *   `maxStrBytes` and valid UTF-8 (otherwise they are no usable key or `t`, and the walk goes
 *   on); the `"rid"` value is built only if it is an int; every other value is stepped over
 *   by `skip` without being built;
 * - a `"rid"` or `"t"` key seen twice gives nothing for that key.
 * Linear in the frame: every entry consumes bytes, and `skip` is iterative.
 */
/** Step over the str at the reader's position; its text, or null (over the limit, not UTF-8). */
function stepOverStr(reader, limits) {
  const start = reader.pos;
  reader.skip();
  const head = reader.bytes[start];
  const body = start + (head <= 0xbf ? 1 : { 0xd9: 2, 0xda: 3, 0xdb: 5 }[head]);
  if (reader.pos - body > limits.maxStrBytes) return null;
  try {
    return utf8.decode(reader.bytes.subarray(body, reader.pos));
  } catch {
    return null;
  }
}

export function readEnvelope(bytes, limits = SERVER_LIMITS) {
  const reader = new Reader(bytes, limits);
  const found = new Map();
  const repeated = new Set();
  try {
    const count = reader.mapHeader();
    if (count > limits.maxMapLen) return {};
    for (let i = 0; i < count; i++) {
      if (!isStrHead(bytes[reader.pos])) break; // a non-str key (or none left): the walk ends
      const key = stepOverStr(reader, limits);
      if (key !== "rid" && key !== "t") {
        reader.skip();
        continue;
      }
      const wanted = key === "rid" ? isIntHead : isStrHead;
      let value = null;
      if (!wanted(bytes[reader.pos])) reader.skip();
      else if (key === "rid") value = reader.value(0);
      else value = stepOverStr(reader, limits);
      if (found.has(key)) repeated.add(key);
      found.set(key, value);
    }
  } catch (error) {
    if (!(error instanceof CodecError)) throw error;
    // The walk ends at the first entry it cannot read; what was read before stands.
  }
  const result = {};
  for (const key of ["rid", "t"]) {
    if (found.has(key) && !repeated.has(key)) result[key] = found.get(key);
  }
  return result;
}

// --- encoding -------------------------------------------------------------------------------

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  room(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  byte(b) {
    this.room(1);
    this.buf[this.pos++] = b;
  }
  u16(v) {
    this.room(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }
  u32(v) {
    this.room(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }

  float(v) {
    this.room(9);
    this.buf[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  int(v) {
    if (v >= 0) {
      if (v <= 0x7f) this.byte(v);
      else if (v <= 0xff) { this.byte(0xcc); this.byte(v); }
      else if (v <= 0xffff) { this.byte(0xcd); this.u16(v); }
      else if (v <= 0xffffffff) { this.byte(0xce); this.u32(v); }
      else {
        this.byte(0xcf);
        this.room(8);
        this.view.setBigUint64(this.pos, BigInt(v));
        this.pos += 8;
      }
    } else if (v >= -32) this.byte(v + 0x100);
    else if (v >= -0x80) { this.byte(0xd0); this.byte(v + 0x100); }
    else if (v >= -0x8000) { this.byte(0xd1); this.u16(v + 0x10000); }
    else if (v >= -0x80000000) { this.byte(0xd2); this.u32(v + 0x100000000); }
    else {
      this.byte(0xd3);
      this.room(8);
      this.view.setBigInt64(this.pos, BigInt(v));
      this.pos += 8;
    }
  }

  str(s) {
    const data = utf8Encoder.encode(s);
    const n = data.length;
    if (n <= 31) this.byte(0xa0 | n);
    else if (n <= 0xff) { this.byte(0xd9); this.byte(n); }
    else if (n <= 0xffff) { this.byte(0xda); this.u16(n); }
    else { this.byte(0xdb); this.u32(n); }
    this.room(n);
    this.buf.set(data, this.pos);
    this.pos += n;
  }

  header(n, fix, b16, b32) {
    if (n <= 15) this.byte(fix | n);
    else if (n <= 0xffff) { this.byte(b16); this.u16(n); }
    else { this.byte(b32); this.u32(n); }
  }

  value(v, depth) {
    if (depth > HARD_DEPTH) throw new CodecError("limit_exceeded", "nested too deeply");
    if (v === null || v === undefined) this.byte(0xc0);
    else if (v === true) this.byte(0xc3);
    else if (v === false) this.byte(0xc2);
    else if (v instanceof Float64) this.float(v.value);
    else if (typeof v === "number") {
      if (Number.isSafeInteger(v)) this.int(v);
      else this.float(v);
    } else if (typeof v === "bigint") {
      // Only the decoder makes bigints (integers past 2^53-1), and pubquiz.v1 has none.
      throw new CodecError("invalid_message", "integer out of the safe range");
    } else if (typeof v === "string") this.str(v);
    else if (Array.isArray(v)) {
      this.header(v.length, 0x90, 0xdc, 0xdd);
      for (const item of v) this.value(item, depth + 1);
    } else if (v instanceof Map) {
      this.header(v.size, 0x80, 0xde, 0xdf);
      for (const [key, item] of v) {
        this.str(String(key));
        this.value(item, depth + 1);
      }
    } else if (typeof v === "object") {
      const keys = Object.keys(v);
      this.header(keys.length, 0x80, 0xde, 0xdf);
      for (const key of keys) {
        this.str(key);
        this.value(v[key], depth + 1);
      }
    } else {
      throw new CodecError("invalid_message", `cannot encode a ${typeof v}`);
    }
  }
}

/** Encode one value (see the module rules for the canonical form); returns a Uint8Array. */
export function pack(value) {
  const writer = new Writer();
  writer.value(value, 0);
  return writer.buf.slice(0, writer.pos);
}
