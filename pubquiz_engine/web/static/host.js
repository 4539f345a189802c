// The host console: create (or take over) a session, see who joined and who answered, see the
// quiz's rounds and add a generated one in the lobby, drive the quiz, mark answers, adjust
// scores, remove players, end, and download the results.
//
// Rules this page keeps:
// 1. The operator key is only sent on operator connections of its own (`create_session`,
//    `generate`) and never stored: it stays in the page's form fields for the page's life (the
//    key that created the session fills in the generate form). The join code and host token are
//    kept in localStorage ("pubquiz.host") so that a reload re-attaches; a takeover link carries
//    them in the URL fragment (never sent to a server), which the page removes from the address
//    bar at once.
// 2. Buttons follow SPEC section 8: each command is enabled only in the phases that accept it,
//    and the server stays the judge (a refusal is shown, never hidden).
// 3. Marking needs the answers' texts, which pubquiz.v1 does not broadcast: the page reads them
//    from the host-only results download (`/results`, token in the Authorization header), on
//    the quiz master's click only. Scores come in the protocol: the host-only `scores` event
//    at each reveal, mark, adjustment and settled wager (SPEC section 9), never by polling.
// 4. `generate` is sent once, on a bare WebSocket of its own, never through QuizConnection: that
//    one reconnects and re-identifies after a retryable refusal or a lost connection, which
//    would ask the model again and could add the round twice. A lost connection or "Stop
//    waiting" just closes the socket; the engine may still add the round, and the rounds list
//    (from the `state` every member gets) shows whether it did.

import { QuizConnection, SUBPROTOCOL, engineUrl } from "./client.js";
import { errorText, t, translatePage } from "./i18n.js";
import { decodeFrame, encodeMessage } from "./protocol.js";
import { qrSvg } from "./qr.js";
import { $, Countdown, ServerClock, announce, describeAnswer, fill, h, saved, showView } from "./ui.js";

const STORE_KEY = "pubquiz.host";
/** Phases in which each command is accepted (SPEC section 8). */
const PHASES = {
  start: ["lobby"],
  next: ["slide", "revealed", "leaderboard", "round_summary"],
  close: ["question_open", "paused"],
  extend: ["question_open", "paused"],
  pause: ["question_open"],
  unpause: ["paused"],
  reveal: ["question_open", "question_closed", "paused"],
  skip: ["question_open", "question_closed", "paused"],
  show_leaderboard: ["slide", "revealed", "leaderboard", "round_summary", "finished"],
  round_leaderboard: ["revealed", "leaderboard", "round_summary"],
  end: ["lobby", "slide", "question_open", "paused", "question_closed", "revealed",
    "leaderboard", "round_summary"],
};
const EXTEND_SECONDS = 15;
/** `generate`'s bounds on `count` (SPEC section 8). */
const GENERATE_MIN = 1;
const GENERATE_MAX = 50;
/** The one request on a generate connection (a fresh connection per request). */
const GENERATE_RID = 1;
/** How many `redirect`s (SPEC 13.8) a generate request follows before it gives up. */
const GENERATE_REDIRECTS = 3;

let host = saved.get(STORE_KEY); // {code, token}
let connection = null;
let haveView = false;
const clock = new ServerClock();
const view = {
  phase: null, round: null, question: null, people: new Map(), answered: new Set(), mode: null,
  rounds: [], // the quiz's rounds from the last `state`: {title, questions, multiplier, wager, joker}
  roundKnown: false, // whether `round` is the one being played (a `slide` event does not say)
};
/** The generate request in flight: {ws, request, timer, started}, or null. */
let generating = null;
let countdown = null;

// --- setup --------------------------------------------------------------------------------------

function createSession(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#create-error");
  error.textContent = "";
  const key = $("#create-key").value;
  const source = form.elements.quiz.value;
  const request = {
    t: "create_session", key, mode: form.elements.mode.value, quiz_path: null, quiz: null,
    options: $("#create-close-all").checked ? { close_when_all_answered: true } : null,
  };
  const go = () => {
    const once = new QuizConnection({
      identify: () => request,
      onMessage: (message) => {
        if (message.t !== "session_created") return;
        once.stop();
        $("#gen-key").value = key; // for a generated round (rule 1)
        attach({ code: message.code, token: message.host_token });
      },
      onStatus: (kind, detail) => {
        if (kind === "refused") error.textContent = errorText(detail);
      },
    });
    once.start();
  };
  if (source === "sample") {
    request.quiz_path = "sample";
    go();
  } else if (source === "path") {
    request.quiz_path = $("#create-path").value.trim();
    go();
  } else {
    const file = $("#create-file").files[0];
    if (!file) {
      error.textContent = t("error.quiz_file");
      return;
    }
    file.text().then((text) => {
      try {
        request.quiz = JSON.parse(text);
      } catch {
        error.textContent = t("error.quiz_file");
        return;
      }
      go();
    });
  }
}

