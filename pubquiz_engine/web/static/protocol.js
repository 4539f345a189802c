// pubquiz.v1 messages for the browser: the schema as data, canonical encoding, checked decoding.
//
// Rules this module keeps:
// 1. The schema below is the same table as pubquiz_engine/protocol/messages.py (wire names,
//    field order, types, ranges, lengths, nullability). tests/web/ compares the two, so a change
//    on one side without the other fails the suite.
// 2. `decodeFrame` refuses exactly what the server's codec refuses, with the same stable error
//    code and the same `rid` (checked against every vector in protocol/vectors/vectors.json):
//    frame size, msgpack errors (msgpack.js), envelope (`t`, unknown type, repeated keys,
//    unknown/missing fields), the depth limit on free-form maps, then each field in order.
// 3. `encodeMessage` checks a message like the server's constructors do, then writes it in the
//    canonical form: "t" first, every field in schema order, nil fields written out.
// 4. Numbers: a JavaScript integer is a msgpack integer and any other number a float64; wrap a
//    whole number in `Float64` to send it as a float. Decoded floats come back as plain numbers
//    (or as `Float64` with `{keepFloats: true}`, for tests that must tell 2.0 from 2).
// 5. Pure: no DOM, no network. client.js does the WebSocket part.

import {
  CLIENT_LIMITS,
  CodecError,
  Float64,
  SERVER_LIMITS,
  pack,
  readEnvelope,
  unpack,
} from "./msgpack.js";

export { CLIENT_LIMITS, CodecError, Float64, SERVER_LIMITS };

export const CLIENT_TO_SERVER = "client_to_server";
export const SERVER_TO_CLIENT = "server_to_client";

// --- the schema -------------------------------------------------------------------------------

const U31_MAX = 2147483647;
const SAFE_MAX = 9007199254740991;
/** Choice indices are 0..63, and a choice list holds at most 64 of them. */
export const MAX_CHOICES = 64;

const int = (lo, hi) => ({ kind: "int", lo, hi });
const str = (max) => ({ kind: "str", max });
const oneOf = (...values) => ({ kind: "enum", values });
const ints = (maxLen, lo, hi) => ({ kind: "ints", maxLen, lo, hi });
const strs = (maxLen, max) => ({ kind: "strs", maxLen, max });
const answer = (acceptedTexts) => ({ kind: "answer", acceptedTexts });
const BOOL = { kind: "bool" };
const MAP = { kind: "map" };
const LEADERBOARD = { kind: "leaderboard" };
const opt = (spec) => ({ ...spec, nullable: true });

const RID = int(0, U31_MAX);
const U31 = int(0, U31_MAX);
const SEQ = int(1, SAFE_MAX);
const SEQ0 = int(0, SAFE_MAX);
const MS = int(0, SAFE_MAX);
const DURATION = int(0, U31_MAX);
const SCORE = int(-SAFE_MAX, SAFE_MAX);
const CODE = str(16);
const TOKEN = str(128);
const NAME = str(64);
const REASON = str(256);
const TITLE = str(256);
const TEXT = str(4096);
const DELTA = int(-1000000, 1000000);
const KINDS = oneOf("single", "multiple", "truefalse", "text", "numeric", "ordering");

/** Client -> server messages: wire name -> [[field, spec], ...] in canonical order. */
const CLIENT = {
  join: [["rid", RID], ["code", CODE], ["name", NAME], ["team", opt(NAME)]],
  resume: [["rid", RID], ["token", TOKEN], ["last_seq", SEQ0]],
  host: [["rid", RID], ["code", CODE], ["token", TOKEN], ["last_seq", opt(SEQ0)]],
  watch: [["rid", RID], ["code", CODE], ["last_seq", opt(SEQ0)]],
  create_session: [["rid", RID], ["key", str(256)], ["quiz_path", opt(str(1024))],
    ["quiz", opt(MAP)], ["mode", oneOf("solo", "team")], ["options", opt(MAP)]],
  answer: [["rid", RID], ["q", U31], ["value", answer(false)]],
  joker: [["rid", RID], ["round", U31]],
  wager: [["rid", RID], ["round", U31], ["amount", U31]],
  leave: [["rid", RID]],
  start: [["rid", RID]],
  next: [["rid", RID]],
  close: [["rid", RID]],
  extend: [["rid", RID], ["seconds", int(1, 600)]],
  pause: [["rid", RID]],
  unpause: [["rid", RID]],
  reveal: [["rid", RID]],
  skip: [["rid", RID]],
  show_leaderboard: [["rid", RID], ["round", opt(U31)]],
  mark: [["rid", RID], ["q", U31], ["participant", U31], ["correct", BOOL]],
  adjust: [["rid", RID], ["participant", U31], ["delta", DELTA], ["reason", REASON]],
  kick: [["rid", RID], ["participant", U31]],
  end: [["rid", RID]],
  generate: [["rid", RID], ["key", str(256)], ["code", CODE], ["topic", str(200)],
    ["count", int(1, 50)], ["kind", oneOf("choice", "text", "numeric")],
    ["difficulty", opt(NAME)], ["language", opt(NAME)], ["round_title", opt(TITLE)]],
  ping: [["rid", RID]],
};

