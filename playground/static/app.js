// The playground page: one Slack channel, its threads, and the modals and ephemeral
// messages of whoever "you are". The server streams what that person's client would
// show (Server-Sent Events); every action is a POST the server turns into what Slack
// sends the bot.

import { el, readInputs, renderBlocks, renderText, showInputErrors } from "./blocks.js";
import { mrkdwn, textObject } from "./mrkdwn.js";

const page = {
  config: null, // people, home channel, what is real: they change only with a reset
  you: null,
  channel: null,
  state: null, // the latest snapshot
  thread: null, // ts of the thread open in the side pane
  source: null,
};

const $ = (id) => document.getElementById(id);

// --- talking to the server -------------------------------------------------------------------

async function post(path, fields) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: page.you, ...fields }),
  });
  const body = await response.json().catch(() => ({ ok: false, error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function listen() {
  page.source?.close();
  const query = new URLSearchParams({ user: page.you, channel: page.channel });
  page.source = new EventSource(`/api/events?${query}`);
  page.source.onopen = () => setLive(true);
  // EventSource reconnects on its own; the dot shows that it is trying.
  page.source.onerror = () => setLive(false);
  page.source.onmessage = (event) => {
    page.state = JSON.parse(event.data);
    if (page.state.epoch !== page.config.epoch) startedOver(page.state.epoch);
    if (page.state.resetting) showResetting();
    render();
  };
}

function setLive(live) {
  $("live").classList.toggle("offline", !live);
  $("live").title = live ? "Connected" : "Reconnecting to the playground…";
}

// Problems of the page itself (not of the bot): a short toast.
function toast(text) {
  const node = el("div", "toast", text);
  $("toasts").append(node);
  setTimeout(() => node.remove(), 6000);
}

// --- the "you are" switch --------------------------------------------------------------------

function renderPeople() {
  const group = $("people");
  group.replaceChildren();
  for (const person of page.config.people) {
    const choice = el("button", "person");
    choice.type = "button";
    choice.setAttribute("role", "radio");
    choice.setAttribute("aria-checked", String(person.id === page.you));
    choice.dataset.id = person.id;
    choice.append(el("span", "person-name", person.name), el("span", "person-role", person.role));
    choice.addEventListener("click", () => becomes(person.id));
    group.append(choice);
  }
}

function becomes(id) {
  page.you = id;
  localStorage.setItem("playground-you", id);
  renderPeople();
  page.state = null;
  listen();
}

// "What is real here": the demo's own facts (a real backend only when Docker answered).
function renderAbout() {
  const about = page.config.about;
  const text = $("about-text");
  text.replaceChildren();
  const group = (className, title, entries) => {
    if (!entries.length) return;
    const part = el("span", className, `${title} `);
    entries.forEach((entry, index) => {
      if (index) part.append("; ");
      part.append(el("b", "", entry.service), ` (${entry.text})`);
    });
    part.append(". ");
    text.append(part);
  };
  group("about-real", "Real:", about.real);
  group("about-simulated", "Simulated APIs, served on this machine:", about.simulated);
  group("about-other", "Also:", about.other);
  if (about.remarks.length) {
    text.append(el("span", "about-remarks", about.remarks.map((remark) => `${remark}. `).join("")));
  }
  if (about.bot) {
    text.append(el("span", "about-bot", `The bot is the real rollbot (${about.bot}), talking to a local ` +
      `stand-in for Slack: this page, over a fake Slack Web API at ${about.slack}.`));
  }
  $("about").hidden = text.childElementCount === 0;
}

// --- Reset: everything as it was at start -----------------------------------------------------

function setStatus(text, failed = false) {
  $("reset-status").textContent = text;
  $("reset-status").classList.toggle("failed", failed);
}

function showResetting() {
  setStatus("Resetting…");
  $("reset").disabled = true;
}

async function resetAll() {
  const sure = await confirmDialog({
    title: { type: "plain_text", text: "Reset the playground?" },
    text: {
      type: "plain_text",
      text: "Everything starts over: the channel is emptied (messages, threads, cards), every " +
        "service back on the version it started with (the real container and the release " +
        "repository too), and a new bot with an empty store, so rollbacks, freezes, locks and " +
        "their timers are forgotten. Buttons on old cards will do nothing.",
    },
    confirm: { type: "plain_text", text: "Reset" },
    deny: { type: "plain_text", text: "Cancel" },
    style: "danger",
  });
  if (!sure) return;
  showResetting();
  try {
    const answer = await post("/api/reset", {});
    await startedOver(null);
    setStatus(`Reset done in ${answer.seconds} s.`);
  } catch (error) {
    setStatus(`Reset failed: ${error.message}`, true);
  } finally {
    $("reset").disabled = false;
  }
}

// After a reset (this page's or another's): read what is real again, back to the channel.
async function startedOver(epoch) {
  if (epoch !== null) {
    page.config.epoch = epoch; // asked once, however many snapshots arrive meanwhile
    setStatus("The playground was reset.");
    $("reset").disabled = false;
  }
  page.config = await (await fetch("/api/config")).json();
  renderAbout();
  if (page.channel !== page.config.channel || page.thread) {
    page.channel = page.config.channel;
    page.thread = null;
    listen();
  }
  render();
}

// --- the channel ------------------------------------------------------------------------------

function render() {
  const state = page.state;
  if (!state) return;
  renderChannels(state);
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  renderKeyed(list, state.messages, (message) => messageNode(message, { inThread: false }));
  if (nearBottom) list.scrollTop = list.scrollHeight;
  renderThread(state);
  renderModal(state);
}

function renderChannels(state) {
  const nav = $("channels");
  nav.replaceChildren();
  for (const channel of state.channels) {
    const link = el("button", "channel-link", `# ${channel.name}`);
    link.type = "button";
    link.classList.toggle("active", channel.id === page.channel);
    link.addEventListener("click", () => {
      page.channel = channel.id;
      page.thread = null;
      listen();
    });
    nav.append(link);
  }
  const current = state.channels.find((c) => c.id === state.channel);
  $("channel-name").textContent = `# ${current ? current.name : state.channel}`;
  $("composer").placeholder = `Message #${current ? current.name : state.channel}: try /rollback backend v1.2.3`;
}

// Re-render only the messages whose content changed, so an open select or a focused
// element elsewhere survives the next snapshot.
function renderKeyed(container, items, build) {
  const before = container.cache ?? new Map();
  const after = new Map();
  const nodes = items.map((item) => {
    const key = `${item.ts}|${item.broadcast ? "b" : ""}`;
    const json = JSON.stringify(item) + JSON.stringify(page.state.names);
    let entry = before.get(key);
    if (!entry || entry.json !== json) entry = { json, node: build(item) };
    after.set(key, entry);
    return entry.node;
  });
  container.replaceChildren(...nodes);
  container.cache = after;
}

function messageNode(message, { inThread }) {
  const names = page.state.names;
  const node = el("div", "message");
  node.dataset.ts = message.ts;
  node.classList.toggle("ephemeral", message.ephemeral);
  const author = names.users[message.author] ?? message.author;
  node.append(el("div", "avatar", author.slice(0, 1).toUpperCase()));
  const body = el("div", "message-body");
  const meta = el("div", "meta");
  meta.append(el("span", "author", author));
  if (message.badge) meta.append(el("span", "badge", message.badge));
  meta.append(el("span", "time", message.time));
  body.append(meta);
  if (message.broadcast) body.append(el("div", "broadcast", "replied to a thread"));
  if (message.ephemeral) body.append(el("div", "only-you", "Only visible to you"));
  const content = el("div", "content");
  if (message.blocks.length) {
    content.append(renderBlocks(message.blocks, blockContext(message)));
  } else if (message.text) {
    content.append(renderText(message.text, names));
  }
  for (const attachment of message.attachments) content.append(attachmentNode(attachment));
  for (const file of message.files) content.append(fileNode(file));
  body.append(content);
  if (!inThread && message.reply_count > 0 && !message.broadcast) {
    const link = el("button", "replies");
    link.type = "button";
    const who = message.reply_names.map((id) => names.users[id] ?? id).join(", ");
    link.append(
      el("span", "replies-count", `${message.reply_count} ${message.reply_count === 1 ? "reply" : "replies"}`),
      el("span", "replies-who", who),
    );
    link.addEventListener("click", () => openThread(message.ts));
    body.append(link);
  }
  node.append(body);
  return node;
}

// The callbacks blocks.js uses for one message: actions go to the bot as the current person.
function blockContext(message) {
  return {
    names: page.state.names,
    picks: message.picks,
    inModal: false,
    confirm: confirmDialog,
    act: async (kind, fields) => {
      try {
        await post(`/api/${kind}`, {
          channel: page.channel,
          ts: message.ts,
          thread_ts: message.thread_ts ?? "",
          ...fields,
        });
      } catch (error) {
        toast(error.message);
      }
    },
  };
}

function attachmentNode(attachment) {
  const node = el("div", "attachment");
  if (attachment.color) node.style.borderLeftColor = attachment.color.startsWith("#") ? attachment.color : "";
  const names = page.state.names;
  if (attachment.pretext) node.append(withChild(el("div", "attachment-pretext"), mrkdwn(attachment.pretext, names)));
  if (attachment.title) node.append(el("div", "attachment-title", attachment.title));
  if (attachment.text) node.append(withChild(el("div"), mrkdwn(attachment.text, names)));
  if (attachment.blocks) node.append(renderBlocks(attachment.blocks, { names, picks: {}, inModal: true }));
  return node;
}

function withChild(node, child) {
  node.append(child);
  return node;
}

// Files the bot uploaded: a card with the name and a way to read the text.
function fileNode(file) {
  const node = el("div", "file");
  node.append(el("div", "file-icon", "📄"));
  const about = el("div", "file-about");
  about.append(el("div", "file-name", file.title || file.name), el("div", "file-size", `${file.size} bytes · ${file.name}`));
  node.append(about);
  const view = el("button", "btn", "View");
  view.type = "button";
  view.addEventListener("click", () => showFile(file));
  node.append(view);
  return node;
}

async function showFile(file) {
  const response = await fetch(`/api/files/${encodeURIComponent(file.id)}`);
  const text = await response.text();
  const { dialog, close } = overlay(file.title || file.name, "file-viewer");
  const pre = el("pre", "file-text", response.ok ? text : `Could not read the file: ${text}`);
  const download = el("a", "btn", "Download");
  download.href = `/api/files/${encodeURIComponent(file.id)}`;
  download.download = file.name;
  const done = el("button", "btn", "Close");
  done.type = "button";
  done.addEventListener("click", close);
  dialog.append(pre, withChildren(el("div", "dialog-buttons"), download, done));
}

function withChildren(node, ...children) {
  node.append(...children);
  return node;
}

// --- the thread pane --------------------------------------------------------------------------

function openThread(ts) {
  page.thread = ts;
  render();
}

function renderThread(state) {
  const pane = $("thread");
  if (!page.thread) {
    pane.hidden = true;
    return;
  }
  pane.hidden = false;
  const parent = state.messages.find((m) => m.ts === page.thread && !m.broadcast);
  const replies = state.threads[page.thread] ?? [];
  const list = $("thread-messages");
  const items = parent ? [parent, ...replies] : replies;
  renderKeyed(list, items, (message) => messageNode(message, { inThread: true }));
  const count = replies.filter((r) => !r.ephemeral).length;
  $("thread-count").textContent = `${count} ${count === 1 ? "reply" : "replies"}`;
}

// --- dialogs: Slack's confirm, modals, the file viewer ----------------------------------------

// `onEscape` runs when Escape is pressed while this overlay is the top one.
function overlay(title, className, onEscape) {
  const shade = el("div", "shade");
  const dialog = el("div", `dialog ${className}`);
  dialog.setAttribute("role", "dialog");
  dialog.setAttribute("aria-modal", "true");
  const heading = el("h2", "dialog-title");
  heading.id = `dialog-${Math.random().toString(36).slice(2)}`;
  heading.append(typeof title === "string" ? document.createTextNode(title) : title);
  dialog.setAttribute("aria-labelledby", heading.id);
  dialog.append(heading);
  shade.append(dialog);
  const close = () => shade.remove();
  shade.escape = onEscape ?? close;
  $("overlays").append(shade);
  return { shade, dialog, close };
}

// Slack's confirmation dialog for an element with `confirm`: resolves true on confirm.
function confirmDialog(confirm) {
  return new Promise((resolve) => {
    const names = page.state?.names;
    const { dialog, close } = overlay(textObject(confirm.title, names), "confirm", () => {
      close();
      resolve(false);
    });
    dialog.append(withChild(el("div", "dialog-text"), textObject(confirm.text, names)));
    const deny = el("button", "btn", confirm.deny?.text ?? "Cancel");
    deny.type = "button";
    const yes = el("button", `btn btn-${confirm.style === "danger" ? "danger" : "primary"}`, confirm.confirm?.text ?? "Yes");
    yes.type = "button";
    deny.addEventListener("click", () => { close(); resolve(false); });
    yes.addEventListener("click", () => { close(); resolve(true); });
    dialog.append(withChildren(el("div", "dialog-buttons"), deny, yes));
    yes.focus();
  });
}

// The top modal open for you; re-rendered only when the view or its errors change, and
// typed values are carried over so a views.update keeps what the person wrote.
let shownModal = null;

function renderModal(state) {
  const view = state.modals.at(-1) ?? null;
  const key = view ? JSON.stringify([view.id, view.hash, view.errors]) : null;
  if (shownModal?.key === key) return;
  // Only the same view keeps typed text: another view (or person) starts empty.
  const typed = shownModal && shownModal.viewId === view?.id ? readInputs(shownModal.dialog).values : {};
  shownModal?.close();
  shownModal = null;
  if (!view) return;
  const names = state.names;
  const { dialog, close } = overlay(textObject(view.title, names), "modal", () => closeModal(view));
  const form = el("form", "modal-form");
  form.append(renderBlocks(view.blocks, { names, picks: {}, inModal: true }));
  restoreTyped(form, typed);
  const general = el("div", "modal-error", view.errors[""] ?? "");
  form.prepend(general);
  showInputErrors(form, view.errors);
  const buttons = el("div", "dialog-buttons");
  const closeButton = el("button", "btn", view.close?.text ?? "Cancel");
  closeButton.type = "button";
  closeButton.addEventListener("click", () => closeModal(view));
  buttons.append(closeButton);
  if (view.submit) {
    const submit = el("button", "btn btn-primary", view.submit.text);
    submit.type = "submit";
    buttons.append(submit);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitModal(view, form);
  });
  form.append(buttons);
  dialog.append(form);
  shownModal = { key, viewId: view.id, dialog, close };
}

function restoreTyped(form, typed) {
  for (const [blockId, actions] of Object.entries(typed)) {
    for (const [actionId, value] of Object.entries(actions)) {
      const field = form.querySelector(`[data-block-id="${CSS.escape(blockId)}"] [data-action-id="${CSS.escape(actionId)}"]`);
      if (field && typeof value === "string" && "value" in field) field.value = value;
    }
  }
}

async function submitModal(view, form) {
  const { values, errors } = readInputs(form);
  showInputErrors(form, errors);
  if (Object.keys(errors).length) return;
  try {
    const answer = await post("/api/view/submit", { view_id: view.id, values });
    showInputErrors(form, answer.errors ?? {});
  } catch (error) {
    toast(error.message);
  }
}

async function closeModal(view) {
  try {
    await post("/api/view/close", { view_id: view.id });
  } catch (error) {
    toast(error.message);
  }
}

// --- the composer -----------------------------------------------------------------------------

async function send(event) {
  event.preventDefault();
  const input = $("composer");
  const text = input.value.trim();
  if (!text) return;
  $("composer-error").textContent = "";
  input.disabled = true;
  try {
    await post("/api/command", { channel: page.channel, text });
    input.value = "";
  } catch (error) {
    $("composer-error").textContent = error.message;
  } finally {
    input.disabled = false;
    input.focus();
  }
}

// --- start ------------------------------------------------------------------------------------

async function start() {
  page.config = await (await fetch("/api/config")).json();
  const saved = localStorage.getItem("playground-you");
  const ids = page.config.people.map((p) => p.id);
  page.you = ids.includes(saved) ? saved : ids[0];
  page.channel = page.config.channel;
  renderPeople();
  renderAbout();
  const about = $("about");
  about.open = localStorage.getItem("playground-about") !== "closed";
  about.addEventListener("toggle", () => localStorage.setItem("playground-about", about.open ? "open" : "closed"));
  $("reset").hidden = !page.config.reset;
  $("reset").addEventListener("click", resetAll);
  $("compose").addEventListener("submit", send);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("overlays").lastElementChild?.escape();
  });
  $("thread-close").addEventListener("click", () => {
    page.thread = null;
    render();
  });
  listen();
}

start();
