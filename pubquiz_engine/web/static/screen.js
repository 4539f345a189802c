// The big screen (a projector): join code and QR, the question with its media and countdown,
// the answer counter, reveals with answer distributions, and animated standings.
//
// Rules this page keeps:
// 1. Read-only: it attaches with `watch` and sends nothing but pings.
// 2. Readable from the back of a pub: everything is sized in viewport units (style.css), white
//    or yellow on black, and the countdown shows seconds as well as a bar.
// 3. Standings animate by FLIP (each row slides from where the previous standings had it) and
//    bars grow to the score; `prefers-reduced-motion` turns both off (in style.css).

import { QuizConnection } from "./client.js";
import { errorText, t, translatePage } from "./i18n.js";
import { qrSvg } from "./qr.js";
import { $, Countdown, ServerClock, announce, describeAnswer, fill, h, letter, param, showView } from "./ui.js";

let code = param("code")?.toUpperCase() ?? null;
let connection = null;
let haveView = false;
const clock = new ServerClock();
const view = { phase: null, question: null, count: 0, names: new Map(), title: "", lastRows: new Map() };
let countdown = null;

function connect() {
  connection?.stop();
  haveView = false;
  connection = new QuizConnection({
    identify: () => ({ t: "watch", code, last_seq: haveView ? connection.lastSeq : null,
      epoch: haveView ? connection.epoch : null }),
    onMessage: receive,
    onStatus: status,
  });
  globalThis.pubquizConnection = connection;
  connection.start();
}

function status(kind, detail) {
  const line = $("#status");
  line.dataset.state = kind;
  line.textContent = {
    online: "", connecting: t("conn.connecting"), offline: t("conn.offline"),
    ended: t("conn.closed"), replaced: t("conn.closed"),
  }[kind] ?? "";
  if (kind === "refused") {
    showView("setup");
    $("#setup-error").textContent = errorText(detail);
  }
}

function playerLink() {
  return `${location.origin}/play?code=${encodeURIComponent(code)}`;
}

function receive(message) {
  switch (message.t) {
    case "welcome":
      $("#foot-code").textContent = `${t("screen.code")}: ${message.code}`;
      break;
    case "state":
      applyState(message.state);
      break;
    case "player_joined":
      view.names.set(message.participant, message.name);
      view.count += 1;
      renderLobbyCount();
      break;
    case "player_left":
    case "player_kicked":
      view.names.delete(message.participant);
      view.count = Math.max(0, view.count - 1);
      renderLobbyCount();
      break;
    case "question":
      clock.sawQuestion(message);
      showQuestion(message, { answered: 0, total: null });
      countdown.run(message.time_limit_ms, message.time_limit_ms);
      break;
    case "answer_count":
      renderCount(message.answered, message.total);
      break;
    case "closed":
      view.phase = "question_closed";
      countdown.stop();
      $("#q-answer").textContent = t("q.time_up");
      break;
    case "paused":
      view.phase = "paused";
      countdown.hold(message.remaining_ms, view.question?.time_limit_ms ?? message.remaining_ms);
      $("#paused").hidden = false;
      break;
    case "unpaused":
    case "extended":
      view.phase = "question_open";
      $("#paused").hidden = true;
      countdown.run(clock.remaining(message.deadline_ms), view.question?.time_limit_ms ?? 0);
      break;
    case "reveal":
      renderReveal(message);
      break;
    case "leaderboard":
      renderBoard(message);
      break;
    case "round_summary":
      view.phase = "round_summary";
      slide(t("screen.round_over", { round: message.round + 1, title: message.title }), "");
      break;
    case "slide":
      view.phase = "slide";
      slide(message.title, message.body);
      break;
    case "ended":
      view.phase = "finished";
      countdown.stop();
      $("#paused").hidden = true;
      $("#board-title").textContent = t("screen.final");
      $("#board-foot").textContent = t("screen.thanks");
      showView("board");
      break;
    default:
      break;
  }
}

function applyState(state) {
  haveView = true;
  view.phase = state.phase;
  view.title = state.title;
  view.count = state.participant_count ?? 0;
  $("#paused").hidden = state.phase !== "paused";
  const question = state.question;
  if (state.phase === "lobby") {
    lobby(state);
  } else if (question && ["question_open", "paused", "question_closed", "revealed"].includes(state.phase)) {
    showQuestion(question, { answered: state.answered ?? 0, total: state.total });
    if (state.phase === "question_open") {
      countdown.run(clock.remaining(question.deadline_ms), question.time_limit_ms);
    } else if (state.phase === "paused") {
      countdown.hold(question.remaining_ms ?? 0, question.time_limit_ms);
    } else {
      countdown.stop();
    }
    if (state.phase === "revealed" && state.reveal) renderReveal(state.reveal);
  } else if (state.phase === "slide" && state.slide) {
    slide(state.slide.title, state.slide.body);
  } else if (state.leaderboard) {
    renderBoard(state.leaderboard);
    if (state.phase === "finished") {
      $("#board-title").textContent = t("screen.final");
      $("#board-foot").textContent = t("screen.thanks");
    }
  } else {
    slide(state.title, "");
  }
}

