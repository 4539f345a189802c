// client.js's retries (SPEC 12 `unavailable`, 13.9): a refused identify reconnects no sooner
// than the server's `retry_after_ms`, and `retryDelay` adds jitter above it, never below.
// Run with `node --test tests/web/js/`; tests/web/test_web_js.py runs it under pytest.

import assert from "node:assert/strict";
import { test } from "node:test";

import { QuizConnection, RequestFailed, retryDelay } from
  "../../../pubquiz_engine/web/static/client.js";
import { SERVER_TO_CLIENT, decodeFrame, encodeMessage, CLIENT_TO_SERVER } from
  "../../../pubquiz_engine/web/static/protocol.js";

test("retryDelay: the server's time plus up to as much again, else the fallback", () => {
  const refused = new RequestFailed("unavailable", "database away", true, 1000);
  assert.equal(retryDelay(refused, 250, () => 0), 1000);
  assert.equal(retryDelay(refused, 250, () => 1), 2000);
  assert.equal(retryDelay(new RequestFailed("busy", "full", true), 250, () => 1), 250);
});

/** A WebSocket stand-in: records what the client sends; the test plays the server. */
class FakeSocket {
  static OPEN = 1;
  static made = [];

  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = FakeSocket.OPEN;
    this.sent = [];
    FakeSocket.made.push(this);
  }

  send(frame) {
    this.sent.push(decodeFrame(frame, CLIENT_TO_SERVER));
  }

  close(code) {
    this.readyState = 3;
    this.onclose?.({ code });
  }

  reply(message) {
    this.onmessage({ data: encodeMessage(message, SERVER_TO_CLIENT).buffer });
  }
}

test("a refused identify reconnects after retry_after_ms, never sooner", async () => {
  const delays = [];
  const realWebSocket = globalThis.WebSocket;
  const realSetTimeout = globalThis.setTimeout;
  globalThis.WebSocket = FakeSocket;
  globalThis.setTimeout = (fn, ms) => { delays.push(ms); return 0; };
  try {
    const statuses = [];
    const connection = new QuizConnection({
      identify: () => ({ t: "resume", token: "rt_x", last_seq: 4, epoch: 1 }),
      onMessage: () => {},
      onStatus: (status) => statuses.push(status),
      url: "ws://127.0.0.1:1/",
    });
    connection.start();
    const ws = FakeSocket.made.at(-1);
    ws.onopen();
    const [resume] = ws.sent;
    assert.equal(resume.t, "resume");
    assert.equal(resume.epoch, 1);
    ws.reply({ t: "error", rid: resume.rid, code: "unavailable", message: "database away",
      retryable: true, retry_after_ms: 3000 });
    await new Promise((resolve) => realSetTimeout(resolve, 0)); // let the rejection run
    assert.deepEqual(statuses, ["connecting", "offline"]);
    assert.equal(delays.length, 1);
    assert.ok(delays[0] >= 3000 && delays[0] <= 6000, `reconnect after ${delays[0]} ms`);
    connection.stop();
  } finally {
    globalThis.WebSocket = realWebSocket;
    globalThis.setTimeout = realSetTimeout;
  }
});
