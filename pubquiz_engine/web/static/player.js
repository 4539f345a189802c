// The player's page (a phone): join, answer every question kind, see the countdown, the ack,
// the reveal and your rank; survive reloads and dropped networks with the resume token.
//
// Rules this page keeps:
// 1. The resume token, the join code and the next request id live in localStorage
//    ("pubquiz.player"): a reload resumes without asking for the name again, and request ids
//    stay unique for this participant across reconnects, reloads and tabs (an `answer` is
//    idempotent by its rid; SPEC 5: a rid with another answer would be a new answer).
// 2. A page that has no view yet (it was just loaded) resumes with a `last_seq` the server
//    cannot have, which asks for a full `state` (SPEC 13.3); a page that kept its view resumes
//    with its real `last_seq` and gets the missed events.
// 3. An answer is "received" only on its `answer_ack`. One sent before a drop is sent again with
//    the same rid once the connection is back, while its question is still open.
// 4. The joker and the wager control are offered for the next round (the lobby's round 0, or the
//    round after a round summary) only where the quiz allows them: the rounds list of the last
//    `state` (SPEC 11; kept across resumes that replay events) says whether that round exists and
//    takes a `joker` or a `wager`. After the last round nothing is offered. The wager control is
//    hidden as soon as a slide or question shows that a round has started.
// 5. Your (team's) joker round and stakes come from the state's `you` (a reload shows them, a
//    teammate's included) and are updated here on this page's own successful requests.

import { QuizConnection, retryDelay } from "./client.js";
import { errorText, t, translatePage } from "./i18n.js";
import { Float64 } from "./protocol.js";
import {
  $, Countdown, ServerClock, announce, describeAnswer, fill, h, letter, param, saved, showView,
} from "./ui.js";

const STORE_KEY = "pubquiz.player";
const FORCE_STATE = Number.MAX_SAFE_INTEGER;

let session = saved.get(STORE_KEY); // {code, token, participant, name, team, nextRid}
let connection = null;
let haveView = false;
const clock = new ServerClock();
const view = {
  phase: null, question: null, answer: null, acked: false, pending: null, score: 0, rank: null,
  round: null, mode: null,
  rounds: [], // the quiz's rounds from the last `state`: {title, questions, multiplier, wager, joker}
  jokerRound: null, // the round your (team's) joker is on, or null
  stakes: new Map(), // round -> points your (team) staked on it
  wagerRound: null, // the round the wager control is offered for, or null (hidden)
};
const MAX_STAKE = 2 ** 31 - 1; // the protocol's `amount` range
let countdown = null;

function nextRid() {
  if (!session) return 1;
  // Rids are per participant for the whole session (SPEC 5), not per page: another tab of
  // this participant may have used some since this page loaded, so continue after the
  // highest one stored for the same token.
  const stored = saved.get(STORE_KEY);
  const theirs = stored && stored.token === session.token ? stored.nextRid ?? 2 : 2;
  const rid = Math.max(session.nextRid ?? 2, theirs);
  session.nextRid = rid + 1;
  saved.set(STORE_KEY, session);
  return rid;
}

function saveSession(patch) {
  session = { ...(session ?? {}), ...patch };
  saved.set(STORE_KEY, session);
}

function forgetSession() {
  session = null;
  saved.remove(STORE_KEY);
}

// --- connection ---------------------------------------------------------------------------------

function connect(first) {
  connection?.stop();
  haveView = false;
  connection = new QuizConnection({
    identify: () => (session?.token
      ? { t: "resume", token: session.token, last_seq: haveView ? connection.lastSeq : FORCE_STATE,
        epoch: haveView ? connection.epoch : null }
      : first),
    onMessage: receive,
    onStatus: status,
    nextRid,
  });
  globalThis.pubquizConnection = connection; // for the end-to-end tests
  connection.start();
}