function takeOver(event) {
  event.preventDefault();
  attach({ code: $("#takeover-code").value.trim().toUpperCase(), token: $("#takeover-token").value.trim() });
}

function attach(credentials) {
  if (host?.code !== credentials.code) resetGenerate();
  host = credentials;
  saved.set(STORE_KEY, host);
  connection?.stop();
  haveView = false;
  connection = new QuizConnection({
    identify: () => ({ t: "host", code: host.code, token: host.token,
      last_seq: haveView ? connection.lastSeq : null,
      epoch: haveView ? connection.epoch : null }),
    onMessage: receive,
    onStatus: status,
  });
  globalThis.pubquizConnection = connection;
  connection.start();
}

function forget() {
  resetGenerate();
  connection?.stop();
  saved.remove(STORE_KEY);
  host = null;
  showView("setup");
}

function status(kind, detail) {
  const line = $("#status");
  line.dataset.state = kind;
  line.textContent = {
    online: t("conn.online"), connecting: t("conn.connecting"), offline: t("conn.offline"),
    ended: t("conn.closed"), replaced: t("conn.replaced"),
  }[kind] ?? "";
  if (kind === "refused") {
    saved.remove(STORE_KEY);
    showView("setup");
    $("#takeover-error").textContent = errorText(detail);
  }
}

// --- messages -----------------------------------------------------------------------------------

function receive(message) {
  switch (message.t) {
    case "welcome":
      renderLinks(message.code);
      showView("console");
      break;
    case "state":
      applyState(message.state);
      break;
    case "player_joined":
      view.people.set(message.participant, {
        participant: message.participant, name: message.name, team: message.team,
        connected: true, score: 0, kicked: false,
      });
      log(t("log.joined", { name: message.name }));
      renderPeople();
      break;
    case "player_left":
    case "player_kicked": {
      const person = view.people.get(message.participant);
      if (person) {
        person.connected = false;
        person.kicked = message.t === "player_kicked";
        person.left = message.t === "player_left";
        log(t(person.kicked ? "log.kicked" : "log.left", { name: person.name }));
      }
      renderPeople();
      break;
    }
    case "question":
      clock.sawQuestion(message);
      view.question = message;
      view.answered = new Set();
      view.round = message.round;
      view.roundKnown = true;
      setPhase("question_open");
      renderQuestion();
      renderCount(0, null);
      countdown.run(message.time_limit_ms, message.time_limit_ms);
      log(t("log.question", { number: message.number }));
      renderPeople();
      break;
    case "answered":
      view.answered.add(message.participant);
      renderPeople();
      break;
    case "answer_count":
      renderCount(message.answered, message.total);
      break;
    case "closed":
      countdown.stop();
      setPhase("question_closed");
      log(t("log.closed"));
      renderMarking();
      break;
    case "paused":
      setPhase("paused");
      countdown.hold(message.remaining_ms, view.question?.time_limit_ms ?? message.remaining_ms);
      break;
    case "unpaused":
    case "extended":
      setPhase("question_open");
      countdown.run(clock.remaining(message.deadline_ms), view.question?.time_limit_ms ?? 0);
      break;
    case "reveal":
      setPhase("revealed");
      renderReveal(message);
      log(t("log.revealed"));
      break;
    case "scores":
      // The totals that changed (at a reveal, a mark, an adjustment, a settled wager).
      for (const [id, score] of message.scores) {
        const person = view.people.get(id);
        if (person) person.score = score;
      }
      renderPeople();
      break;
    case "leaderboard":
      setPhase("leaderboard");
      if (!message.teams && message.round === null) {
        for (const [, id, , score] of message.top) {
          const person = view.people.get(id);
          if (person) person.score = score;
        }
        renderPeople();
      }
      break;
    case "round_summary":
      view.round = message.round;
      view.roundKnown = true;
      setPhase("round_summary");
      break;
    case "slide":
      view.roundKnown = false;
      setPhase("slide");
      fill($("#marking"));
      $("#current-heading").textContent = t("phase.slide");
      $("#current-prompt").textContent = message.title;
      break;
    case "score_adjusted": {
      const person = view.people.get(message.participant);
      if (person) {
        person.score += message.delta;
        log(t("log.adjusted", { name: person.name, delta: message.delta, reason: message.reason }));
      }
      renderPeople(); // the exact totals follow in a `scores` event
      break;
    }
    case "ended":
      countdown.stop();
      setPhase("finished");
      log(t("log.ended", { reason: message.reason }));
      break;
    case "error":
      $("#command-error").textContent = errorText(message);
      break;
    default:
      break;
  }
}