/** Server -> client messages; events (broadcasts) are those whose first field is `seq`. */
const SERVER = {
  welcome: [["rid", RID], ["role", oneOf("player", "host", "display")], ["code", CODE],
    ["epoch", SEQ0], ["seq", SEQ0], ["participant", opt(U31)], ["name", opt(NAME)],
    ["team", opt(NAME)], ["token", opt(TOKEN)], ["replay", oneOf("events", "state")]],
  session_created: [["rid", RID], ["code", CODE], ["host_token", TOKEN]],
  ok: [["rid", RID]],
  pong: [["rid", RID]],
  generated: [["rid", RID], ["round", U31], ["added", U31], ["dropped", U31],
    ["notes", strs(MAX_CHOICES, 1024)]],
  answer_ack: [["rid", RID], ["q", U31]],
  error: [["rid", opt(RID)], ["code", str(64)], ["message", str(1024)], ["retryable", BOOL],
    ["retry_after_ms", opt(U31)]],
  redirect: [["rid", opt(RID)], ["code", CODE], ["url", str(2048)]],
  you: [["rank", opt(int(1, U31_MAX))], ["score", SCORE], ["round_score", opt(SCORE)]],
  result: [["q", U31], ["correct", BOOL], ["points", SCORE], ["score", SCORE]],
  state: [["seq", SEQ0], ["state", MAP]],
  player_joined: [["seq", SEQ], ["participant", U31], ["name", NAME], ["team", opt(NAME)]],
  player_left: [["seq", SEQ], ["participant", U31]],
  player_kicked: [["seq", SEQ], ["participant", U31]],
  question: [["seq", SEQ], ["q", U31], ["round", U31], ["number", int(1, U31_MAX)],
    ["kind", KINDS], ["prompt", TEXT], ["choices", opt(strs(MAX_CHOICES, 1024))],
    ["media", opt(str(2048))], ["points", SCORE], ["time_limit_ms", DURATION],
    ["deadline_ms", MS], ["speed_bonus", opt(U31)]],
  slide: [["seq", SEQ], ["title", TITLE], ["body", TEXT]],
  answer_count: [["seq", SEQ], ["q", U31], ["answered", U31], ["total", U31]],
  answered: [["seq", SEQ], ["q", U31], ["participant", U31]],
  closed: [["seq", SEQ], ["q", U31]],
  paused: [["seq", SEQ], ["remaining_ms", DURATION]],
  unpaused: [["seq", SEQ], ["deadline_ms", MS]],
  extended: [["seq", SEQ], ["q", U31], ["deadline_ms", MS]],
  reveal: [["seq", SEQ], ["q", U31], ["correct", answer(true)],
    ["distribution", opt(ints(MAX_CHOICES, 0, U31_MAX))], ["explanation", opt(TEXT)]],
  leaderboard: [["seq", SEQ], ["round", opt(U31)], ["teams", BOOL], ["top", LEADERBOARD]],
  round_summary: [["seq", SEQ], ["round", U31], ["title", TITLE]],
  score_adjusted: [["seq", SEQ], ["participant", U31], ["delta", DELTA], ["reason", REASON]],
  ended: [["seq", SEQ], ["reason", REASON]],
};

const REGISTRY = { [CLIENT_TO_SERVER]: CLIENT, [SERVER_TO_CLIENT]: SERVER };