function status(kind, detail) {
  const line = $("#status");
  line.dataset.state = kind;
  if (kind === "online") line.textContent = t("conn.online");
  else if (kind === "connecting") line.textContent = t("conn.connecting");
  else if (kind === "offline") line.textContent = t("conn.offline");
  else if (kind === "replaced") {
    fill(line, t("conn.replaced"), " ",
      h("button", { type: "button", class: "link", onclick: () => connect(null) },
        t("conn.reconnect")));
  } else if (kind === "ended") {
    if (detail === 4000) over(t("player.kicked"), "");
    else if (detail === 4001 || view.phase === "finished") over(t("player.ended"), finalLine());
    else line.textContent = t("conn.closed");
  } else if (kind === "refused") {
    // The token or code is no good any more (kicked, ended, unknown): start over.
    forgetSession();
    if (view.phase === null) {
      showJoin(errorText(detail));
    } else {
      over(errorText(detail), finalLine());
    }
  }
}

function over(title, text) {
  forgetSession();
  countdown?.stop();
  $("#over-title").textContent = title;
  $("#over-text").textContent = text;
  $("#leave").hidden = true;
  showView("over");
}

function finalLine() {
  if (view.rank) return t("player.rank_line", { rank: view.rank, score: view.score });
  return view.phase ? t("player.total", { score: view.score }) : "";
}

// --- messages -----------------------------------------------------------------------------------

function receive(message) {
  switch (message.t) {
    case "welcome":
      saveSession({
        code: message.code, token: message.token ?? session?.token,
        participant: message.participant, name: message.name, team: message.team,
      });
      renderMe();
      showView("game");
      $("#leave").hidden = false;
      if (view.pending && view.phase === "question_open") resend();
      break;
    case "state":
      applyState(message.state);
      break;
    case "question":
      clock.sawQuestion(message);
      view.phase = "question_open";
      view.question = message;
      view.answer = null;
      view.acked = false;
      view.pending = null;
      renderQuestion();
      countdown.run(message.time_limit_ms, message.time_limit_ms);
      announce(message.prompt);
      break;
    case "closed":
      if (view.question?.q === message.q) closeQuestion();
      break;
    case "paused":
      view.phase = "paused";
      countdown.hold(message.remaining_ms, view.question?.time_limit_ms ?? message.remaining_ms);
      renderControlsEnabled();
      feedback(t("player.paused"));
      break;
    case "unpaused":
    case "extended":
      view.phase = "question_open";
      countdown.run(clock.remaining(message.deadline_ms), view.question?.time_limit_ms ?? 0);
      renderControlsEnabled();
      renderFeedback();
      break;
    case "reveal":
      view.phase = "revealed";
      renderReveal(message);
      break;
    case "result":
      view.score = message.score;
      renderMe();
      renderWager();
      // Every player gets a result at a reveal; `answered: false` says it (its team) gave none.
      if (message.answered === false) feedback(t("player.no_answer"), "bad");
      else {
        feedback(message.correct ? t("player.correct", { points: message.points })
          : t("player.wrong"), message.correct ? "good" : "bad");
      }
      announce($("#feedback").textContent);
      break;
    case "leaderboard":
      view.phase = "leaderboard";
      renderBoard(message, t("screen.standings"));
      break;
    case "you":
      view.rank = message.rank;
      view.score = message.score;
      renderMe();
      renderWager();
      // A resume also brings a `you`: mid-question the answer's status matters more.
      if (["leaderboard", "round_summary", "finished"].includes(view.phase)) {
        feedback(message.rank ? t("player.rank_line", { rank: message.rank, score: message.score })
          : t("player.unranked", { score: message.score }));
        announce($("#feedback").textContent);
      }
      break;
    case "round_summary":
      view.phase = "round_summary";
      view.round = message.round;
      stage(t("screen.round_over", { round: message.round + 1, title: message.title }), "");
      offerNext(message.round + 1);
      break;
    case "slide":
      view.phase = "slide";
      stage(message.title, message.body);
      hideWager();
      break;
    case "ended":
      view.phase = "finished";
      countdown.stop();
      hideWager();
      $("#leave").hidden = true;
      fill($("#controls"));
      $("#phase-title").textContent = t("phase.finished");
      $("#prompt").textContent = t("player.finished");
      fill($("#extra"));
      break;
    case "error":
      feedback(errorText(message), "bad");
      break;
    default:
      break; // events for other roles never reach a player; unknown ones are ignored
  }
}

