#!/usr/bin/env node
// One Node.js load generator process: many lean pubquiz.v1 players (bench/baselines/leanws.js:
// plain `net` sockets and a hand-written WebSocket client; PUBQUIZ_BENCH_WS_CLIENT=ws selects
// the `ws` package's client instead).
//
// The Node twin of bench/harness/worker.py, chosen with `--client node`: it speaks the same
// JSON-lines protocol to the coordinator (first stdin line = spec, later lines = commands,
// every stdout line = one event) for the commands go, count, report, answer_load and close,
// so bench/harness/loadgen.py drives either. Why it exists: a Python/trio-websocket client
// costs more CPU per received frame than the engine spends sending it, so the Python load
// generator, not the engine, was the limit of `fanout`; a Node `ws` client is several times
// cheaper per message, and the lean client of leanws.js cheaper again (the same client drives
// the baselines in bench/baselines/loadgen.js, so the engine and the baselines get the same
// load generator).
//
// Rules it keeps (as worker.py):
// 1. One clock: timestamps are process.hrtime (libuv: CLOCK_MONOTONIC), i.e. the same clock as
//    Python's time.monotonic(), so a latency may start in the coordinator and end here.
// 2. Lean players: frames are counted, and only `t`, `q`, `rid`, `code` are looked at (read in
//    place by msgpeek.js; the whole frame is unpacked only to answer with `auto_answer`).
//    Requests are msgpack maps of str/int only (pubquiz.v1 allows no bin/ext).
// 3. Bounded: connecting has a per-player timeout and a concurrency cap; the process exits
//    by itself after `lifetime` seconds; only 127.0.0.1.. loopback addresses are targets.
// 4. Connections are spread round-robin over the loopback source addresses of the spec.
'use strict';
const path = require('path');
const readline = require('readline');
const NM = process.env.PUBQUIZ_BENCH_NODE_MODULES
  || path.join(__dirname, '..', 'baselines', 'node_modules');
const { Packr, unpack } = require(path.join(NM, 'msgpackr'));
const { selectClient, OPEN } = require(path.join(__dirname, '..', 'baselines', 'leanws.js'));
const { peek } = require(path.join(__dirname, '..', 'baselines', 'msgpeek.js'));

const client = selectClient(path.join(NM, 'ws'));
const WebSocket = client.WebSocket;
const packr = new Packr({ useRecords: false, variableMapSize: true });
const pack = (obj) => packr.pack(obj);
// CLOCK_MONOTONIC in seconds. performance.now() reads the same clock (libuv's uv_hrtime) as
// process.hrtime, from a fixed origin: one BigInt conversion at start-up instead of one per
// received frame.
const CLOCK_BASE = Number(process.hrtime.bigint()) / 1e9 - performance.now() / 1e3;
const now = () => CLOCK_BASE + performance.now() / 1e3;

let spec = null;
const players = [];
const perSession = new Map();
const st = {
  frames: 0, frameBytes: 0, firstFrame: null, lastFrame: null, types: {}, questions: new Map(),
  ackMs: [], acked: [], errors: {}, closes: {}, ended: 0, sent: 0, closing: false,
  handshakeMs: [], joinMs: [], outstanding: 0, onSettled: null, scheduled: 0, joinRetries: {},
};
const inc = (obj, key, n = 1) => { obj[key] = (obj[key] || 0) + n; };
const JOIN_ATTEMPTS = 5;
const LOOKED_AT = { t: 1, q: 1, rid: 1, code: 1 };  // the fields onFrame reads
const emit = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');

function settled() {
  st.outstanding--;
  if (st.outstanding <= 0 && st.onSettled) { const f = st.onSettled; st.onSettled = null; f(); }
}

class Player {
  constructor(index, code, name, team) {
    this.index = index; this.code = code; this.name = name; this.team = team;
    this.ws = null; this.participant = null; this.nextRid = 2; this.pending = new Map();
    this.joined = false;
  }

