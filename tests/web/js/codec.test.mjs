// The pages' codec against every golden vector (protocol/vectors/vectors.json, SPEC section 14):
// valid frames both ways, decode-only frames, and each invalid frame's error code and rid.
// Run with `node --test tests/web/js/`; tests/web/test_web_js.py runs it under pytest.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
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