function applyState(state) {
  haveView = true;
  view.phase = state.phase;
  view.mode = state.mode;
  view.round = state.round;
  if (Array.isArray(state.rounds)) view.rounds = state.rounds;
  const you = state.you ?? {};
  view.score = you.score ?? 0;
  view.rank = you.rank ?? null;
  // The server's word replaces what this page remembered (a teammate may have played or staked).
  view.jokerRound = you.joker ?? null;
  view.stakes = new Map((you.stakes ?? []).map(([round, amount]) => [round, amount]));
  renderMe();
  fill($("#board"));
  fill($("#extra"));
  hideWager();
  const question = state.question;
  if (question && ["question_open", "paused", "question_closed", "revealed"].includes(state.phase)) {
    const changed = view.question?.q !== question.q;
    view.question = question;
    if (changed) view.pending = null;
    view.answer = you.answer ?? (changed ? null : view.answer);
    view.acked = you.answer !== null && you.answer !== undefined;
    renderQuestion();
    if (state.phase === "question_open") {
      countdown.run(clock.remaining(question.deadline_ms), question.time_limit_ms);
    } else if (state.phase === "paused") {
      countdown.hold(question.remaining_ms ?? 0, question.time_limit_ms);
      feedback(t("player.paused"));
    } else {
      closeQuestion();
    }
    if (state.phase === "revealed" && state.reveal) renderReveal(state.reveal);
  } else if (state.phase === "slide" && state.slide) {
    stage(state.slide.title, state.slide.body);
  } else if (state.phase === "lobby") {
    stage(state.title, t("player.lobby"));
    offerNext(0);
  } else if (state.phase === "finished") {
    stage(t("phase.finished"), t("player.finished"));
  } else {
    stage(state.title, "");
  }
  if (state.leaderboard && state.phase !== "finished") {
    renderBoard(state.leaderboard, t("screen.standings"));
  } else if (state.leaderboard) {
    renderBoard(state.leaderboard, t("screen.final"));
  }
  if (["leaderboard", "round_summary", "finished"].includes(state.phase)) {
    feedback(view.rank ? t("player.rank_line", { rank: view.rank, score: view.score })
      : t("player.unranked", { score: view.score }));
  }
  // Between rounds (a summary, or the standings shown after it) the next round is offered; the
  // server says which round the next step starts (`next_round`, nil inside a round).
  if (["round_summary", "leaderboard"].includes(state.phase)) {
    const next = state.next_round ?? (state.phase === "round_summary" && state.round !== null
      ? state.round + 1 : null);
    if (next !== null) offerNext(next);
  }
}

// --- rendering ----------------------------------------------------------------------------------

function renderMe() {
  const who = session?.team ? `${session.name} · ${session.team}` : session?.name ?? "";
  $("#me").textContent = who;
  const parts = [`${t("player.score")}: ${view.score}`];
  if (view.rank) parts.push(`${t("player.rank")}: ${view.rank}`);
  $("#score").textContent = parts.join(" · ");
}

function feedback(text, tone = "") {
  const el = $("#feedback");
  el.textContent = text;
  el.dataset.tone = tone;
}

function stage(title, body) {
  countdown.stop();
  $("#phase-title").textContent = "";
  $("#prompt").textContent = title;
  fill($("#media"));
  fill($("#controls"), body ? h("p", { class: "lead" }, body) : null);
  fill($("#board"));
  fill($("#extra"));
  feedback("");
}

