// Tests of leanws.js (the load generators' WebSocket client) and msgpeek.js, against a raw
// `net` server on 127.0.0.1 that fragments, pings, splits frames across TCP writes and closes.
// Run: node --test bench/baselines/leanws_test.js (bench/harness/tests/test_leanws.py runs it).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const net = require('net');
const crypto = require('crypto');
const path = require('path');
const { LeanWebSocket, frame } = require('./leanws.js');
const { peek } = require('./msgpeek.js');

const NM = process.env.PERF_NODE_MODULES || path.join(__dirname, 'node_modules');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A server frame: unmasked, FIN as given.
function serverFrame(opcode, payload, fin = true) {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const n = data.length;
  let head;
  if (n < 126) { head = Buffer.from([(fin ? 0x80 : 0) | opcode, n]); }
  else if (n < 65536) { head = Buffer.alloc(4); head[0] = (fin ? 0x80 : 0) | opcode; head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[0] = (fin ? 0x80 : 0) | opcode; head[1] = 127; head.writeUInt32BE(0, 2); head.writeUInt32BE(n, 6); }
  return Buffer.concat([head, data]);
}

// Client frames in `buf`: [{fin, opcode, mask, payload}], and the bytes left over.
function parseClientFrames(buf) {
  const out = [];
  let pos = 0;
  for (;;) {
    if (pos + 2 > buf.length) break;
    let len = buf[pos + 1] & 0x7f;
    let at = pos + 2;
    if (len === 126) { len = buf.readUInt16BE(at); at += 2; } else if (len === 127) { len = Number(buf.readBigUInt64BE(at)); at += 8; }
    if (at + 4 + len > buf.length) break;
    const mask = buf.subarray(at, at + 4);
    const payload = Buffer.from(buf.subarray(at + 4, at + 4 + len)).map((b, i) => b ^ mask[i & 3]);
    out.push({ fin: !!(buf[pos] & 0x80), opcode: buf[pos] & 0x0f, masked: !!(buf[pos + 1] & 0x80), mask: Buffer.from(mask), payload: Buffer.from(payload) });
    pos = at + 4 + len;
  }
  return [out, buf.subarray(pos)];
}