  connect(timeoutS) {
    return new Promise((resolve, reject) => {
      const t0 = now();
      const address = spec.local_addresses[this.index % spec.local_addresses.length];
      const ws = new WebSocket({
        host: spec.host, port: spec.port, path: '/', protocol: 'pubquiz.v1',
        handshakeTimeout: timeoutS * 1000, localAddress: address, maxPayload: 4 * 1024 * 1024,
      });
      this.ws = ws;
      let t1 = 0;
      let done = false;
      // A retryable refusal (SPEC: `retryable`, `retry_after_ms`; e.g. `unavailable` while the
      // session's last change waits for its commit under load) is retried as a client must,
      // up to JOIN_ATTEMPTS in all, within the same per-player timeout.
      let rid = 1;
      // spec.ping_only: a `ping` instead of the join, and its `pong` ends the connect: the
      // connection with one request each way and no session work, as a baseline's join is.
      const reply = spec.ping_only ? 'pong' : 'welcome';
      const sendJoin = spec.ping_only ? () => ws.send(pack({ t: 'ping', rid }))
        : () => ws.send(pack({ t: 'join', rid, code: this.code, name: this.name,
          team: this.team }));
      const timer = setTimeout(() => fail(new Error('timeout')), timeoutS * 1000);
      const fail = (e) => {
        if (done) return;
        done = true; clearTimeout(timer); ws.terminate(); this.ws = null; reject(e);
      };
      ws.onopen = () => {
        st.handshakeMs.push((now() - t0) * 1000);
        t1 = now();
        sendJoin();
      };
      ws.onerror = (e) => fail(e);
      ws.onclose = (code) => {
        if (!done) { fail(new Error(`closed before welcome (${code})`)); return; }
        if (!st.closing) inc(st.closes, String(code));
        if (this.pending.size) {
          inc(st.errors, `no_reply_before_close_${code}`, this.pending.size);
          for (let i = 0; i < this.pending.size; i++) settled();
          this.pending.clear();
        }
      };
      ws.onmessage = (data, isBinary) => {
        if (!done) {
          const f = unpack(data);
          if (f.t === reply && f.rid === rid) {
            done = true; clearTimeout(timer); this.joined = true; this.participant = f.participant;
            st.joinMs.push((now() - t1) * 1000);
            resolve();
          } else if (f.t === 'error' && f.rid === rid && f.retryable && rid < JOIN_ATTEMPTS) {
            rid++;
            inc(st.joinRetries, String(f.code));
            setTimeout(() => { if (!done) sendJoin(); }, Math.max(1, f.retry_after_ms || 100));
          } else if (f.t === 'error' && f.rid === rid) {
            fail(new Error(`join refused: ${f.code}`));
          }
          return;
        }
        this.onFrame(data, isBinary);
      };
    });
  }

  onFrame(data, isBinary) {
    const t = now();
    st.frames++;
    st.frameBytes += data.length;
    if (st.firstFrame === null) st.firstFrame = t;
    st.lastFrame = t;
    if (!isBinary) { inc(st.errors, 'text_frame'); return; }
    const f = (spec.auto_answer ? unpack(data) : peek(data, LOOKED_AT)) || {};
    const kind = f.t;
    inc(st.types, kind);
    if (kind === 'question') {
      const key = `${this.code}\u0000${f.q}`;
      let e = st.questions.get(key);
      if (!e) { e = [this.code, f.q, 0, t, t]; st.questions.set(key, e); }
      e[2]++; e[4] = t;
      if (e[2] === perSession.get(this.code)) {
        emit({ ev: 'got', code: this.code, q: f.q, first: e[3], last: t, count: e[2] });
      }
      // As the baselines' clients do: answer every question at once (spec answer_each).
      if (spec.answer_each) this.sendAnswer(f.q, this.index & 3);
      // As a phone does: answer after a random delay (spec auto_answer, answer_delay [lo, hi]).
      if (spec.auto_answer) {
        const [lo, hi] = spec.answer_delay || [0, 0];
        const value = answerFor(f.kind, f.choices, this.index);
        st.scheduled++;  // counts as pending until sent: the coordinator waits for it
        setTimeout(() => { st.scheduled--; this.sendAnswer(f.q, value); },
          (lo + Math.random() * (hi - lo)) * 1000);
      }
    } else if (kind === 'answer_ack') {
      const sent = this.pending.get(f.rid);
      if (sent !== undefined) {
        this.pending.delete(f.rid);
        st.ackMs.push((t - sent[0]) * 1000);
        st.acked.push([this.code, this.participant, sent[1], f.rid]);
        settled();
      }
    } else if (kind === 'error') {
      inc(st.errors, String(f.code));
      if (this.pending.delete(f.rid)) settled();
    } else if (kind === 'ended') {
      st.ended++;
    }
  }

