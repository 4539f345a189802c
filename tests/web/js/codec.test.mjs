// The pages' codec against every golden vector (protocol/vectors/vectors.json, SPEC section 14):
// valid frames both ways, decode-only frames, and each invalid frame's error code and rid.
// Run with `node --test tests/web/js/`; tests/web/test_web_js.py runs it under pytest.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLIENT_LIMITS,
  CodecError,
  decodeFrame,
  encodeMessage,
  Float64,
} from "../../../pubquiz_engine/web/static/protocol.js";
import { pack } from "../../../pubquiz_engine/web/static/msgpack.js";
import { canon, frameBytes, loadVectors, messageObject, toHex } from "./vectors.mjs";

const vectors = loadVectors();

test("the vector file has every section", () => {
  for (const section of ["valid", "decode_only", "invalid"]) {
    assert.ok(vectors.get(section).length > 0, section);
  }
});

for (const vector of vectors.get("valid")) {
  const name = vector.get("name");
  const direction = vector.get("direction");
  test(`valid ${name}: encode gives the hex, decode gives the message`, () => {
    const message = messageObject(vector.get("message"));
    assert.equal(toHex(encodeMessage(message, direction)), vector.get("hex"));
    const decoded = decodeFrame(frameBytes(vector), direction, { keepFloats: true });
    assert.deepEqual(canon(decoded), canon(vector.get("message")));
  });
}

for (const vector of vectors.get("decode_only")) {
  const name = vector.get("name");
  const direction = vector.get("direction");
  test(`decode_only ${name}: decodes, and re-encodes canonically`, () => {
    const decoded = decodeFrame(frameBytes(vector), direction, { keepFloats: true });
    assert.deepEqual(canon(decoded), canon(vector.get("message")));
    assert.equal(toHex(encodeMessage(decoded, direction)), vector.get("canonical_hex"));
  });
}

for (const vector of vectors.get("invalid")) {
  const name = vector.get("name");
  test(`invalid ${name}: refused with ${vector.get("error")}`, () => {
    assert.throws(
      () => decodeFrame(frameBytes(vector), vector.get("direction")),
      (error) => {
        assert.ok(error instanceof CodecError, `not a CodecError: ${error}`);
        assert.equal(error.code, vector.get("error"));
        assert.equal(error.rid, vector.get("rid"));
        return true;
      },
    );
  });
}

test("decoded floats are plain numbers unless asked to keep them", () => {
  const frame = encodeMessage({ t: "answer", rid: 1, q: 0, value: new Float64(2) });
  assert.equal(toHex(frame).slice(-18), "cb4000000000000000");
  const plain = decodeFrame(frame, "client_to_server");
  assert.equal(plain.value, 2);
  assert.ok(decodeFrame(frame, "client_to_server", { keepFloats: true }).value instanceof Float64);
});

test("encodeMessage refuses what the server would refuse", () => {
  const code = (message) => {
    try {
      encodeMessage(message);
    } catch (error) {
      return error.code;
    }
    return null;
  };
  assert.equal(code({ t: "join", rid: 1, code: "K7QX", name: "x".repeat(65) }), "limit_exceeded");
  assert.equal(code({ t: "join", rid: 1, code: "K7QX", name: "\ud800" }), "invalid_message");
  assert.equal(code({ t: "answer", rid: 1, q: 0, value: NaN }), "invalid_message");
  assert.equal(code({ t: "answer", rid: 1, q: 0, value: [0, "a"] }), "invalid_message");
  assert.equal(code({ t: "extend", rid: 1, seconds: 601 }), "invalid_message");
  assert.equal(code({ t: "launch", rid: 1 }), "unknown_message");
  assert.equal(code({ t: "ping", rid: 1, extra: 2 }), "invalid_message");
  assert.equal(code({ t: "kick", rid: 1, participant: true }), "invalid_message");
  // A code point beyond the BMP counts once, as in Python.
  assert.equal(code({ t: "join", rid: 1, code: "K7QX", name: "🦉".repeat(64) }), null);
});

test("integers use their shortest form and keep their sign", () => {
  const cases = [[0, "00"], [127, "7f"], [128, "cc80"], [65535, "cdffff"], [65536, "ce00010000"],
    [2 ** 32, "cf0000000100000000"], [-1, "ff"], [-32, "e0"], [-33, "d0df"],
    [-129, "d1ff7f"], [-32769, "d2ffff7fff"], [-(2 ** 31) - 1, "d3ffffffff7fffffff"],
    [2 ** 53 - 1, "cf001fffffffffffff"]];
  for (const [value, hex] of cases) assert.equal(toHex(pack(value)), hex, String(value));
});

