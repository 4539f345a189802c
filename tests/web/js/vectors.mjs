// Load protocol/vectors/vectors.json keeping what JSON.parse loses: whether a number was written
// as a float (SPEC section 14: a number with a fraction or an exponent is a msgpack float64).
// A small JSON reader of our own (test code): objects become Maps, floats Float64.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { Float64 } from "../../../pubquiz_engine/web/static/protocol.js";

export const VECTORS_PATH = fileURLToPath(
  new URL("../../../protocol/vectors/vectors.json", import.meta.url));

export function parseJson(text) {
  let i = 0;
  const ws = () => { while (" \t\r\n".includes(text[i]) && i < text.length) i++; };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const out = new Map();
      ws();
      if (text[i] === "}") { i++; return out; }
      for (;;) {
        ws();
        const key = value();
        ws();
        if (text[i++] !== ":") throw new Error(`expected : at ${i}`);
        out.set(key, value());
        ws();
        const sep = text[i++];
        if (sep === "}") return out;
        if (sep !== ",") throw new Error(`expected , or } at ${i}`);
      }
    }
    if (c === "[") {
      i++;
      const out = [];
      ws();
      if (text[i] === "]") { i++; return out; }
      for (;;) {
        out.push(value());
        ws();
        const sep = text[i++];
        if (sep === "]") return out;
        if (sep !== ",") throw new Error(`expected , or ] at ${i}`);
      }
    }
    if (c === '"') {
      const start = i;
      i++;
      while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      i++;
      return JSON.parse(text.slice(start, i));
    }
    const match = /^-?\d+(\.\d+)?([eE][+-]?\d+)?|^true|^false|^null/.exec(text.slice(i, i + 64));
    if (!match) throw new Error(`unexpected ${c} at ${i}`);
    i += match[0].length;
    if (match[1] !== undefined || match[2] !== undefined) return new Float64(Number(match[0]));
    return JSON.parse(match[0]);
  };
  const out = value();
  ws();
  if (i !== text.length) throw new Error("trailing text");
  return out;
}

export function loadVectors() {
  return parseJson(readFileSync(VECTORS_PATH, "utf-8"));
}

/** A vector's frame bytes (`hex`, or `hex_chunks` of [hex, times]). */
export function frameBytes(vector) {
  let hex = vector.get("hex");
  if (hex === undefined) {
    hex = vector.get("hex_chunks").map(([part, times]) => part.repeat(times)).join("");
  }
  return Uint8Array.from(Buffer.from(hex, "hex"));
}

export const toHex = (bytes) => Buffer.from(bytes).toString("hex");

/** A comparable rendering: maps and objects with sorted keys, floats tagged. */
export function canon(value) {
  if (value instanceof Float64) return { $float: value.value };
  if (Array.isArray(value)) return value.map(canon);
  if (value instanceof Map || (value !== null && typeof value === "object")) {
    const items = value instanceof Map ? [...value.entries()] : Object.entries(value);
    items.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return items.map(([k, v]) => [k, canon(v)]);
  }
  return value;
}

/** The vector's `message` as encodeMessage takes it: a plain top-level object. */
export function messageObject(map) {
  return Object.fromEntries(map.entries());
}