  // `at`: when the answer was due (the open loop's schedule). Its latency is counted from
  // then, not from when this process got round to sending it: a lagging load generator must
  // not hide its lag from the figure (coordinated omission).
  sendAnswer(q, value, at) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) { inc(st.errors, 'not_connected'); return; }
    const rid = this.nextRid++;
    this.pending.set(rid, [at === undefined ? now() : Math.min(at, now()), q]);
    st.outstanding++;
    ws.send(pack({ t: 'answer', rid, q, value }));
    st.sent++;
  }
}

// A well-formed answer to a question of `kind` (bench/harness/quizzes.py answer_for, ported).
function answerFor(kind, choices, salt) {
  const n = choices ? choices.length : 0;
  switch (kind) {
    case 'single': return n ? salt % n : 0;
    case 'truefalse': return salt % 2 === 0;
    case 'multiple': return [n ? salt % n : 0];
    case 'ordering': {
      const order = [...Array(n).keys()];
      const shift = n ? salt % n : 0;
      return order.slice(shift).concat(order.slice(0, shift));
    }
    case 'numeric': return 1900 + (salt % 200);
    case 'text': return ['beatles', 'the beatles', 'no idea'][salt % 3];
    default: return 0;
  }
}

const sleep = (s) => new Promise((r) => setTimeout(r, Math.max(0, s * 1000)));

async function go() {
  const limit = spec.connect_concurrency || 100;
  const timeoutS = spec.connect_timeout || 30;
  const failed = {};
  const connectMs = [];
  const started = now();
  let next = 0;
  async function lane() {
    while (next < players.length) {
      const p = players[next++];
      const t0 = now();
      try { await p.connect(timeoutS); connectMs.push((now() - t0) * 1000); } catch (e) {
        const msg = String(e && e.message);
        inc(failed, msg.startsWith('join refused') ? msg : (e && e.code) || msg);
      }
    }
  }
  const lanes = [];
  for (let i = 0; i < Math.min(limit, players.length); i++) lanes.push(lane());
  await Promise.all(lanes);
  connectMs.sort((a, b) => a - b);
  emit({
    ev: 'ready', joined: connectMs.length, failed, started, finished: now(),
    connect_ms_p50: connectMs.length ? connectMs[connectMs.length >> 1] : null,
    connect_ms_max: connectMs.length ? connectMs[connectMs.length - 1] : null,
    handshake_ms: st.handshakeMs, join_ms: st.joinMs, join_retries: st.joinRetries,
  });
}

async function answerLoad(cmd) {
  // Open loop: answer i leaves at start_at + i / rate whatever the acks do.
  const live = players.filter((p) => p.joined);
  const count = Math.floor(cmd.rate * cmd.duration);
  const acksBefore = st.ackMs.length;
  const errorsBefore = { ...st.errors };
  const lag = [];
  if (live.length) {
    for (let i = 0; i < count; i++) {
      const target = cmd.start_at + i / cmd.rate;
      const delay = target - now();
      if (delay > 0.001) await sleep(delay);
      const t = now();
      lag.push((t - target) * 1000);
      live[i % live.length].sendAnswer(cmd.q, i % 4, target);
    }
  }
  const sentDone = now();
  if (st.outstanding > 0) {
    await Promise.race([new Promise((r) => { st.onSettled = r; }),
      sleep(cmd.ack_timeout || 10)]);
  }
  lag.sort((a, b) => a - b);
  const errors = {};
  for (const [k, v] of Object.entries(st.errors)) {
    if (v - (errorsBefore[k] || 0) > 0) errors[k] = v - (errorsBefore[k] || 0);
  }
  emit({
    ev: 'answer_load_done', sent: live.length ? count : 0, acked: st.ackMs.length - acksBefore,
    lat_ms: st.ackMs.slice(acksBefore), unacked: live.reduce((n, p) => n + p.pending.size, 0),
    errors, lag_ms_p99: lag.length ? lag[Math.min(lag.length - 1, Math.floor(lag.length * 0.99))] : null,
    lag_ms_max: lag.length ? lag[lag.length - 1] : null, start_at: cmd.start_at,
    sent_done: sentDone,
  });
}