function applyState(state) {
  haveView = true;
  view.mode = state.mode;
  view.round = state.round;
  view.roundKnown = state.round !== null && state.round !== undefined;
  if (Array.isArray(state.rounds)) view.rounds = state.rounds;
  view.people = new Map((state.participants ?? []).map((p) => [p.participant, { ...p }]));
  view.answered = new Set();
  setPhase(state.phase);
  const q = state.question;
  view.question = q ?? null;
  if (q) {
    renderQuestion();
    renderCount(state.answered ?? 0, state.total);
    if (state.phase === "question_open") countdown.run(clock.remaining(q.deadline_ms), q.time_limit_ms);
    else if (state.phase === "paused") countdown.hold(q.remaining_ms ?? 0, q.time_limit_ms);
    else countdown.stop();
    if (state.reveal) renderReveal(state.reveal);
    if (["question_closed", "revealed"].includes(state.phase)) renderMarking();
  } else {
    countdown.stop();
    $("#current-heading").textContent = state.slide ? t("phase.slide") : "";
    $("#current-prompt").textContent = state.slide ? state.slide.title : t("host.none");
    $("#current-count").textContent = "";
    $("#current-answer").textContent = "";
  }
  renderPeople();
}

// --- rendering ----------------------------------------------------------------------------------

function setPhase(phase) {
  view.phase = phase;
  $("#phase-line").textContent = t("host.phase", { phase: t(`phase.${phase}`) });
  for (const button of $("#controls").querySelectorAll("[data-cmd]")) {
    button.disabled = !PHASES[button.dataset.cmd].includes(phase);
  }
  if (phase === "question_open") fill($("#marking"));
  showGenerateCard();
  renderRounds();
}

function renderLinks(code) {
  $("#session-line").textContent = t("host.session", { code });
  const player = `${location.origin}/play?code=${encodeURIComponent(code)}`;
  const screen = `${location.origin}/screen?code=${encodeURIComponent(code)}`;
  Object.assign($("#player-link"), { href: player, textContent: player });
  Object.assign($("#screen-link"), { href: screen, textContent: screen });
  const qr = $("#player-qr");
  qr.innerHTML = qrSvg(player); // numbers only: see qr.js
  qr.setAttribute("aria-label", t("screen.qr", { url: player }));
  const takeover = `${location.origin}/host#code=${encodeURIComponent(code)}&token=${encodeURIComponent(host.token)}`;
  fill($("#host-token"), host.token, h("br"), h("a", { href: takeover }, takeover));
}

function renderQuestion() {
  const q = view.question;
  $("#current-heading").textContent = `${t("q.heading", { round: q.round + 1, number: q.number })} · ${t(`kind.${q.kind}`)}`;
  $("#current-prompt").textContent = q.prompt;
  $("#current-answer").textContent = "";
  fill($("#marking"));
}

function renderCount(answered, total) {
  $("#current-count").textContent = total === null || total === undefined ? ""
    : t("q.answered", { answered, total });
}

function renderReveal(reveal) {
  const q = view.question;
  const text = Array.isArray(reveal.correct) && q?.kind === "text"
    ? t("q.accepted", { answers: reveal.correct.join(", ") })
    : t("q.correct", { answer: describeAnswer(q, reveal.correct) });
  const distribution = reveal.distribution
    ? ` (${reveal.distribution.map((n, i) => `${String.fromCharCode(65 + i)}: ${n}`).join(", ")})` : "";
  $("#current-answer").textContent = text + distribution;
  renderMarking();
}