/** "Round 2: Double or nothing, x2" (the multiplier only when it is not 1). */
function roundLabel(round) {
  const info = view.rounds[round];
  const number = round + 1;
  const label = info?.title ? t("round.label", { number, title: info.title })
    : t("round.label.untitled", { number });
  const multiplier = info?.multiplier ?? 1;
  return multiplier === 1 ? label : t("round.label.times", { label, multiplier });
}

/** Offer the joker and the wager control for `round`, the next one, where the quiz allows. */
function offerNext(round) {
  offerJoker(round);
  offerWager(round);
}

function jokerLine() {
  return h("p", { class: "help" }, t("player.joker.played", { round: view.jokerRound + 1 }));
}

function offerJoker(round) {
  if (view.jokerRound !== null) {
    fill($("#extra"), jokerLine());
    return;
  }
  if (!view.rounds[round]?.joker) { // no such round (the last one is over), or no joker on it
    fill($("#extra"));
    return;
  }
  const button = h("button", {
    type: "button", class: "secondary",
    onclick: async () => {
      button.disabled = true;
      try {
        await connection.request({ t: "joker", round });
        view.jokerRound = round;
        offerJoker(round);
      } catch (error) {
        button.disabled = false;
        feedback(errorText(error), "bad");
      }
    },
  }, t("player.joker", { round: roundLabel(round) }));
  fill($("#extra"), button);
}

// --- the wager ----------------------------------------------------------------------------------

function stakeOf(round) {
  return view.stakes.get(round) ?? 0;
}

function keepStake(round, amount) {
  if (amount) view.stakes.set(round, amount);
  else view.stakes.delete(round);
}

/** The line for a stake; `placed` when this page just placed it (else a teammate may have). */
function stakeLine(round, amount, placed) {
  if (!amount) return t("player.wager.removed", { round: round + 1 });
  if (!session?.team) return t("player.wager.placed", { amount, round: round + 1 });
  return t(placed ? "player.wager.placed_team" : "player.wager.team_stake",
    { amount, round: round + 1, team: session.team });
}

function wagerStatus(text, tone = "") {
  const el = $("#wager-status");
  el.textContent = text;
  el.dataset.tone = tone;
  renderWager();
}

/** Offer the wager control for `round` if it is a wager round (it stays until a round starts). */
function offerWager(round) {
  if (!view.rounds[round]?.wager) { // no such round (the last one is over), or no wagers on it
    hideWager();
    return;
  }
  const fresh = view.wagerRound !== round;
  view.wagerRound = round;
  const stake = stakeOf(round);
  if (fresh) {
    $("#wager-amount").value = stake ? String(stake) : "";
    $("#wager-box").open = stake > 0;
  }
  const status = $("#wager-status");
  status.textContent = stake ? stakeLine(round, stake, false) : "";
  status.dataset.tone = stake ? "good" : "";
  renderWager();
}

function hideWager() {
  view.wagerRound = null;
  renderWager();
}

function renderWager() {
  const section = $("#wager");
  const round = view.wagerRound;
  if (round === null) {
    section.hidden = true;
    return;
  }
  const most = Math.max(0, view.score ?? 0);
  const said = $("#wager-status").textContent !== "";
  // Nothing to stake and nothing to take back: no control (a lobby has no points yet).
  section.hidden = !said && most === 0 && !stakeOf(round);
  $("#wager-title").textContent = t("player.wager.title", { round: roundLabel(round) });
  $("#wager-help").textContent = session?.team
    ? t("player.wager.help_team", { round: round + 1, max: most, team: session.team })
    : t("player.wager.help", { round: round + 1, max: most });
  $("#wager-amount").max = String(most);
}