test("decoding random bytes fails only with CodecError", () => {
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let n = 0; n < 3000; n++) {
    const bytes = Uint8Array.from({ length: 1 + Math.floor(random() * 40) },
      () => Math.floor(random() * 256));
    if (random() < 0.5) bytes[0] = 0x80 | (bytes[0] & 0x0f); // start as a map more often
    try {
      decodeFrame(bytes, "server_to_client");
    } catch (error) {
      assert.ok(error instanceof CodecError, `${toHex(bytes)}: ${error}`);
    }
  }
});

// --- the rid of a frame msgpack refuses part-way (SPEC section 12, codec._recover_envelope) ---

const bytesOf = (...parts) => {
  const chunks = parts.map((part) => (part instanceof Uint8Array ? part : Uint8Array.from(part)));
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
};
/** A top-level map from already-packed values, in this order (fixmap header). */
const frameOf = (entries) =>
  bytesOf([0x80 | entries.length], ...entries.flatMap(([key, value]) => [pack(key), value]));
const nested = (levels, inner) => bytesOf(new Uint8Array(levels).fill(0x91), inner);

function refusal(bytes, direction = "client_to_server", options = {}) {
  try {
    decodeFrame(bytes, direction, options);
  } catch (error) {
    assert.ok(error instanceof CodecError, `not a CodecError: ${error}`);
    return { code: error.code, rid: error.rid, type: error.messageType };
  }
  return assert.fail("the frame was accepted");
}

test("a join with a 10 KB name gets its rid back, before or after the name", () => {
  const name = pack("x".repeat(10000));
  const before = frameOf([["t", pack("join")], ["rid", pack(41)], ["code", pack("K7QX")],
    ["name", name], ["team", pack(null)]]);
  assert.deepEqual(refusal(before), { code: "limit_exceeded", rid: 41, type: "join" });
  const after = frameOf([["code", pack("K7QX")], ["name", pack("é".repeat(6000))],
    ["team", pack(null)], ["t", pack("join")], ["rid", pack(42)]]);
  assert.deepEqual(refusal(after), { code: "limit_exceeded", rid: 42, type: "join" });
});

// [name, packed bad value, code, whether the walk steps over it to a rid after it]
const BAD_FIELDS = [
  ["long string", pack("x".repeat(5000)), "limit_exceeded", true],
  ["big array", pack(Array.from({ length: 1001 }, (_, i) => i)), "limit_exceeded", true],
  ["big map", pack(new Map(Array.from({ length: 1001 }, (_, i) => [`k${i}`, i]))),
    "limit_exceeded", true],
  ["bin", [0xc4, 0x02, 0x68, 0x69], "unsupported_type", true],
  ["ext", [0xd4, 0x05, 0x01], "unsupported_type", true],
  ["ext8", [0xc7, 0x02, 0x05, 0x61, 0x62], "unsupported_type", true],
  ["timestamp", [0xd6, 0xff, 0, 0, 0, 1], "unsupported_type", true],
  ["invalid utf-8", [0xa2, 0xff, 0xfe], "malformed_frame", true],
  ["non-string key in a nested map", [0x81, 0x01, 0x02], "invalid_message", true],
  // msgpack's skip has a 1024-level stack, counted from the skipped value itself.
  ["1024 levels", nested(1024, [0xc0]), "limit_exceeded", true],
  ["1024 levels, empty innermost", nested(1023, [0x90]), "limit_exceeded", true],
  ["1025 levels", nested(1024, [0x90]), "limit_exceeded", false],
  ["2000 levels", nested(2000, [0xc0]), "limit_exceeded", false],
  ["reserved byte", [0xc1], "malformed_frame", false],
  ["reserved byte inside", [0x92, 0x01, 0xc1], "malformed_frame", false],
  // A declared length the frame does not hold swallows the rest of the frame.
  ["huge string, short body", [0xdb, 0xff, 0xff, 0xff, 0xff, 0x78], "malformed_frame", false],
  // ... whatever the type: not held is malformed_frame before any limit (SPEC 12).
  ["huge map, short body", [0xdf, 0xff, 0xff, 0xff, 0xff], "malformed_frame", false],
  ["huge array, short body", [0xdd, 0xff, 0xff, 0xff, 0xff], "malformed_frame", false],
];