/** The quiz's rounds (SPEC section 11, `rounds`), the current one marked once the quiz runs. */
function renderRounds() {
  const rounds = view.rounds;
  const questions = rounds.reduce((sum, round) => sum + (round.questions ?? 0), 0);
  $("#rounds-summary").textContent = t("host.rounds.summary", { rounds: rounds.length, questions });
  const running = view.roundKnown && !["lobby", "finished", null].includes(view.phase);
  fill($("#rounds"), rounds.map((round, index) => {
    const current = running && view.round === index;
    return h("tr", { dataset: { round: String(index) }, class: current ? "current" : null,
      "aria-current": current ? "step" : null },
    h("td", { class: "num" }, String(index + 1)),
    h("th", { scope: "row" }, round.title || t("host.rounds.untitled")),
    h("td", { class: "num" }, String(round.questions ?? 0)),
    h("td", { class: "num" }, t("host.rounds.multiplier", { multiplier: Number(round.multiplier ?? 1) })),
    h("td", {}, t(round.wager ? "host.rounds.yes" : "host.rounds.no")),
    h("td", {}, t(round.joker ? "host.rounds.yes" : "host.rounds.no")));
  }));
}

function renderPeople() {
  const body = $("#people");
  const people = [...view.people.values()];
  $("#people-empty").hidden = people.length > 0;
  fill(body, people.map((p) => {
    const state = p.kicked ? t("host.kicked") : p.connected ? t("host.online") : t("host.offline");
    const answered = view.answered.has(p.participant) ? "✓" : "";
    return h("tr", { dataset: { participant: String(p.participant) } },
      h("th", { scope: "row" }, p.name),
      h("td", {}, p.team ?? ""),
      h("td", { class: "num" }, String(p.score ?? 0)),
      h("td", {}, state),
      h("td", { class: "num", "aria-label": answered ? t("host.col.answered") : "" }, answered),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", disabled: p.kicked,
          "aria-label": t("host.adjust.label", { name: p.name }), onclick: () => adjust(p) }, t("host.adjust")),
        h("button", { type: "button", class: "small danger", disabled: p.kicked || view.phase === "finished",
          "aria-label": t("host.kick.label", { name: p.name }), onclick: () => kick(p) }, t("host.kick"))));
  }));
}

function renderMarking() {
  const q = view.question;
  if (!q) return;
  const box = $("#marking");
  fill(box, h("button", { type: "button", class: "small", onclick: () => loadAnswers(q) },
    t("host.marking.load", { number: q.number })));
}

async function loadAnswers(q) {
  const box = $("#marking");
  let data;
  try {
    data = JSON.parse(await fetchResults("json"));
  } catch (error) {
    fill(box, h("p", { class: "error", role: "alert" }, error.message));
    return;
  }
  // The last answer of each participant to this question counts (they may change it).
  const latest = new Map();
  for (const answer of data.answers ?? []) {
    if (answer.question === q.q) latest.set(answer.participant_id, answer);
  }
  if (!latest.size) {
    fill(box, h("p", { class: "help" }, t("host.marking.none")));
    return;
  }
  fill(box, h("h3", {}, t("host.marking")), h("ul", { class: "marking" },
    [...latest.values()].map((answer) => {
      const name = view.people.get(answer.participant_id)?.name ?? `#${answer.participant_id}`;
      const mark = (correct) => command({ t: "mark", q: q.q, participant: answer.participant_id, correct });
      return h("li", { dataset: { participant: String(answer.participant_id) } },
        h("span", { class: "name" }, name), ": ",
        h("span", { class: "answer-text" }, describeAnswer(q, answer.value)), " ",
        h("button", { type: "button", class: "small good", onclick: () => mark(true),
          "aria-label": t("host.mark.label_right", { name }) }, t("host.mark.right")),
        h("button", { type: "button", class: "small danger", onclick: () => mark(false),
          "aria-label": t("host.mark.label_wrong", { name }) }, t("host.mark.wrong")));
    })));
}

function log(text) {
  const list = $("#log");
  list.prepend(h("li", {}, `${new Date().toLocaleTimeString()} ${text}`));
  while (list.children.length > 50) list.lastChild.remove();
}

// --- commands -----------------------------------------------------------------------------------

async function command(message) {
  $("#command-error").textContent = "";
  try {
    await connection.request(message);
  } catch (error) {
    $("#command-error").textContent = errorText(error);
    announce(errorText(error));
  }
}