async function churn(cmd) {
  // Connect-join-leave cycles, `concurrency` lanes at once, until `duration` seconds have
  // passed (or `max_cycles` cycles): one cycle = TCP + WebSocket handshake, join -> welcome,
  // leave -> ok, the server's close (1000). Names are unique per worker and cycle.
  const codes = [...perSession.keys()];
  const deadline = now() + cmd.duration;
  const timeoutS = cmd.timeout || 10;
  const cycleMs = [];
  const failed = {};
  let started = 0;
  const t0 = now();
  async function cycle(i) {
    const c0 = now();
    const p = new Player(i, codes[i % codes.length], `w${spec.seed}c${i}`, null);
    try {
      await p.connect(timeoutS);
      const ws = p.ws;
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('leave timeout')), timeoutS * 1000);
        ws.onclose = (code) => {
          clearTimeout(timer);
          if (code === 1000) resolve(); else reject(new Error(`close ${code}`));
        };
        ws.onmessage = (data) => {
          const f = unpack(data);
          if (f.t === 'error' && f.rid === 2) reject(new Error(`leave refused: ${f.code}`));
        };
        ws.send(pack({ t: 'leave', rid: 2 }));
      });
      cycleMs.push((now() - c0) * 1000);
    } catch (e) {
      const msg = String(e && e.message);
      inc(failed, (e && e.code) || msg);
      if (p.ws) p.ws.terminate();
    }
  }
  async function lane() {
    while (now() < deadline && (!cmd.max_cycles || started < cmd.max_cycles)) {
      await cycle(started++);
    }
  }
  const lanes = [];
  for (let i = 0; i < (cmd.concurrency || 50); i++) lanes.push(lane());
  await Promise.all(lanes);
  const finished = now();
  emit({ ev: 'churn_done', cycles: cycleMs.length, failed, started: t0, finished,
    cycle_ms: cycleMs });
}

// Answers waiting for their reply, and answers scheduled but not sent yet.
function pending() { return st.scheduled + players.reduce((n, p) => n + p.pending.size, 0); }

function report() {
  return {
    ev: 'report', frames: st.frames, frame_bytes: st.frameBytes, first_frame: st.firstFrame,
    last_frame: st.lastFrame, types: st.types, questions: [...st.questions.values()],
    sent: st.sent, ack_ms: st.ackMs, acked: st.acked, errors: st.errors, closes: st.closes,
    ended: st.ended, connected: players.filter((p) => p.ws && p.ws.readyState === OPEN).length,
    pending: pending(), ws_client: client.name,
  };
}

async function closeAll() {
  st.closing = true;
  const open = players.filter((p) => p.ws && p.ws.readyState === OPEN);
  await Promise.race([
    Promise.all(open.map((p) => new Promise((r) => {
      const ws = p.ws;
      const before = ws.onclose;  // still runs: replies that will not come are counted
      ws.onclose = (code) => { before(code); r(); };
      ws.close(1000);
    }))),
    sleep(10),
  ]);
  for (const p of players) if (p.ws) p.ws.terminate();
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  if (spec === null) {
    spec = msg;
    spec.players.forEach(([code, name, team], i) => {
      players.push(new Player(i, code, name, team));
      perSession.set(code, (perSession.get(code) || 0) + 1);
    });
    setTimeout(() => process.exit(3), (spec.lifetime || 600) * 1000).unref();
    emit({ ev: 'hello' });
    return;
  }
  switch (msg.cmd) {
    case 'go': go(); break;
    case 'answer_load': answerLoad(msg); break;
    case 'churn': churn(msg); break;
    case 'report': emit(report()); break;
    case 'count': emit({ ev: 'count', frames: st.frames, ended: st.ended, last_frame: st.lastFrame,
      pending: pending() }); break;
    case 'close': await closeAll(); emit({ ev: 'closed' }); setTimeout(() => process.exit(0), 50); break;
    default: inc(st.errors, `unknown_command:${msg.cmd}`);
  }
});
rl.on('close', () => setTimeout(() => process.exit(0), 50));  // end of stdin ends the worker
