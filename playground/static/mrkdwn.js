// Slack's mrkdwn, rendered into DOM nodes (never innerHTML: the text comes from the bot,
// and through it from people). Covers what Slack documents as basic formatting:
// *bold*, _italic_, ~strike~, `code`, ```pre```, > quotes, <links|text>, mentions, :emoji:.

// The emoji rollbot uses, and a few common ones; any other :name: stays as typed.
const EMOJI = {
  "+1": "👍", alarm_clock: "⏰", arrow_right: "➡️", arrows_counterclockwise: "🔄",
  black_square_button: "🔲", eyes: "👀", gear: "⚙️", grey_question: "❔", heavy_check_mark: "✔️",
  heavy_minus_sign: "➖", hourglass: "⌛", hourglass_flowing_sand: "⏳", ice_cube: "🧊",
  information_source: "ℹ️", large_green_circle: "🟢", large_yellow_circle: "🟡", mag: "🔍",
  memo: "📝", no_entry: "⛔", no_entry_sign: "🚫", page_facing_up: "📄", red_circle: "🔴",
  repeat: "🔁", rocket: "🚀", rotating_light: "🚨", stethoscope: "🩺", tada: "🎉",
  unlock: "🔓", warning: "⚠️", white_check_mark: "✅", white_circle: "⚪", wrench: "🔧", x: "❌",
};

// Slack escapes only these three in message text.
export function decode(text) {
  return text.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
}

export function emojify(text) {
  return text.replace(/:([a-z0-9_+-]+):/g, (whole, name) => EMOJI[name] ?? whole);
}

// One text object ({type: "plain_text" | "mrkdwn", text}) as a node.
export function textObject(object, names) {
  if (!object) return document.createTextNode("");
  if (object.type === "mrkdwn") return mrkdwn(object.text ?? "", names);
  const text = object.emoji === false ? object.text : emojify(object.text ?? "");
  return document.createTextNode(text);
}

// A whole mrkdwn string: code fences first (nothing inside them is formatted), then lines.
export function mrkdwn(text, names) {
  const out = document.createDocumentFragment();
  const parts = text.split(/```([\s\S]*?)```/);
  parts.forEach((part, index) => {
    if (index % 2 === 1) {
      const pre = document.createElement("pre");
      pre.textContent = decode(part.replace(/^\n/, "").replace(/\n$/, ""));
      out.append(pre);
    } else {
      // A fence is a block of its own: the line breaks around it are not blank lines.
      let rest = index > 0 ? part.replace(/^\n/, "") : part;
      rest = index < parts.length - 1 ? rest.replace(/\n$/, "") : rest;
      if (rest) out.append(lines(rest, names));
    }
  });
  return out;
}

// Consecutive "> " lines form one quote, as in Slack.
function lines(text, names) {
  const out = document.createDocumentFragment();
  let quote = null;
  const rows = text.split("\n");
  rows.forEach((row, index) => {
    const quoted = row.match(/^(?:>|&gt;) ?(.*)$/);
    if (quoted) {
      if (!quote) {
        quote = document.createElement("blockquote");
        out.append(quote);
      } else {
        quote.append(document.createElement("br"));
      }
      quote.append(inline(quoted[1], names));
      return;
    }
    quote = null;
    out.append(inline(row, names));
    if (index < rows.length - 1) out.append(document.createElement("br"));
  });
  return out;
}

// Inline markup. Bold, italic and strike need a non-word character (or the edge) outside the
// markers and no space just inside them, which keeps snake_case and 2*3*4 as typed.
const INLINE = new RegExp(
  [
    "`([^`\\n]+)`",
    "<([^<>\\n]+)>",
    "(?<![\\w*])\\*(?!\\s)([^*\\n]+?)(?<!\\s)\\*(?![\\w*])",
    "(?<![\\w_])_(?!\\s)([^_\\n]+?)(?<!\\s)_(?![\\w_])",
    "(?<![\\w~])~(?!\\s)([^~\\n]+?)(?<!\\s)~(?![\\w~])",
  ].join("|"),
  "g",
);

export function inline(text, names) {
  const out = document.createDocumentFragment();
  let at = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > at) out.append(plain(text.slice(at, match.index)));
    const [, code, angle, bold, italic, strike] = match;
    if (code !== undefined) {
      const node = document.createElement("code");
      node.textContent = decode(code);
      out.append(node);
    } else if (angle !== undefined) {
      out.append(angled(angle, names));
    } else {
      const tag = bold !== undefined ? "b" : italic !== undefined ? "i" : "s";
      const node = document.createElement(tag);
      node.append(inline(bold ?? italic ?? strike, names));
      out.append(node);
    }
    at = match.index + match[0].length;
  }
  if (at < text.length) out.append(plain(text.slice(at)));
  return out;
}

function plain(text) {
  return document.createTextNode(emojify(decode(text)));
}

// <@U123>, <#C123|name>, <!subteam^S123|@team>, <!here>, <https://x|label>.
function angled(inside, names) {
  const [target, label] = splitOnce(inside, "|");
  const users = names?.users ?? {};
  const channels = names?.channels ?? {};
  if (target.startsWith("@")) {
    const id = target.slice(1);
    return mention(`@${label || users[id] || id}`, "user");
  }
  if (target.startsWith("#")) {
    const id = target.slice(1);
    return mention(`#${label || channels[id] || id.toLowerCase()}`, "channel");
  }
  if (target.startsWith("!subteam^")) {
    const id = target.slice("!subteam^".length);
    const shown = label || `@${id}`;
    return mention(shown.startsWith("@") ? shown : `@${shown}`, "group");
  }
  if (target.startsWith("!")) {
    const word = target.slice(1).split("^")[0];
    return mention(label || `@${word}`, "group");
  }
  const url = decode(target);
  const link = document.createElement("a");
  // Only web and mail links become clickable; anything else stays text.
  if (/^(https?:|mailto:)/i.test(url)) {
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  link.textContent = emojify(decode(label || target));
  return link;
}

function mention(text, kind) {
  const node = document.createElement("span");
  node.className = `mention mention-${kind}`;
  node.textContent = text;
  return node;
}

function splitOnce(text, separator) {
  const at = text.indexOf(separator);
  return at < 0 ? [text, ""] : [text.slice(0, at), text.slice(at + 1)];
}