async function placeWager(event) {
  event.preventDefault();
  const round = view.wagerRound;
  if (round === null) return;
  const text = $("#wager-amount").value.trim();
  const most = Math.max(0, view.score ?? 0);
  // The codec refuses what is no whole number in 0..2^31-1; more than the score goes to the
  // server, whose refusal says what the game allows.
  if (!/^\d{1,10}$/.test(text) || Number(text) > MAX_STAKE) {
    wagerStatus(t("player.wager.whole", { max: most }), "bad");
    return;
  }
  const amount = Number(text);
  const button = $("#wager-submit");
  button.disabled = true;
  try {
    await connection.request({ t: "wager", round, amount });
    keepStake(round, amount);
    if (view.wagerRound === round) wagerStatus(stakeLine(round, amount, true), "good");
  } catch (error) {
    if (view.wagerRound !== round) return;
    if (error.code === "disconnected") {
      wagerStatus(t("player.wager.offline"), "bad");
    } else {
      // invalid_wager has no translation on purpose: the server's message names the limit
      // ("stake a whole number from 0 to 7") or the reason (the round has started); the other
      // refusals (not_a_wager_round, unknown_round) show their translation.
      wagerStatus(t("player.wager.refused", { reason: errorText(error) }), "bad");
    }
  } finally {
    button.disabled = false;
  }
  announce($("#wager-status").textContent);
}

function renderQuestion() {
  const q = view.question;
  fill($("#board"));
  fill($("#extra"), view.jokerRound === q.round ? jokerLine() : null);
  hideWager();
  $("#phase-title").textContent = `${t("q.heading", { round: q.round + 1, number: q.number })} · ${t(`kind.${q.kind}`)}`;
  $("#prompt").textContent = q.prompt;
  fill($("#media"), q.media ? h("img", { src: q.media, alt: t("q.media") }) : null);
  fill($("#controls"), answerControls(q));
  renderControlsEnabled();
  renderFeedback();
}

function answerControls(q) {
  const choices = q.choices ?? [];
  const chosen = view.answer;
  switch (q.kind) {
    case "single":
      return h("div", { class: "choices", role: "group", "aria-label": t("kind.single") },
        choices.map((text, i) => choiceButton(i, text, chosen === i, () => send(i))));
    case "truefalse": {
      const options = choices.length === 2 ? [[0, choices[0]], [1, choices[1]]]
        : [[true, t("answer.true")], [false, t("answer.false")]];
      return h("div", { class: "choices two", role: "group", "aria-label": t("kind.truefalse") },
        options.map(([value, text], i) => choiceButton(i, text, chosen === value, () => send(value))));
    }
    case "multiple": {
      const picked = new Set(Array.isArray(chosen) ? chosen : []);
      const group = h("div", { class: "choices", role: "group", "aria-label": t("player.pick_all") },
        choices.map((text, i) => {
          const button = choiceButton(i, text, picked.has(i), () => {
            if (picked.has(i)) picked.delete(i);
            else picked.add(i);
            button.setAttribute("aria-pressed", String(picked.has(i)));
          });
          return button;
        }));
      return [h("p", { class: "help" }, t("player.pick_all")), group,
        sendButton(() => send([...picked].sort((a, b) => a - b)))];
    }
    case "ordering": {
      const order = Array.isArray(chosen) && chosen.length === choices.length ? [...chosen]
        : choices.map((_, i) => i);
      const list = h("ol", { class: "ordering" });
      const draw = (focus = null) => {
        fill(list, order.map((item, pos) => {
          const up = h("button", {
            type: "button", class: "move", disabled: pos === 0,
            "aria-label": t("player.move_up", { item: choices[item] }),
            onclick: () => { [order[pos - 1], order[pos]] = [order[pos], order[pos - 1]]; draw([pos - 1, "up"]); },
          }, "▲");
          const down = h("button", {
            type: "button", class: "move", disabled: pos === order.length - 1,
            "aria-label": t("player.move_down", { item: choices[item] }),
            onclick: () => { [order[pos + 1], order[pos]] = [order[pos], order[pos + 1]]; draw([pos + 1, "down"]); },
          }, "▼");
          return h("li", { class: "order-item" }, h("span", { class: "order-text" }, choices[item]), up, down);
        }));
        renderControlsEnabled();
        if (focus) {
          const [pos, which] = focus;
          const item = list.children[pos];
          const target = item?.querySelector(which === "up" ? ".move:first-of-type" : ".move:last-of-type");
          (target && !target.disabled ? target : item?.querySelector(".move:not([disabled])"))?.focus();
        }
      };
      draw();
      return [h("p", { class: "help" }, t("player.order_hint")), list, sendButton(() => send([...order]))];
    }
    case "text":
    case "numeric": {
      const numeric = q.kind === "numeric";
      const input = h("input", {
        id: "answer-input", class: "answer-input", autocomplete: "off", maxlength: 1024,
        inputmode: numeric ? "decimal" : null, enterkeyhint: "send",
        value: chosen === null || chosen === undefined ? "" : String(chosen),
      });
      const form = h("form", {
        class: "stack", novalidate: true,
        onsubmit: (event) => {
          event.preventDefault();
          const text = input.value.trim();
          if (!text) return;
          if (!numeric) {
            send(text);
            return;
          }
          const number = Number(text.replace(",", "."));
          if (!Number.isFinite(number)) {
            feedback(t("error.invalid_answer"), "bad");
            return;
          }
          send(Number.isInteger(number) && !/[.,eE]/.test(text) ? number : new Float64(number));
        },
      }, h("label", { for: "answer-input" }, numeric ? t("player.number_label") : t("player.text_label")),
      input, h("button", { type: "submit", class: "big primary" }, t("player.send")));
      return form;
    }
    default:
      return h("p", {}, q.kind);
  }
}