function onControl(event) {
  const button = event.target.closest("[data-cmd]");
  if (!button) return;
  const name = button.dataset.cmd;
  if (name === "end" && !confirm(t("host.end.confirm"))) return;
  if (name === "extend") command({ t: "extend", seconds: EXTEND_SECONDS });
  else if (name === "show_leaderboard") command({ t: "show_leaderboard", round: null });
  else if (name === "round_leaderboard") command({ t: "show_leaderboard", round: view.round ?? 0 });
  else if (name === "reveal") reveal();
  else command({ t: name });
}

/** Reveal, closing the question first if it is still open (what SPEC's `reveal` does). */
async function reveal() {
  if (["question_open", "paused"].includes(view.phase)) {
    try {
      await connection.request({ t: "close" });
    } catch (error) {
      if (error.code !== "wrong_phase") { // closed meanwhile (deadline): reveal all the same
        $("#command-error").textContent = errorText(error);
        return;
      }
    }
  }
  command({ t: "reveal" });
}

function kick(person) {
  if (!confirm(t("host.kick.confirm", { name: person.name }))) return;
  command({ t: "kick", participant: person.participant });
}

function adjust(person) {
  const answer = prompt(t("host.adjust.prompt", { name: person.name }), "1");
  if (answer === null) return;
  const delta = Number.parseInt(answer, 10);
  if (!Number.isFinite(delta) || delta === 0) return;
  command({ t: "adjust", participant: person.participant, delta, reason: t("host.adjust.reason") });
}

async function fetchResults(format) {
  const response = await fetch(`/results?code=${encodeURIComponent(host.code)}&format=${format}`, {
    headers: { Authorization: `Bearer ${host.token}` }, cache: "no-store",
  });
  if (!response.ok) throw new Error(t("error.results", { status: response.status }));
  return response.text();
}

