// One pubquiz.v1 connection for a page: requests matched by rid, events in order, reconnects.
//
// Rules this module keeps (SPEC sections 5, 12 and 13):
// 1. A request gets a fresh rid (from `nextRid`, which a page may persist: a player's rids stay
//    unique across reloads because `answer` is idempotent by (participant, rid)) and resolves
//    with its reply or rejects with `{code, message, retryable}`.
// 2. Everything without a pending rid is handed to `onMessage` in arrival order, the `welcome`
//    included. `lastSeq` follows every event and `state`, so that a reconnect can resume.
// 3. Close codes decide: 4000-4099 are terminal (kicked, ended, bad credentials), 4100 means
//    another tab took over (reconnect only when the user asks), 1000 is a normal end; anything
//    else, or a network error, reconnects after 0.5 s doubling to 10 s, with jitter. A refused
//    identify (`bad_token`, `bad_code`, `session_ended`, ...) is terminal too; a retryable one
//    (`unavailable`, `busy`, ...) reconnects, never sooner than the error's `retry_after_ms`
//    (plus a random jitter of up to as much again, so that a whole room does not come back in
//    step).
// 5. Sequence numbers compare only within one epoch (SPEC 13.4): `epoch` is the last
//    welcome's, and the pages send it with `last_seq` when they identify again.
// 4. Browsers cannot see WebSocket pings, so the page pings (`ping`) every PING_INTERVAL and
//    treats a missing `pong` as a dead network: it drops the socket and reconnects.

import { CodecError, decodeFrame, encodeMessage, isEvent } from "./protocol.js";

export const SUBPROTOCOL = "pubquiz.v1";
const REPLIES = new Set(["welcome", "session_created", "ok", "pong", "answer_ack", "error",
  "redirect", "generated"]);
const PING_INTERVAL = 15000;
const PING_TIMEOUT = 10000;
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 10000;

/**
 * The engine's WebSocket URL on the origin this page came from: `/ws`, with the join code as
 * `?code=` when there is one, so that nginx sends every member of a session to the same node
 * (docs/operations.md, section 4).
 */
export function engineUrl(location = globalThis.location, code = null) {
  const base = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
  return code ? `${base}?code=${encodeURIComponent(code)}` : base;
}

/** The join code a first request names: its `code`, or a resume token's first part. */
export function routeCode(request) {
  if (request?.code) return String(request.code).toUpperCase();
  if (request?.t === "resume" && typeof request.token === "string") {
    return request.token.split(".")[0].toUpperCase() || null;
  }
  return null;
}