for (const [name, bad, code, skippable] of BAD_FIELDS) {
  for (const ridFirst of [true, false]) {
    test(`rid ${ridFirst ? "before" : "after"} a field with ${name}`, () => {
      const rid = ["rid", pack(77)];
      const field = ["quiz", bytesOf(bad)];
      const frame = frameOf([["t", pack("create_session")],
        ...(ridFirst ? [rid, field] : [field, rid])]);
      const expected = ridFirst || skippable ? 77 : null;
      assert.deepEqual(refusal(frame), { code, rid: expected, type: "create_session" });
    });
  }
}

test("a recovered rid must be a lone int 0..2^31-1 in reach of the walk", () => {
  const long = pack("x".repeat(5000));
  const ridOf = (entries) => refusal(frameOf(entries)).rid;
  for (const value of [pack(-1), pack(2 ** 31), pack(true), pack("7"), pack([7]),
    pack(new Float64(1)), bytesOf([0xd4, 0x05, 0x01]), long,
    bytesOf([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]) {
    assert.equal(ridOf([["t", pack("ping")], ["rid", value], ["x", long]]), null);
  }
  for (const value of [[0xce, 0x7f, 0xff, 0xff, 0xff], [0xcf, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff],
    [0xd3, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]]) {
    assert.equal(ridOf([["t", pack("ping")], ["rid", bytesOf(value)], ["x", long]]), 2 ** 31 - 1);
  }
  // A repeated key is ambiguous, even when its other value is no int.
  assert.deepEqual(refusal(frameOf([["rid", pack(1)], ["x", long], ["rid", pack(2)],
    ["t", pack("ping")]])), { code: "limit_exceeded", rid: null, type: "ping" });
  assert.equal(ridOf([["rid", pack(1)], ["x", long], ["rid", pack("a")]]), null);
  assert.deepEqual(refusal(frameOf([["rid", pack(1)], ["t", pack("a")], ["x", long],
    ["t", pack("b")]])), { code: "limit_exceeded", rid: 1, type: null });
  // Cut before the rid, or inside its value: nothing.
  assert.equal(ridOf([["t", pack("ping")], ["rid", bytesOf([0xce, 0x00, 0x01])]]), null);
  // A "t" or a key over the string limit is stepped over, unread: the walk goes on (here to a
  // repeated rid, which is nobody's).
  assert.deepEqual(refusal(frameOf([["rid", pack(5)], ["t", long], ["rid", pack(6)]])),
    { code: "limit_exceeded", rid: null, type: null });
  assert.equal(ridOf([["k".repeat(4097), pack(1)], ["rid", pack(5)]]), 5);
  assert.equal(ridOf([["k".repeat(4096), long], ["rid", pack(5)]]), 5);
});

test("the walk stops at a non-string key, and refuses big or broken framing", () => {
  const long = pack("x".repeat(5000));
  const before = bytesOf([0x83], pack("rid"), pack(3), pack(1), pack(2), pack("x"), long);
  const after = bytesOf([0x83], pack(1), pack(2), pack("x"), long, pack("rid"), pack(3));
  assert.equal(refusal(before).rid, 3);
  assert.equal(refusal(after).rid, null);
  // Bytes after a complete value: the framing is wrong, no rid.
  assert.deepEqual(refusal(bytesOf(pack({ t: "ping", rid: 1 }), [0xc0])),
    { code: "malformed_frame", rid: null, type: null });
  // A top-level map over the map limit is not walked.
  const frame = frameOf([["rid", pack(4)], ["t", pack("ping")], ["a", pack(1)], ["b", pack(2)]]);
  const limits = { ...CLIENT_LIMITS, maxMapLen: 3 };
  assert.deepEqual(refusal(frame, "client_to_server", { limits }),
    { code: "limit_exceeded", rid: null, type: null });
  // Oversized frames are refused before decoding.
  const pad = pack("x".repeat(CLIENT_LIMITS.maxFrameBytes));
  assert.equal(refusal(frameOf([["t", pack("ping")], ["rid", pack(1)], ["pad", pad]])).rid, null);
});

test("the first fault in byte order wins: a non-string key before a cut", () => {
  // {"rid": 1, "x": {1: <truncated str>}}: the key (an int) comes before the cut.
  const frame = bytesOf([0x82], pack("rid"), pack(1), pack("x"), [0x81, 0x01, 0xa5, 0x61]);
  assert.deepEqual(refusal(frame), { code: "invalid_message", rid: 1, type: null });
});