function choiceButton(i, text, pressed, onclick) {
  return h("button", {
    type: "button", class: `choice choice-${i % 6}`, "aria-pressed": String(pressed), onclick,
  }, h("span", { class: "letter", "aria-hidden": "true" }, letter(i)), h("span", {}, text));
}

function sendButton(onclick) {
  return h("button", { type: "button", class: "big primary send", onclick }, t("player.send"));
}

function renderControlsEnabled() {
  const open = view.phase === "question_open";
  for (const el of $("#controls").querySelectorAll("button, input")) {
    if (el.classList.contains("move") && open) continue; // drawn with their own state
    el.disabled = !open;
  }
}

function renderFeedback() {
  if (view.pending && !view.acked) feedback(t("player.sending"));
  else if (view.acked) {
    feedback(`${t("player.received")} ✓ ${t("player.your_answer", { answer: describeAnswer(view.question, view.answer) })}`, "good");
  } else feedback(view.phase === "question_open" ? t(`kind.${view.question?.kind}`) : "");
}

function markChosen(value) {
  const q = view.question;
  if (!q || !["single", "truefalse"].includes(q.kind)) return;
  const buttons = $("#controls").querySelectorAll(".choice");
  const options = q.kind === "truefalse" && (q.choices ?? []).length !== 2 ? [true, false] : null;
  buttons.forEach((button, i) => {
    button.setAttribute("aria-pressed", String((options ? options[i] : i) === value));
  });
}

async function send(value) {
  if (view.phase !== "question_open") return;
  const q = view.question.q;
  const plain = value instanceof Float64 ? value.value : value;
  view.answer = plain;
  view.acked = false;
  markChosen(plain);
  const rid = nextRid();
  view.pending = { rid, q, value };
  renderFeedback();
  await deliver(view.pending);
}

