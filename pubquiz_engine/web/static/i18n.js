// Every string the pages show, in one place, per language.
//
// To translate: copy the "en" table under a new language tag ("de", "fr", ...) and translate the
// values; keep the {placeholders}. The page language is the first of the browser's languages
// that has a table (or `?lang=xx` in the URL), else English. Keys missing from a table fall
// back to English, so a partial translation still works. Error codes are the protocol's stable
// codes (SPEC section 12): a code without an entry shows the server's own message.
//
// HTML marks translatable text with data-i18n="key" (text), data-i18n-label="key" (aria-label),
// data-i18n-placeholder="key" and data-i18n-title="key"; `translatePage()` fills them in.

export const STRINGS = {
  en: {
    "app.name": "Pub quiz",
    "index.title": "Pub quiz",
    "index.lead": "Three screens for a live quiz night. Open each on its own device.",
    "index.play": "Play",
    "index.play.help": "On your phone: join with the code on the big screen.",
    "index.host": "Host",
    "index.host.help": "For the quiz master: create a session and run the quiz.",
    "index.screen": "Big screen",
    "index.screen.help": "For the projector: join code, questions, countdown and standings.",
    "index.nav": "Pages",

    "conn.connecting": "Connecting…",
    "conn.online": "Connected",
    "conn.offline": "Connection lost: reconnecting…",
    "conn.replaced": "This quiz is open in another tab or device.",
    "conn.reconnect": "Use it here",
    "conn.closed": "Disconnected.",

    "join.title": "Join the quiz",
    "join.code": "Join code",
    "join.name": "Your name",
    "join.team": "Team name",
    "join.team.help": "Leave empty if you play alone.",
    "join.submit": "Join",
    "join.joining": "Joining…",

    "player.team": "Team {team}",
    "player.score": "Score",
    "player.rank": "Rank",
    "player.lobby": "You are in! Waiting for the quiz master to start.",
    "player.send": "Send answer",
    "player.sending": "Sending…",
    "player.received": "Answer received",
    "player.change": "You can change your answer until time is up.",
    "player.your_answer": "Your answer: {answer}",
    "player.no_answer": "No answer given.",
    "player.closed": "Time is up! Waiting for the answer…",
    "player.paused": "Paused",
    "player.correct": "Right! +{points} points",
    "player.wrong": "Not this time.",
    "player.no_answer": "No answer this time: 0 points.",
    "player.points": "{points} points",
    "player.total": "Your score: {score}",
    "player.rank_line": "You are number {rank} with {score} points",
    "player.unranked": "Not ranked yet ({score} points)",
    "player.finished": "That's the quiz. Thanks for playing!",
    "player.kicked": "The quiz master removed you from this quiz.",
    "player.ended": "This quiz is over.",
    "player.leave": "Leave the quiz",
    "player.leave.confirm": "Leave for good? You cannot come back with this name.",
    "player.left": "You left the quiz.",
    "player.joker": "Play our joker on {round}",
    "player.joker.played": "Joker played on round {round}: double points!",
    "player.wager.title": "Wager on {round}",
    "player.wager.help": "Round {round} is a wager round: stake 0 to {max} points on it. You win them if all your answers in the round are right, and lose them if not. You can change your stake until the round starts; 0 takes it back.",
    "player.wager.help_team": "Round {round} is a wager round: stake 0 to {max} points on it for team {team}. Your stake is your team's, and a teammate's stake replaces it. You win the points if all your team's answers in the round are right, and lose them if not. You can change the stake until the round starts; 0 takes it back.",
    "player.wager.amount": "Points to stake",
    "player.wager.place": "Place stake",
    "player.wager.placed": "You staked {amount} on round {round}.",
    "player.wager.placed_team": "You staked {amount} on round {round} for team {team}.",
    "player.wager.team_stake": "Team {team} has {amount} staked on round {round}.",
    "player.wager.removed": "No stake on round {round}.",
    "player.wager.refused": "Stake not accepted: {reason}",
    "player.wager.whole": "Enter a whole number of points from 0 to {max}.",
    "player.wager.offline": "Not connected: place your stake again once the connection is back.",
    "player.move_up": "Move {item} up",
    "player.move_down": "Move {item} down",
    "player.order_hint": "Put the items in order, then send.",
    "player.pick_all": "Pick all that apply, then send.",
    "player.text_label": "Your answer",
    "player.number_label": "Your number",
    "player.new_quiz": "Join another quiz",

    "kind.single": "Pick one",
    "kind.multiple": "Pick all that apply",
    "kind.truefalse": "True or false?",
    "kind.text": "Type your answer",
    "kind.numeric": "Give a number",
    "kind.ordering": "Put in order",
    "answer.true": "True",
    "answer.false": "False",

    "q.heading": "Round {round}, question {number}",
    "round.label": "Round {number}: {title}",
    "round.label.untitled": "Round {number}",
    "round.label.times": "{label}, x{multiplier}",
    "q.points": "{points} points",
    "q.seconds": "{seconds} s",
    "q.countdown": "{seconds} seconds left",
    "q.time_up": "Time is up",
    "q.answered": "{answered} of {total} answered",
    "q.correct": "Answer: {answer}",
    "q.accepted": "Accepted: {answers}",
    "q.media": "Picture for this question",

    "screen.title": "Big screen",
    "screen.code.prompt": "Join code to show",
    "screen.show": "Show",
    "screen.join_at": "Join at",
    "screen.code": "Code",
    "screen.players": "{count} players",
    "screen.names": "Players who joined",
    "screen.waiting": "Waiting for players…",
    "screen.standings": "Standings",
    "screen.round_standings": "Standings after round {round}",
    "screen.round_over": "End of round {round}: {title}",
    "screen.final": "Final standings",
    "screen.thanks": "Thanks for playing!",
    "screen.paused": "Paused",
    "screen.qr": "QR code to join: {url}",

    "host.title": "Host console",
    "host.create": "Create a session",
    "host.key": "Operator key",
    "host.quiz": "Quiz",
    "host.quiz.sample": "The sample quiz",
    "host.quiz.path": "A quiz file on the server",
    "host.quiz.path_label": "File name in the quiz directory",
    "host.quiz.upload": "Upload a quiz (JSON)",
    "host.quiz.upload_label": "Quiz file (.json)",
    "host.quiz.upload_help": "JSON quizzes only. For a TOML quiz, put the file in the engine's quiz directory (--quiz-dir) and pick “A quiz file on the server”; check it first with: pubquiz-engine quiz validate quiz.toml. Quizzes from Kahoot, Open Trivia DB, GIFT or CSV: pubquiz-engine quiz import FILE -o quiz.toml, then the same.",
    "host.mode": "Mode",
    "host.mode.team": "Teams",
    "host.mode.solo": "Solo",
    "host.option.close_all": "Close a question when everyone has answered",
    "host.create.submit": "Create and open",
    "host.takeover": "Take over a session",
    "host.takeover.code": "Join code",
    "host.takeover.token": "Host token",
    "host.takeover.submit": "Take over",
    "host.session": "Session {code}",
    "host.phase": "Phase: {phase}",
    "host.links": "Links",
    "host.player_link": "Players join at",
    "host.screen_link": "Big screen",
    "host.token": "Host token (keep it secret)",
    "host.token.show": "Show host token",
    "host.token.hide": "Hide host token",
    "host.copy": "Copy",
    "host.copied": "Copied",
    "host.controls": "Quiz controls",
    "host.start": "Start",
    "host.next": "Next",
    "host.close": "Close question",
    "host.extend": "+15 s",
    "host.extend.label": "Give 15 more seconds",
    "host.reveal": "Reveal",
    "host.skip": "Skip",
    "host.pause": "Pause",
    "host.unpause": "Resume",
    "host.leaderboard": "Standings",
    "host.round_leaderboard": "Round standings",
    "host.end": "End quiz",
    "host.end.confirm": "End the quiz now for everyone?",
    "host.participants": "Participants",
    "host.col.name": "Name",
    "host.col.team": "Team",
    "host.col.score": "Score",
    "host.col.status": "Status",
    "host.col.answered": "Answered",
    "host.col.actions": "Actions",
    "host.online": "online",
    "host.offline": "offline",
    "host.kicked": "removed",
    "host.kick": "Remove",
    "host.kick.label": "Remove {name}",
    "host.kick.confirm": "Remove {name} from the quiz?",
    "host.adjust": "Adjust",
    "host.adjust.label": "Adjust the score of {name}",
    "host.adjust.prompt": "Points to add to {name} (negative to remove):",
    "host.adjust.reason": "Corrected by the quiz master",
    "host.no_participants": "Nobody has joined yet.",
    "host.marking": "Mark answers",
    "host.marking.load": "Show the answers to question {number}",
    "host.marking.none": "No answers to mark.",
    "host.mark.right": "Right",
    "host.mark.wrong": "Wrong",
    "host.mark.label_right": "Mark the answer of {name} right",
    "host.mark.label_wrong": "Mark the answer of {name} wrong",
    "host.results": "Results",
    "host.download.csv": "Download CSV",
    "host.download.json": "Download JSON",
    "host.log": "What happened",
    "host.current": "Current question",
    "host.none": "No question open.",
    "host.forget": "Leave this session",
    "host.rounds": "Rounds",
    "host.rounds.summary": "{rounds} rounds, {questions} questions",
    "host.rounds.col.number": "Round",
    "host.rounds.col.title": "Title",
    "host.rounds.col.questions": "Questions",
    "host.rounds.col.multiplier": "Points",
    "host.rounds.col.wager": "Wagers",
    "host.rounds.col.joker": "Joker",
    "host.rounds.multiplier": "x{multiplier}",
    "host.rounds.yes": "yes",
    "host.rounds.no": "no",
    "host.rounds.untitled": "(no title)",
    "host.generate": "Generate a round",
    "host.generate.help": "Asks the engine's model server for new questions and adds them as the last round. Only before the quiz starts.",
    "host.generate.topic": "Topic",
    "host.generate.count": "Number of questions (1 to 50)",
    "host.generate.kind": "Kind of question",
    "host.generate.kind.choice": "Multiple choice (one right answer)",
    "host.generate.kind.text": "Free text",
    "host.generate.kind.numeric": "A number",
    "host.generate.title": "Round title (optional; the topic if empty)",
    "host.generate.key": "Operator key",
    "host.generate.submit": "Generate",
    "host.generate.cancel": "Stop waiting",
    "host.generate.asking": "Asking the model… this can take a minute or more.",
    "host.generate.elapsed": "({seconds} s)",
    "host.generate.done": "Round {round} ({title}) added with {added} questions.",
    "host.generate.dropped": "Left out {dropped} of the model's questions (invalid, or already in the quiz).",
    "host.generate.unavailable": "The model could not write the questions: {message}",
    "host.generate.cancelled": "Stopped waiting. The engine may still add the round: watch the rounds list.",
    "host.generate.lost": "The connection closed before the engine answered: check the rounds list to see whether the round was added.",
    "host.generate.topic_empty": "Give a topic.",
    "host.generate.count_range": "The number of questions must be a whole number from 1 to 50.",

    "log.joined": "{name} joined",
    "log.left": "{name} left",
    "log.kicked": "{name} was removed",
    "log.adjusted": "{name}: {delta} points ({reason})",
    "log.question": "Question {number} opened",
    "log.closed": "Question closed",
    "log.revealed": "Answer revealed",
    "log.ended": "The quiz ended ({reason})",
    "log.generated": "Round {round} generated: {added} questions",
    "log.generate_failed": "No round generated: {reason}",

    "phase.lobby": "lobby",
    "phase.slide": "slide",
    "phase.question_open": "question open",
    "phase.paused": "paused",
    "phase.question_closed": "question closed",
    "phase.revealed": "answer revealed",
    "phase.leaderboard": "standings",
    "phase.round_summary": "round over",
    "phase.finished": "finished",

    "error.bad_code": "No quiz with this code is running.",
    "error.bad_token": "That token is not valid for this session.",
    "error.bad_key": "Wrong operator key.",
    "error.name_taken": "Someone already uses that name. Pick another.",
    "error.invalid_name": "Please pick another name.",
    "error.session_full": "This quiz is full.",
    "error.team_full": "This team is full: join or create another.",
    "error.session_ended": "This quiz is over.",
    "error.kicked": "The quiz master removed you from this quiz.",
    "error.question_closed": "Too late: the question closed.",
    "error.not_current_question": "That question is no longer open.",
    "error.wrong_phase": "Not possible right now.",
    "error.invalid_answer": "That answer does not fit this question.",
    "error.rate_limited": "Slow down a little and try again.",
    "error.busy": "The server is busy: trying again…",
    "error.joker_used": "Your joker is already played.",
    "error.joker_too_late": "Too late for a joker on this round.",
    "error.not_a_wager_round": "That round takes no wagers.",
    "error.unknown_round": "There is no such round.",
    "error.limit_exceeded": "That is too long.",
    "error.disconnected": "Not connected: trying again…",
    "error.forbidden": "Not allowed.",
    "error.results": "Could not download the results ({status}).",
    "error.quiz_file": "That file is not a JSON quiz.",
  },
};

function pickLanguage() {
  const wanted = [];
  const param = new URLSearchParams(globalThis.location?.search ?? "").get("lang");
  if (param) wanted.push(param);
  for (const tag of globalThis.navigator?.languages ?? []) wanted.push(tag, tag.split("-")[0]);
  return wanted.find((tag) => Object.hasOwn(STRINGS, tag)) ?? "en";
}

export const LANGUAGE = pickLanguage();

/** The string for `key` with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = STRINGS[LANGUAGE][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole);
}

/** Whether a string exists (used for optional keys such as error codes). */
export function has(key) {
  return Object.hasOwn(STRINGS[LANGUAGE], key) || Object.hasOwn(STRINGS.en, key);
}

/** Fill every data-i18n* attribute under `root` and set the document language. */
export function translatePage(root = document) {
  document.documentElement.lang = LANGUAGE;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    el.setAttribute("title", t(el.dataset.i18nTitle));
  }
}

/** A user-facing text for a protocol error (`{code, message}`). */
export function errorText(error) {
  const key = `error.${error.code}`;
  return has(key) ? t(key) : error.message || String(error.code);
}