function lobby(state) {
  countdown.stop();
  $("#lobby-title").textContent = state.title;
  const link = playerLink();
  $("#join-url").textContent = link.replace(/^https?:\/\//, "");
  $("#join-code").textContent = code;
  const qr = $("#join-qr");
  // qrSvg builds the SVG from numbers only (module coordinates): no text from the network.
  qr.innerHTML = qrSvg(link, { ecl: "M" });
  qr.setAttribute("aria-label", t("screen.qr", { url: link }));
  renderLobbyCount();
  showView("lobby");
}

function renderLobbyCount() {
  $("#lobby-count").textContent = view.count ? t("screen.players", { count: view.count })
    : t("screen.waiting");
  fill($("#lobby-names"), [...view.names.values()].map((name) => h("li", {}, name)));
}

function showQuestion(question, { answered, total }) {
  view.phase = "question_open";
  view.question = question;
  $("#paused").hidden = true;
  $("#q-heading").textContent = `${t("q.heading", { round: question.round + 1, number: question.number })} · ${t("q.points", { points: question.points })}`;
  $("#q-prompt").textContent = question.prompt;
  $("#q-answer").textContent = "";
  const media = question.media;
  const audio = media && /\.(mp3|ogg|oga|wav|m4a)(\?|$)/i.test(media);
  fill($("#q-media"), !media ? null : audio
    ? h("audio", { src: media, controls: true, autoplay: true })
    : h("img", { src: media, alt: t("q.media") }));
  const choices = question.choices ?? (question.kind === "truefalse"
    ? [t("answer.true"), t("answer.false")] : []);
  fill($("#q-choices"), choices.map((text, i) => h("li", { class: `tile choice-${i % 6}` },
    h("span", { class: "letter", "aria-hidden": "true" }, letter(i)),
    h("span", { class: "tile-text" }, text),
    h("span", { class: "dist", "aria-hidden": "true" }, h("span", { class: "dist-bar" })),
    h("span", { class: "dist-count" }))));
  $("#q-choices").hidden = choices.length === 0;
  renderCount(answered, total);
  showView("question");
  announce(question.prompt);
}

function renderCount(answered, total) {
  $("#q-count").textContent = total === null || total === undefined ? ""
    : t("q.answered", { answered, total });
}

function renderReveal(reveal) {
  view.phase = "revealed";
  countdown.stop();
  const q = view.question;
  const tiles = [...$("#q-choices").children];
  const isTrueFalse = q?.kind === "truefalse" && !(q.choices ?? []).length;
  const right = new Set(Array.isArray(reveal.correct) && q?.kind === "multiple" ? reveal.correct
    : [isTrueFalse ? (reveal.correct === true || reveal.correct === 0 ? 0 : 1) : reveal.correct]);
  const distribution = reveal.distribution ?? [];
  const most = Math.max(1, ...distribution);
  tiles.forEach((tile, i) => {
    tile.classList.toggle("right", right.has(i));
    tile.classList.toggle("wrong", !right.has(i));
    const count = distribution[i];
    if (count !== undefined) {
      tile.classList.add("has-dist");
      tile.querySelector(".dist-bar").style.width = `${(count / most) * 100}%`;
      tile.querySelector(".dist-count").textContent = String(count);
    }
  });
  const text = Array.isArray(reveal.correct) && q?.kind === "text"
    ? t("q.accepted", { answers: reveal.correct.join(", ") })
    : t("q.correct", { answer: describeAnswer(q, reveal.correct) });
  $("#q-answer").textContent = text;
  showView("question");
}

function slide(title, body) {
  countdown.stop();
  $("#slide-title").textContent = title;
  $("#slide-body").textContent = body;
  showView("slide");
}

function renderBoard(board) {
  view.phase = "leaderboard";
  countdown.stop();
  $("#paused").hidden = true;
  const title = board.round === null || board.round === undefined ? t("screen.standings")
    : t("screen.round_standings", { round: board.round + 1 });
  $("#board-title").textContent = title;
  $("#board-foot").textContent = "";
  const list = $("#board-rows");
  const before = new Map();
  for (const row of list.children) before.set(row.dataset.id, row.getBoundingClientRect().top);
  const best = Math.max(1, ...board.top.map((row) => row[3]));
  fill(list, board.top.map(([rank, id, name, score]) => h("li", { class: "row", dataset: { id: String(id) } },
    h("span", { class: "rank" }, String(rank)),
    h("span", { class: "name" }, name),
    h("span", { class: "bar", "aria-hidden": "true" }, h("span", { class: "bar-fill" })),
    h("span", { class: "points" }, String(score)))));
  showView("board");
  // FLIP: start each row where it was, then let it slide to where it is; grow the bars.
  const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
  [...list.children].forEach((row, i) => {
    const old = before.get(row.dataset.id);
    const now = row.getBoundingClientRect().top;
    if (!still) row.animate?.(old === undefined
      ? [{ opacity: 0, transform: "translateY(1em)" }, { opacity: 1, transform: "none" }]
      : [{ transform: `translateY(${old - now}px)` }, { transform: "none" }],
    { duration: 700, delay: old === undefined ? i * 80 : 0, easing: "ease-out", fill: "backwards" });
    const fillBar = row.querySelector(".bar-fill");
    const score = board.top[i][3];
    requestAnimationFrame(() => { fillBar.style.width = `${Math.max(0, score / best) * 100}%`; });
  });
  announce(title);
}

translatePage();
countdown = new Countdown($("#q-countdown"));
$("#setup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  code = $("#setup-code").value.trim().toUpperCase();
  if (!code) return;
  history.replaceState(null, "", `?code=${encodeURIComponent(code)}`);
  connect();
});
if (code) {
  showView("slide");
  connect();
} else {
  showView("setup");
  $("#setup-code").focus();
}