async function download(format) {
  $("#results-error").textContent = "";
  try {
    const text = await fetchResults(format);
    const type = format === "csv" ? "text/csv" : "application/json";
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = h("a", { href: url, download: `pubquiz-${host.code}.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    $("#results-error").textContent = error.message;
  }
}

function toggleToken() {
  const button = $("#token-toggle");
  const shown = button.getAttribute("aria-expanded") === "true";
  button.setAttribute("aria-expanded", String(!shown));
  button.textContent = t(shown ? "host.token.show" : "host.token.hide");
  $("#host-token").hidden = shown;
}

async function copy(event) {
  const target = document.getElementById(event.currentTarget.dataset.copy);
  try {
    await navigator.clipboard.writeText(target.textContent);
    event.currentTarget.textContent = t("host.copied");
  } catch {
    // No clipboard (plain http on a LAN address): the link is on screen to copy by hand.
  }
}

// --- generating a round (an operator request, rule 4) ------------------------------------------

/** The generate form is there in the lobby only (SPEC: `generate` is refused once it started). */
function showGenerateCard() {
  $("#generate-card").hidden = view.phase !== "lobby" && !generating;
}

function generateRound(event) {
  event.preventDefault();
  if (generating || !host) return;
  const form = event.currentTarget;
  fill($("#gen-result"));
  $("#gen-error").textContent = "";
  const topic = $("#gen-topic").value.trim();
  const count = Number($("#gen-count").value);
  const title = $("#gen-title").value.trim();
  if (!topic) {
    $("#gen-error").textContent = t("host.generate.topic_empty");
    return;
  }
  if (!Number.isInteger(count) || count < GENERATE_MIN || count > GENERATE_MAX) {
    $("#gen-error").textContent = t("host.generate.count_range");
    return;
  }
  const request = {
    t: "generate", rid: GENERATE_RID, key: $("#gen-key").value, code: host.code, topic, count,
    kind: form.elements.kind.value, difficulty: null, language: null, round_title: title || null,
  };
  let frame;
  try {
    frame = encodeMessage(request); // refuses what the server would (lengths, bounds)
  } catch (error) {
    $("#gen-error").textContent = errorText(error);
    return;
  }
  generating = { ws: null, request, started: performance.now(), timer: null };
  generating.timer = setInterval(showElapsed, 1000);
  setGenerating(true);
  sendGenerate(frame, engineUrl(location, request.code), GENERATE_REDIRECTS);
}

function sendGenerate(frame, url, redirectsLeft) {
  let ws;
  try {
    ws = new WebSocket(url, SUBPROTOCOL);
  } catch { // a redirect to a URL this browser will not open
    stopGenerating();
    $("#gen-error").textContent = t("host.generate.lost");
    return;
  }
  ws.binaryType = "arraybuffer";
  generating.ws = ws;
  ws.onopen = () => ws.send(frame);
  ws.onmessage = (event) => {
    let message;
    try {
      message = decodeFrame(new Uint8Array(event.data));
    } catch {
      return; // a frame our codec refuses is the server's bug: wait for the reply or the close
    }
    if (message.t === "redirect" && redirectsLeft > 0) {
      // The session lives on another node: ask there (this socket's close is then ignored).
      ws.onclose = null;
      ws.close(1000);
      sendGenerate(frame, message.url, redirectsLeft - 1);
    } else if (message.t === "generated" || message.t === "error" || message.t === "redirect") {
      finishGenerate(ws, message.t === "redirect" ? null : message);
    }
  };
  ws.onclose = () => finishGenerate(ws, null);
}

/** The reply (`generated` or `error`) arrived, or the socket closed first (`reply` null). */
function finishGenerate(ws, reply) {
  if (!generating || generating.ws !== ws) return;
  const { request } = generating;
  stopGenerating();
  if (reply === null) {
    $("#gen-error").textContent = t("host.generate.lost");
  } else if (reply.t === "error") {
    const text = reply.code === "generator_unavailable"
      ? t("host.generate.unavailable", { message: reply.message }) : errorText(reply);
    $("#gen-error").textContent = text;
    log(t("log.generate_failed", { reason: text }));
  } else {
    const round = reply.round + 1;
    fill($("#gen-result"),
      h("p", { class: "good-text" }, t("host.generate.done",
        { round, title: request.round_title ?? request.topic, added: reply.added })),
      reply.dropped ? h("p", {}, t("host.generate.dropped", { dropped: reply.dropped })) : null,
      reply.notes?.length ? h("ul", { class: "notes" }, reply.notes.map((note) => h("li", {}, note)))
        : null);
    log(t("log.generated", { round, added: reply.added }));
  }
}

/** Close the socket (if open), clear the timer and give the form back. */
function stopGenerating() {
  if (!generating) return;
  const { ws, timer } = generating;
  generating = null;
  clearInterval(timer);
  if (ws) {
    ws.onclose = null;
    ws.onmessage = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
  }
  setGenerating(false);
}

function cancelGenerate() {
  if (!generating) return;
  stopGenerating();
  $("#gen-error").textContent = "";
  fill($("#gen-result"), h("p", {}, t("host.generate.cancelled")));
}

/** Forget any request in flight and its outcome (another session, or none). */
function resetGenerate() {
  stopGenerating();
  $("#gen-error").textContent = "";
  fill($("#gen-result"));
}

function setGenerating(busy) {
  $("#gen-submit").disabled = busy;
  $("#gen-cancel").hidden = !busy;
  $("#generate-form").setAttribute("aria-busy", String(busy));
  $("#gen-progress-text").textContent = busy ? t("host.generate.asking") : "";
  $("#gen-elapsed").textContent = "";
  showGenerateCard();
}

function showElapsed() {
  if (!generating) return;
  const seconds = Math.floor((performance.now() - generating.started) / 1000);
  $("#gen-elapsed").textContent = t("host.generate.elapsed", { seconds });
}

// --- start --------------------------------------------------------------------------------------

translatePage();
countdown = new Countdown($("#current-countdown"));
$("#create-form").addEventListener("submit", createSession);
$("#takeover-form").addEventListener("submit", takeOver);
$("#controls").addEventListener("click", onControl);
$("#download-csv").addEventListener("click", () => download("csv"));
$("#download-json").addEventListener("click", () => download("json"));
$("#token-toggle").addEventListener("click", toggleToken);
$("#forget").addEventListener("click", forget);
$("#generate-form").addEventListener("submit", generateRound);
$("#gen-cancel").addEventListener("click", cancelGenerate);
for (const button of document.querySelectorAll("[data-copy]")) button.addEventListener("click", copy);

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("code") && fragment.get("token")) {
  history.replaceState(null, "", location.pathname); // the token leaves the address bar
  attach({ code: fragment.get("code").toUpperCase(), token: fragment.get("token") });
} else if (host?.code && host?.token) {
  attach(host);
} else {
  showView("setup");
}