async function deliver(pending) {
  try {
    await connection.request({ t: "answer", q: pending.q, value: pending.value }, { rid: pending.rid });
    if (view.pending !== pending) return; // a newer answer replaced this one
    view.pending = null;
    view.acked = true;
    renderFeedback();
    announce(t("player.received"));
  } catch (error) {
    if (view.pending !== pending) return;
    if (error.code === "disconnected") {
      feedback(t("error.disconnected"));
      return; // resent with the same rid after the resume (see `resend`)
    }
    if (error.retryable) {
      feedback(errorText(error));
      setTimeout(() => { if (view.pending === pending) deliver(pending); },
        retryDelay(error, 1000));
      return;
    }
    view.pending = null;
    view.acked = false;
    feedback(errorText(error), "bad");
  }
}

function resend() {
  const pending = view.pending;
  if (pending && view.question?.q === pending.q) deliver(pending);
}

function closeQuestion() {
  view.phase = "question_closed";
  view.pending = null;
  countdown.stop();
  renderControlsEnabled();
  const answer = describeAnswer(view.question, view.answer);
  feedback(view.answer === null || view.answer === undefined ? t("player.no_answer")
    : t("player.your_answer", { answer }));
  $("#phase-title").textContent = t("player.closed");
}

function renderReveal(reveal) {
  countdown.stop();
  renderControlsEnabled();
  const q = view.question;
  const correct = Array.isArray(reveal.correct) && q?.kind === "text"
    ? t("q.accepted", { answers: reveal.correct.join(", ") })
    : t("q.correct", { answer: describeAnswer(q, reveal.correct) });
  $("#phase-title").textContent = correct;
  const right = new Set(Array.isArray(reveal.correct) && q?.kind === "multiple" ? reveal.correct : [reveal.correct]);
  $("#controls").querySelectorAll(".choice").forEach((button, i) => {
    const value = q.kind === "truefalse" && (q.choices ?? []).length !== 2 ? i === 0 : i;
    button.classList.toggle("right", right.has(value));
  });
}

function renderBoard(board, title) {
  countdown.stop();
  fill($("#board"), h("h2", {}, title), h("ol", { class: "standings" },
    board.top.map(([rank, , name, score]) => h("li", { value: rank },
      h("span", { class: "name" }, name), h("span", { class: "points" }, String(score))))));
}

// --- start --------------------------------------------------------------------------------------

function showJoin(error = "") {
  showView("join");
  $("#join-error").textContent = error;
  $("#join-submit").disabled = false;
  $("#join-submit").textContent = t("join.submit");
  const code = param("code");
  if (code) $("#join-code").value = code.toUpperCase();
  const last = saved.get("pubquiz.player.last") ?? {};
  if (last.name && !$("#join-name").value) $("#join-name").value = last.name;
  if (last.team && !$("#join-team").value) $("#join-team").value = last.team;
  ($("#join-code").value ? $("#join-name") : $("#join-code")).focus();
}

function join(event) {
  event.preventDefault();
  const code = $("#join-code").value.trim().toUpperCase();
  const name = $("#join-name").value.trim();
  const team = $("#join-team").value.trim() || null;
  if (!code || !name) {
    $("#join-error").textContent = !code ? t("join.code") : t("join.name");
    return;
  }
  saved.set("pubquiz.player.last", { name, team });
  $("#join-submit").disabled = true;
  $("#join-submit").textContent = t("join.joining");
  forgetSession();
  connect({ t: "join", code, name, team });
}

function leave() {
  if (!confirm(t("player.leave.confirm"))) return;
  connection.request({ t: "leave" }).catch(() => {});
  over(t("player.left"), finalLine());
  connection.stop();
}

translatePage();
countdown = new Countdown($("#countdown"), {
  onZero: () => { if (view.phase === "question_open") feedback(t("q.time_up")); },
});
$("#join-form").addEventListener("submit", join);
$("#wager-form").addEventListener("submit", placeWager);
$("#leave").addEventListener("click", leave);
const wanted = param("code")?.toUpperCase();
if (session?.token && (!wanted || wanted === session.code)) {
  showView("game");
  renderMe();
  connect(null);
} else {
  showJoin();
}