/** A protocol failure as the pages show it. */
export class RequestFailed extends Error {
  constructor(code, message, retryable, retryAfterMs = null) {
    super(message);
    this.code = code;
    this.retryable = retryable;
    /** The server's "not before" for a retry (SPEC 9 `error.retry_after_ms`), or null. */
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * How long to wait before retrying after `error` (rule 3): at least its `retryAfterMs` plus a
 * random jitter of up to as much again, or `fallbackMs` when the server named no time.
 */
export function retryDelay(error, fallbackMs, random = Math.random) {
  const after = error?.retryAfterMs;
  return after === null || after === undefined ? fallbackMs : after * (1 + random());
}

export class QuizConnection {
  /**
   * `identify()` returns the first request of every connection (join, resume, host, watch or
   * create_session, without rid); `onMessage(message)` gets every non-reply message;
   * `onStatus(status, detail)` gets "connecting", "online", "offline", "replaced", "ended"
   * (detail: the close code) or "refused" (detail: the error).
   */
  constructor({ identify, onMessage, onStatus = () => {}, url = null,
    nextRid = null }) {
    this.identify = identify;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    // `url`: a fixed address (tests); by default the entry point with the session's code.
    this.url = url;
    // A redirect's target serves the next connection only: every later reconnect starts at
    // the entry point again, since the node it named may be the one that went away.
    this.redirect = null;
    this.ws = null;
    this.pending = new Map();
    this.lastSeq = 0;
    this.epoch = null;
    this.stopped = false;
    this.backoff = BACKOFF_FIRST;
    this.retryAfterMs = null; // the last refused identify's retry_after_ms (rule 3)
    this.timer = null;
    this.pingTimer = null;
    let counter = 1;
    this.nextRid = nextRid ?? (() => counter++);
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Close for good (no reconnect). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000);
  }

  open() {
    clearTimeout(this.timer);
    this.onStatus("connecting");
    const target = this.redirect ?? this.url ?? engineUrl(globalThis.location,
      routeCode(this.identify()));
    this.redirect = null;
    const ws = new WebSocket(target, SUBPROTOCOL);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => this.identifyNow(ws);
    ws.onmessage = (event) => this.receive(ws, event);
    ws.onclose = (event) => this.closed(ws, event.code);
    // onerror is always followed by onclose, which decides what to do.
  }

  async identifyNow(ws) {
    try {
      const welcome = await this.request(this.identify(), { socket: ws });
      if (ws !== this.ws) return;
      if (welcome.t === "redirect") {
        // The session lives on another node: connect there and identify again (SPEC 13.8).
        this.redirect = welcome.url;
        this.backoff = BACKOFF_FIRST;
        ws.close(3000);
        return;
      }
      this.backoff = BACKOFF_FIRST;
      this.startPings(ws);
      this.onStatus("online");
      if (welcome.t === "welcome") {
        // Sequence numbers only compare within one epoch (SPEC 13.4).
        if (this.epoch !== null && this.epoch !== welcome.epoch) this.lastSeq = 0;
        this.epoch = welcome.epoch;
      }
      this.onMessage(welcome);
    } catch (error) {
      if (ws !== this.ws || error.code === "disconnected") return;
      if (error.retryable) {
        this.retryAfterMs = error.retryAfterMs ?? null;
        ws.close(3000);
        return;
      }
      this.stopped = true;
      ws.close(1000);
      this.onStatus("refused", error);
    }
  }

  startPings(ws) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (ws !== this.ws) return;
      const timeout = setTimeout(() => this.drop(ws), PING_TIMEOUT);
      this.request({ t: "ping" }, { socket: ws }).then(() => clearTimeout(timeout), () => {});
    }, PING_INTERVAL);
  }

  /** Treat `ws` as dead: forget it and reconnect (its close may take long on a dead network). */
  drop(ws) {
    if (ws !== this.ws) return;
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close(3000);
    } catch {
      // already closing
    }
    this.closed(ws, 1006);
  }

  /**
   * Send `message` (without rid) and wait for its reply. `rid` reuses a request id (an
   * `answer` resent after a reconnect must keep its rid).
   */
  request(message, { rid = null, socket = null } = {}) {
    const ws = socket ?? this.ws;
    const id = rid ?? this.nextRid();
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new RequestFailed("disconnected", "not connected", true));
        return;
      }
      let frame;
      try {
        frame = encodeMessage({ ...message, rid: id });
      } catch (error) {
        reject(new RequestFailed(error.code ?? "invalid_message", error.message, false));
        return;
      }
      this.pending.set(id, { resolve, reject, ws });
      ws.send(frame);
    });
  }

  receive(ws, event) {
    if (ws !== this.ws) return;
    let message;
    try {
      message = decodeFrame(new Uint8Array(event.data));
    } catch (error) {
      // A frame our codec refuses is the server's bug: report it, keep the connection.
      if (error instanceof CodecError) console.error("pubquiz: bad frame from server", error);
      else throw error;
      return;
    }
    if (globalThis.pubquizDebug) console.debug("pubquiz <-", JSON.stringify(message));
    if (REPLIES.has(message.t) && message.rid !== null && this.pending.has(message.rid)) {
      const waiter = this.pending.get(message.rid);
      this.pending.delete(message.rid);
      if (message.t === "error") {
        waiter.reject(new RequestFailed(message.code, message.message, message.retryable,
          message.retry_after_ms ?? null));
      } else {
        waiter.resolve(message);
      }
      return;
    }
    if (message.t === "state" || isEvent(message)) {
      this.lastSeq = message.t === "state" ? message.seq : Math.max(this.lastSeq, message.seq);
    }
    this.onMessage(message);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    this.ws = null;
    for (const [id, waiter] of this.pending) {
      if (waiter.ws === ws) {
        this.pending.delete(id);
        waiter.reject(new RequestFailed("disconnected", "connection lost", true));
      }
    }
    if (this.stopped) return;
    if (code >= 4000 && code <= 4099) {
      this.stopped = true;
      this.onStatus("ended", code);
    } else if (code === 4100) {
      this.stopped = true;
      this.onStatus("replaced", code);
    } else if (code === 1000) {
      this.stopped = true;
      this.onStatus("ended", code);
    } else {
      this.onStatus("offline", code);
      // A redirect is followed at once; anything else after a back-off, and no sooner than
      // the server's retry_after_ms (plus jitter) when it gave one.
      const jittered = this.backoff * (0.5 + Math.random() / 2);
      const delay = this.redirect ? 0
        : Math.max(jittered, retryDelay({ retryAfterMs: this.retryAfterMs }, 0));
      this.retryAfterMs = null;
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX);
      this.timer = setTimeout(() => this.open(), delay);
    }
  }
}