// A one-connection server: `script(sock, frames)` runs after the handshake; `frames` is an
// async iterator-ish getter of the client's frames.
function server({ accept, protocol, status = 101 } = {}, script) {
  return new Promise((resolve) => {
    const srv = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      let upgraded = false;
      const received = [];
      let waiter = null;
      const next = async () => {
        for (let i = 0; i < 500 && received.length === 0; i++) {
          await new Promise((r) => { waiter = r; setTimeout(r, 10); });
        }
        return received.shift();
      };
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const req = buf.toString('latin1', 0, end);
          buf = buf.subarray(end + 4);
          upgraded = true;
          const key = /Sec-WebSocket-Key: (.*)/i.exec(req)[1].trim();
          const proto = /Sec-WebSocket-Protocol: (.*)/i.exec(req);
          const acc = accept || crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
          const p = protocol !== undefined ? protocol : (proto ? proto[1].trim() : null);
          sock.write(`HTTP/1.1 ${status} Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
            + `Sec-WebSocket-Accept: ${acc}\r\n` + (p ? `Sec-WebSocket-Protocol: ${p}\r\n` : '') + '\r\n');
          srv.request = req;
          script(sock, next).catch((e) => { srv.scriptError = e; sock.destroy(); });
        }
        const [frames, rest] = parseClientFrames(buf);
        buf = Buffer.from(rest);
        received.push(...frames);
        if (waiter) { const w = waiter; waiter = null; w(); }
      });
      sock.on('error', () => {});
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

function client(port, protocol = 'pubquiz.v1') {
  const ws = new LeanWebSocket({ host: '127.0.0.1', port, protocol, handshakeTimeout: 5000 });
  const events = { open: 0, messages: [], errors: [], close: null };
  const closed = new Promise((r) => {
    ws.onopen = () => { events.open++; };
    ws.onmessage = (data, isBinary) => { events.messages.push([Buffer.from(data), isBinary]); };
    ws.onerror = (e) => { events.errors.push(String(e.message)); };
    ws.onclose = (code) => { events.close = code; r(); };
  });
  return { ws, events, closed };
}

test('frames split across chunks, fragmented messages, pings, 16/64-bit lengths, close', { timeout: 20000 }, async () => {
  const big = crypto.randomBytes(70000);
  const mid = crypto.randomBytes(300);
  const srv = await server({}, async (sock, next) => {
    // A fragmented binary message with a ping between its fragments, written byte by byte.
    const bytes = Buffer.concat([serverFrame(2, 'hel', false), serverFrame(9, 'p1'),
      serverFrame(0, 'lo ', false), serverFrame(0, 'world', true)]);
    for (const b of bytes) { sock.write(Buffer.from([b])); await sleep(1); }
    const pong = await next();
    assert.deepStrictEqual([pong.opcode, pong.payload.toString(), pong.masked], [10, 'p1', true]);
    assert.deepStrictEqual(pong.mask, Buffer.alloc(4));
    // Three messages in one write: 16-bit length, 64-bit length, text; then the client's reply.
    sock.write(Buffer.concat([serverFrame(2, mid), serverFrame(2, big), serverFrame(1, 'hi')]));
    const reply = await next();
    assert.deepStrictEqual([reply.opcode, reply.fin, reply.payload.toString()], [2, true, 'got 4']);
    // A frame whose header is split in the middle of its 16-bit length.
    const f = serverFrame(2, mid);
    sock.write(f.subarray(0, 3)); await sleep(5); sock.write(f.subarray(3));
    // The server's close: the client echoes the code and ends.
    const body = Buffer.alloc(2); body.writeUInt16BE(4102, 0);
    sock.write(serverFrame(8, Buffer.concat([body, Buffer.from('idle')])));
    const echo = await next();
    assert.deepStrictEqual([echo.opcode, echo.payload.readUInt16BE(0)], [8, 4102]);
    sock.end();
  });
  const { ws, events, closed } = client(srv.address().port);
  const seen = new Promise((r) => {
    const before = ws.onmessage;
    ws.onmessage = (data, isBinary) => {
      before(data, isBinary);
      if (events.messages.length === 4) ws.send(Buffer.from('got 4'));
      if (events.messages.length === 5) r();
    };
  });
  await Promise.race([seen, closed]);  // a failed server-side check closes early
  await closed;
  srv.close();
  assert.strictEqual(srv.scriptError, undefined, String(srv.scriptError && srv.scriptError.stack));
  assert.match(srv.request, /^GET \/ HTTP\/1\.1\r\n/);
  assert.match(srv.request, /Sec-WebSocket-Protocol: pubquiz\.v1/);
  assert.match(srv.request, /Sec-WebSocket-Version: 13/);
  assert.strictEqual(events.open, 1);
  const msgs = events.messages;
  assert.deepStrictEqual(msgs[0], [Buffer.from('hello world'), true]);
  assert.ok(msgs[1][0].equals(mid) && msgs[1][1]);
  assert.ok(msgs[2][0].equals(big) && msgs[2][1]);
  assert.deepStrictEqual(msgs[3], [Buffer.from('hi'), false]);
  assert.ok(msgs[4][0].equals(mid));
  assert.deepStrictEqual(events.errors, []);
  assert.strictEqual(events.close, 4102);
});

test('a wrong Sec-WebSocket-Accept, status or subprotocol is an error, never open', { timeout: 20000 }, async () => {
  for (const opts of [{ accept: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' }, { status: 400 }, { protocol: 'other' }]) {
    const srv = await server(opts, async () => {});
    const { events, closed } = client(srv.address().port);
    await closed;
    srv.close();
    assert.strictEqual(events.open, 0, JSON.stringify(opts));
    assert.strictEqual(events.errors.length, 1, JSON.stringify(opts));
    assert.strictEqual(events.close, 1006);
  }
});

test('a masked server frame is a protocol error: close 1002', { timeout: 20000 }, async () => {
  const srv = await server({}, async (sock, next) => {
    sock.write(Buffer.from([0x82, 0x81, 0, 0, 0, 0, 0x41]));
    const f = await next();
    assert.deepStrictEqual([f.opcode, f.payload.readUInt16BE(0)], [8, 1002]);
  });
  const { events, closed } = client(srv.address().port);
  await closed;
  srv.close();
  assert.strictEqual(srv.scriptError, undefined);
  assert.strictEqual(events.errors.length, 1);
  assert.strictEqual(events.close, 1002);
});

test('client close: close frame 1000, the server echo ends it with 1000', { timeout: 20000 }, async () => {
  const srv = await server({}, async (sock, next) => {
    const f = await next();
    assert.deepStrictEqual([f.opcode, f.payload.readUInt16BE(0)], [8, 1000]);
    sock.end(serverFrame(8, f.payload));
  });
  const { ws, events, closed } = client(srv.address().port);
  await new Promise((r) => { const t = setInterval(() => { if (events.open) { clearInterval(t); r(); } }, 5); });
  ws.close(1000);
  await closed;
  srv.close();
  assert.strictEqual(srv.scriptError, undefined);
  assert.strictEqual(events.close, 1000);
});

test('frame(): zero mask, 7/16/64-bit lengths, text for strings', { timeout: 20000 }, () => {
  for (const n of [0, 125, 126, 65535, 65536]) {
    const f = frame(Buffer.alloc(n, 7));
    const [[parsed], rest] = parseClientFrames(f);
    assert.strictEqual(rest.length, 0);
    assert.deepStrictEqual([parsed.opcode, parsed.fin, parsed.masked, parsed.payload.length], [2, true, true, n]);
    assert.deepStrictEqual(parsed.mask, Buffer.alloc(4));
  }
  assert.strictEqual(parseClientFrames(frame('40'))[0][0].opcode, 1);
});

test('msgpeek reads the fields asked for as msgpackr does, and skips the rest', { timeout: 20000 }, () => {
  const { Packr } = require(path.join(NM, 'msgpackr'));
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  const want = { t: 1, q: 1, rid: 1, code: 1, n: 1, f: 1, s: 1, b: 1 };
  const samples = [
    { t: 'question', seq: 9, q: 3, text: 'Which river? é'.repeat(30), choices: ['a', 'b', 'c', 'd'],
      kind: 'single', time_limit: 20.5, media: null, nested: { a: [1, { b: 2 }], c: 'x' } },
    { t: 'answer_ack', rid: 70000, q: 2, accepted: true },
    { t: 'error', rid: null, code: 'question_closed', retryable: false, retry_after_ms: 4294967296 },
    { t: 'result', n: -5, f: -200, s: -40000, b: -3000000000, list: Array.from({ length: 70 }, (_, i) => i * 1000) },
    { t: 'reveal', q: 1, stats: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, [i, 'v'.repeat(300)]])) },
    { t: 'x'.repeat(40), q: 1.5, rid: 2 ** 40 },
  ];
  for (const obj of samples) {
    const buf = packr.pack(obj);
    const got = peek(buf, want);
    const expect = {};
    for (const k of Object.keys(want)) {
      const v = obj[k];
      if (v !== undefined && (v === null || typeof v !== 'object')) expect[k] = v;
    }
    assert.deepStrictEqual(got, expect);
  }
  assert.strictEqual(peek(packr.pack([1, 2]), want), null);
  assert.throws(() => peek(packr.pack({ t: 'question', text: 'y'.repeat(50) }).subarray(0, 20), want));
});
