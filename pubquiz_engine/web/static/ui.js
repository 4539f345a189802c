// Small DOM helpers shared by the three pages: building elements, the countdown, the server
// clock offset, describing answers, and saved state.
//
// Rules this module keeps:
// 1. Text from the network (names, prompts, choices) only ever goes into `textContent` or an
//    attribute value: never into innerHTML. `h()` is the one way pages build elements.
// 2. Times: the countdown runs on the page's monotonic clock from the moment a question
//    arrived (SPEC: clients count down from `time_limit_ms` rather than trust their clock
//    against `deadline_ms`). Later deadlines (`extended`, `unpaused`, a `state` after a reload)
//    are turned into local times with the offset measured on the last `question`.

import { t } from "./i18n.js";

/** `h("button", {class: "big", onclick: f, "aria-label": "..."}, "text", child, ...)`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || key === "checked" || key === "disabled") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(child instanceof Node ? child : String(child));
    }
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Show exactly one of the `[data-view]` sections inside `root`. */
export function showView(name, root = document) {
  for (const section of root.querySelectorAll("[data-view]")) {
    section.hidden = section.dataset.view !== name;
  }
}

/** Choice letters: A, B, C, ... */
export const letter = (index) => String.fromCharCode(65 + (index % 26));

/** Server time minus page time, measured when a question arrives. */
export class ServerClock {
  constructor() {
    this.offset = 0;
  }

  /** A `question` event just arrived: its deadline is `time_limit_ms` from now. */
  sawQuestion(question) {
    this.offset = question.deadline_ms - (Date.now() + question.time_limit_ms);
  }

  /** Milliseconds until a server deadline, by this page's clock. */
  remaining(deadlineMs) {
    return Math.max(0, deadlineMs - this.offset - Date.now());
  }
}

/**
 * A countdown: a bar and a number of seconds, inside `el`. `run(remainingMs, totalMs)` starts
 * it; `hold(remainingMs, totalMs)` shows it stopped (paused); `stop()` empties it.
 * `onZero` runs once when it reaches zero.
 */
export class Countdown {
  constructor(el, { onZero = () => {} } = {}) {
    this.el = el;
    this.onZero = onZero;
    this.timer = null;
    this.bar = h("div", { class: "countdown-bar" });
    this.number = h("span", { class: "countdown-number" });
    this.el.replaceChildren(
      h("div", { class: "countdown-track", "aria-hidden": "true" }, this.bar), this.number);
    this.el.setAttribute("role", "timer");
    this.el.hidden = true;
  }

  run(remainingMs, totalMs) {
    clearInterval(this.timer);
    const end = performance.now() + remainingMs;
    this.el.hidden = false;
    this.el.classList.remove("held");
    const tick = () => {
      const left = Math.max(0, end - performance.now());
      this.render(left, totalMs);
      if (left <= 0) {
        clearInterval(this.timer);
        this.onZero();
      }
    };
    tick();
    this.timer = setInterval(tick, 200);
  }

  hold(remainingMs, totalMs) {
    clearInterval(this.timer);
    this.el.hidden = false;
    this.el.classList.add("held");
    this.render(remainingMs, totalMs);
  }

  render(leftMs, totalMs) {
    const seconds = Math.ceil(leftMs / 1000);
    const fraction = totalMs > 0 ? Math.min(1, leftMs / totalMs) : 0;
    this.bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    this.el.classList.toggle("urgent", seconds <= 5);
    const text = t("q.seconds", { seconds });
    if (this.number.textContent !== text) {
      this.number.textContent = text;
      this.el.setAttribute("aria-label", t("q.countdown", { seconds }));
    }
  }

  stop() {
    clearInterval(this.timer);
    this.el.hidden = true;
  }
}

/** A readable form of an answer value (or of `reveal.correct`) for `question`. */
export function describeAnswer(question, value) {
  if (value === null || value === undefined) return "";
  const choices = question?.choices ?? [];
  const choice = (i) => (typeof i === "number" && choices[i] !== undefined
    ? `${letter(i)}: ${choices[i]}` : String(i));
  switch (question?.kind) {
    case "single":
      return choice(value);
    case "truefalse":
      if (typeof value === "boolean") return value ? t("answer.true") : t("answer.false");
      return choice(value);
    case "multiple":
      return Array.isArray(value) ? value.map(choice).join(", ") : String(value);
    case "ordering":
      return Array.isArray(value) ? value.map((i) => choices[i] ?? i).join(" → ") : String(value);
    default:
      return Array.isArray(value) ? value.join(" / ") : String(value);
  }
}

/** JSON in localStorage (or sessionStorage), tolerant of private modes that refuse it. */
export const saved = {
  get(key, storage = globalThis.localStorage) {
    try {
      const text = storage.getItem(key);
      return text === null ? null : JSON.parse(text);
    } catch {
      return null;
    }
  },
  set(key, value, storage = globalThis.localStorage) {
    try {
      storage.setItem(key, JSON.stringify(value));
    } catch {
      // Storage full or refused: the page still works, it just cannot resume after a reload.
    }
  },
  remove(key, storage = globalThis.localStorage) {
    try {
      storage.removeItem(key);
    } catch {
      // see set()
    }
  },
};

/** Announce `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announce");
  if (!region) return;
  region.textContent = "";
  // A separate task, so that the same text twice is announced twice.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** The page's `?name=` parameter (or null). */
export const param = (name) => new URLSearchParams(location.search).get(name);