/** Rules across fields (messages.py's __attrs_post_init__): exactly one of these is given. */
const EXACTLY_ONE = { create_session: ["quiz_path", "quiz"] };

function checkWhole(type, message) {
  const group = EXACTLY_ONE[type];
  if (group && group.filter((name) => message[name] !== null).length !== 1) {
    fail("invalid_message", `${type}: give exactly one of ${group.join(", ")}`);
  }
}

/** The schema as plain data, for the cross-check against the Python message classes. */
export function describeSchema() {
  const out = {};
  for (const [direction, table] of Object.entries(REGISTRY)) {
    out[direction] = {};
    for (const [type, fields] of Object.entries(table)) {
      out[direction][type] = fields.map(([name, spec]) => [name, { nullable: false, ...spec }]);
    }
  }
  return out;
}

// --- checking values --------------------------------------------------------------------------

const MAX_ANSWER_CHARS = 1024;
const MAX_LEADERBOARD = 1000;
const MAX_PLAIN_DEPTH = 64;

const isMap = (v) =>
  v instanceof Map ||
  (typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Float64) &&
    !(v instanceof Uint8Array) && [Object.prototype, null].includes(Object.getPrototypeOf(v)));
const entries = (v) => (v instanceof Map ? [...v.entries()] : Object.entries(v));
const isInt = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
const isFloat = (v) => v instanceof Float64 || (typeof v === "number" && !Number.isInteger(v));

function fail(code, message) {
  throw new CodecError(code, message);
}

function wrongType(name, value, expected) {
  // Binary values can only come from a msgpack bin: pubquiz.v1 has none (unsupported_type).
  if (value instanceof Uint8Array) fail("unsupported_type", `${name}: binary values are not allowed`);
  fail("invalid_message", `${name}: expected ${expected}`);
}

/** Whether `s` holds a lone surrogate (it could not be encoded as UTF-8). */
function hasLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return true;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

/** Length in Unicode code points (what the protocol's "str <= n" counts). */
export function codePoints(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function checkStr(name, value, max) {
  if (typeof value !== "string") wrongType(name, value, "str");
  if (value.length > max && codePoints(value) > max) {
    fail("limit_exceeded", `${name}: longer than ${max} characters`);
  }
  if (hasLoneSurrogate(value)) fail("invalid_message", `${name}: not valid Unicode`);
  return value;
}

function checkInt(name, value, lo, hi) {
  if (!isInt(value)) wrongType(name, value, "int");
  if (typeof value === "bigint" || value < lo || value > hi) {
    fail("invalid_message", `${name}: not in ${lo}..${hi}`);
  }
  return value;
}

function checkNumber(name, value) {
  if (isInt(value)) {
    if (typeof value === "bigint" || Math.abs(value) > SAFE_MAX) {
      fail("invalid_message", `${name}: integer out of the safe range`);
    }
    return value;
  }
  if (isFloat(value)) {
    if (!Number.isFinite(Number(value))) fail("invalid_message", `${name}: must be a finite number`);
    return value;
  }
  return wrongType(name, value, "number");
}

function checkIntList(name, value, maxLen, lo, hi) {
  if (!Array.isArray(value)) wrongType(name, value, "array");
  if (value.length > maxLen) fail("limit_exceeded", `${name}: more than ${maxLen} items`);
  for (const item of value) {
    if (!isInt(item)) wrongType(`${name}[]`, item, "int");
    if (typeof item === "bigint" || item < lo || item > hi) {
      fail("invalid_message", `${name}[]: not in ${lo}..${hi}`);
    }
  }
  return value;
}

function checkStrList(name, value, maxLen, max) {
  if (!Array.isArray(value)) wrongType(name, value, "array");
  if (value.length > maxLen) fail("limit_exceeded", `${name}: more than ${maxLen} items`);
  for (const item of value) checkStr(`${name}[]`, item, max);
  return value;
}

function checkAnswer(name, value, acceptedTexts) {
  if (typeof value === "boolean") return value;
  if (isInt(value) || isFloat(value)) return checkNumber(name, value);
  if (typeof value === "string") return checkStr(name, value, MAX_ANSWER_CHARS);
  if (Array.isArray(value)) {
    // The first item decides which array shape is meant; [] is an empty choice list.
    if (acceptedTexts && value.length && typeof value[0] === "string") {
      return checkStrList(name, value, MAX_CHOICES, MAX_ANSWER_CHARS);
    }
    return checkIntList(name, value, MAX_CHOICES, 0, MAX_CHOICES - 1);
  }
  return wrongType(name, value, "answer value");
}

function checkLeaderboard(name, value) {
  if (!Array.isArray(value)) wrongType(name, value, "array");
  if (value.length > MAX_LEADERBOARD) {
    fail("limit_exceeded", `${name}: more than ${MAX_LEADERBOARD} rows`);
  }
  for (const row of value) {
    if (!Array.isArray(row) || row.length !== 4) {
      fail("invalid_message", `${name}[]: expected [rank, id, name, score]`);
    }
    checkInt(`${name}[].rank`, row[0], 1, U31_MAX);
    checkInt(`${name}[].id`, row[1], 0, U31_MAX);
    checkStr(`${name}[].name`, row[2], 64);
    checkInt(`${name}[].score`, row[3], -SAFE_MAX, SAFE_MAX);
  }
  return value;
}

function checkPlain(name, value, depth) {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (isInt(value) || isFloat(value)) return checkNumber(name, value);
  if (depth <= 0) fail("limit_exceeded", `${name}: nested too deeply`);
  if (isMap(value)) {
    for (const [key, item] of entries(value)) {
      if (typeof key !== "string") wrongType(`${name} key`, key, "str");
      checkPlain(`${name}.${key}`, item, depth - 1);
    }
    return value;
  }
  if (Array.isArray(value)) {
    for (const item of value) checkPlain(`${name}[]`, item, depth - 1);
    return value;
  }
  return wrongType(name, value, "plain data");
}

function checkField(name, spec, value) {
  if (spec.nullable && (value === null || value === undefined)) return null;
  switch (spec.kind) {
    case "int": return checkInt(name, value, spec.lo, spec.hi);
    case "str": return checkStr(name, value, spec.max);
    case "bool":
      if (typeof value !== "boolean") wrongType(name, value, "bool");
      return value;
    case "enum":
      if (typeof value !== "string") wrongType(name, value, "str");
      if (!spec.values.includes(value)) {
        fail("invalid_message", `${name}: must be one of ${spec.values.join(", ")}`);
      }
      return value;
    case "ints": return checkIntList(name, value, spec.maxLen, spec.lo, spec.hi);
    case "strs": return checkStrList(name, value, spec.maxLen, spec.max);
    case "answer": return checkAnswer(name, value, spec.acceptedTexts);
    case "leaderboard": return checkLeaderboard(name, value);
    case "map":
      if (!isMap(value)) wrongType(name, value, "map");
      return checkPlain(name, value, MAX_PLAIN_DEPTH);
    default:
      throw new Error(`unknown spec kind ${spec.kind}`);
  }
}

// --- plain output -----------------------------------------------------------------------------

/** Decoded data as the pages use it: objects without a prototype, floats as numbers. */
function toPlain(value, keepFloats) {
  if (value instanceof Float64) return keepFloats ? value : value.value;
  if (Array.isArray(value)) return value.map((item) => toPlain(item, keepFloats));
  if (value instanceof Map) {
    const out = Object.create(null);
    for (const [key, item] of value) out[key] = toPlain(item, keepFloats);
    return out;
  }
  return value;
}

// --- encoding and decoding --------------------------------------------------------------------

/**
 * Check `message` ({t, ...fields}) against the schema of `direction` and encode it canonically.
 * Throws `CodecError` (with the code the server would answer) for a message it would refuse.
 */
export function encodeMessage(message, direction = CLIENT_TO_SERVER) {
  const fields = REGISTRY[direction][message.t];
  if (fields === undefined) fail("unknown_message", `unknown message type ${message.t}`);
  const known = new Set(["t", ...fields.map(([name]) => name)]);
  for (const key of Object.keys(message)) {
    if (!known.has(key)) fail("invalid_message", `${message.t}: unexpected field ${key}`);
  }
  const wire = new Map([["t", message.t]]);
  for (const [name, spec] of fields) {
    const value = message[name];
    if (value === undefined && !spec.nullable) {
      fail("invalid_message", `${message.t}: missing field ${name}`);
    }
    wire.set(name, checkField(name, spec, value));
  }
  checkWhole(message.t, Object.fromEntries(wire));
  return pack(wire);
}

const validRid = (v) => (typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= U31_MAX
  ? v : null);

/** Whether `value` nests maps/arrays more than `depthLeft` levels deep. */
function tooDeep(value, depthLeft) {
  if (value instanceof Map || Array.isArray(value)) {
    if (depthLeft <= 0) return true;
    const items = value instanceof Map ? value.values() : value;
    for (const item of items) if (tooDeep(item, depthLeft - 1)) return true;
  }
  return false;
}

function peekType(bytes, limits) {
  try {
    const { value } = unpack(bytes, { ...limits, maxFrameBytes: Infinity });
    return value instanceof Map ? value.get("t") : null;
  } catch {
    return null;
  }
}

/**
 * `unpack`, and when msgpack refuses the frame part-way (not for bytes after a complete value),
 * the same error with the rid and "t" a bounded walk of the top-level map can read (SPEC 12).
 */
function unpackFrame(bytes, limits) {
  try {
    return unpack(bytes, limits);
  } catch (error) {
    if (!(error instanceof CodecError) || error.valueComplete) throw error;
    const { rid, t } = readEnvelope(bytes, limits);
    throw new CodecError(error.code, error.message, validRid(rid),
      typeof t === "string" ? t : null);
  }
}

/**
 * Decode one frame that travelled in `direction` into a message object ({t, ...fields}, every
 * field present, nil as null). Throws `CodecError` with the server codec's code and rid.
 * `limits` defaults to SERVER_LIMITS for server frames and CLIENT_LIMITS for client frames.
 */
export function decodeFrame(bytes, direction = SERVER_TO_CLIENT, options = {}) {
  const clientFrame = direction === CLIENT_TO_SERVER;
  const limits = options.limits ?? (clientFrame ? CLIENT_LIMITS : SERVER_LIMITS);
  const size = bytes.length;
  if (size > limits.maxFrameBytes && (!clientFrame || size > limits.maxOperatorFrameBytes ||
      peekType(bytes, limits) !== "create_session")) {
    fail("frame_too_large", `frame of ${size} bytes is over the limit`);
  }
  if (!size) fail("malformed_frame", "empty frame");
  const { value: frame, topDeclared, topDistinct } = unpackFrame(bytes, limits);
  if (!(frame instanceof Map)) fail("invalid_message", "a frame must be a map");
  const type = frame.get("t");
  const rid = validRid(frame.get("rid"));
  const refuse = (code, message) => {
    throw new CodecError(code, message, rid, typeof type === "string" ? type : null);
  };
  if (typeof type !== "string") refuse("invalid_message", 'missing "t" (message type)');
  const fields = Object.hasOwn(REGISTRY[direction], type) ? REGISTRY[direction][type] : null;
  if (fields === null) refuse("unknown_message", `unknown message type ${type.slice(0, 64)}`);
  if (topDeclared !== topDistinct) refuse("invalid_message", "duplicate keys");
  const specs = new Map(fields);
  const unknown = [...frame.keys()].filter((key) => key !== "t" && !specs.has(key));
  if (unknown.some((key) => key instanceof Uint8Array)) {
    refuse("unsupported_type", "binary map keys are not allowed");
  }
  if (unknown.length) refuse("invalid_message", `${type}: unexpected field(s) ${unknown.join(", ")}`);
  for (const [name, spec] of fields) {
    if (!spec.nullable && !frame.has(name)) refuse("invalid_message", `${type}: missing ${name}`);
  }
  for (const [name, spec] of fields) {
    if (spec.kind === "map" && tooDeep(frame.get(name), limits.maxDepth - 1)) {
      refuse("limit_exceeded", `${type}: nested more than ${limits.maxDepth} levels`);
    }
  }
  const message = { t: type };
  for (const [name, spec] of fields) {
    try {
      message[name] = toPlain(checkField(name, spec, frame.get(name)), options.keepFloats);
    } catch (error) {
      if (error instanceof CodecError) refuse(error.code, error.message);
      throw error;
    }
  }
  try {
    checkWhole(type, message);
  } catch (error) {
    refuse(error.code, error.message);
  }
  return message;
}

/** Whether a server message is a session event (carries `seq`). */
export function isEvent(message) {
  const fields = SERVER[message.t];
  return fields !== undefined && fields[0][0] === "seq";
}
