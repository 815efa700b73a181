// Block Kit, rendered the way Slack lays it out, close enough to use: header, section (text,
// fields, accessory), context, divider, actions (buttons, static selects, checkboxes),
// image, and input blocks in modals. Elements call back into the page through `ctx`:
//   ctx.names                  display names for mentions
//   ctx.picks                  {block_id: {action_id: pick}}: what this client chose before
//   ctx.act(kind, fields)      kind: "click" | "select" | "checkbox"; resolves when sent
//   ctx.confirm(confirmObj)    resolves true when the person confirms Slack's dialog
//   ctx.inModal                inputs are form fields; block actions in modals are not sent

import { emojify, mrkdwn, textObject } from "./mrkdwn.js";

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderBlocks(blocks, ctx) {
  const root = el("div", "blocks");
  for (const block of blocks) root.append(renderBlock(block, ctx));
  return root;
}

function renderBlock(block, ctx) {
  switch (block.type) {
    case "header":
      return withClass(el("h3", "block block-header"), textObject(block.text, ctx.names));
    case "section":
      return section(block, ctx);
    case "context":
      return context(block, ctx);
    case "divider":
      return el("hr", "block block-divider");
    case "actions":
      return actions(block, ctx);
    case "input":
      return input(block, ctx);
    case "image":
      return image(block);
    default:
      return el("div", "block block-unsupported", `[${block.type} block]`);
  }
}

function withClass(node, child) {
  node.append(child);
  return node;
}

function section(block, ctx) {
  const node = el("div", "block block-section");
  const main = el("div", "section-main");
  if (block.text) main.append(withClass(el("div", "section-text"), textObject(block.text, ctx.names)));
  if (block.fields?.length) {
    const fields = el("div", "section-fields");
    for (const field of block.fields) {
      fields.append(withClass(el("div", "section-field"), textObject(field, ctx.names)));
    }
    main.append(fields);
  }
  node.append(main);
  if (block.accessory) {
    node.append(withClass(el("div", "section-accessory"), element(block.accessory, block, ctx)));
  }
  return node;
}

function context(block, ctx) {
  const node = el("div", "block block-context");
  for (const item of block.elements ?? []) {
    if (item.type === "image") {
      node.append(el("span", "context-image", `[${item.alt_text ?? "image"}]`));
    } else {
      node.append(withClass(el("span", "context-item"), textObject(item, ctx.names)));
    }
  }
  return node;
}

function actions(block, ctx) {
  const node = el("div", "block block-actions");
  for (const item of block.elements ?? []) node.append(element(item, block, ctx));
  return node;
}

function image(block) {
  // The playground works offline: an image shows as its alt text and title.
  const node = el("figure", "block block-image");
  node.append(el("div", "image-box", block.alt_text ?? "image"));
  if (block.title) node.append(el("figcaption", "", block.title.text));
  return node;
}

function element(item, block, ctx) {
  switch (item.type) {
    case "button":
      return button(item, block, ctx);
    case "static_select":
      return staticSelect(item, block, ctx);
    case "checkboxes":
      return checkboxes(item, block, ctx);
    case "image":
      return el("span", "context-image", `[${item.alt_text ?? "image"}]`);
    default:
      return el("span", "element-unsupported", `[${item.type}]`);
  }
}

function button(item, block, ctx) {
  const node = el("button", `btn${item.style ? ` btn-${item.style}` : ""}`);
  node.type = "button";
  node.textContent = emojify(item.text?.text ?? "");
  if (ctx.inModal) {
    node.disabled = true;
    node.title = "Buttons inside modals are not sent by the playground";
    return node;
  }
  node.addEventListener("click", async () => {
    // Slack asks first when the element carries a confirm object, and sends nothing on "deny".
    if (item.confirm && !(await ctx.confirm(item.confirm))) return;
    if (item.url) window.open(item.url, "_blank", "noopener");
    node.disabled = true;
    node.classList.add("busy");
    try {
      await ctx.act("click", { action_id: item.action_id, block_id: block.block_id });
    } finally {
      node.disabled = false;
      node.classList.remove("busy");
    }
  });
  return node;
}

function optionsOf(item) {
  const groups = item.option_groups ?? [{ options: item.options ?? [] }];
  return groups.flatMap((group) => group.options.map((option) => ({ option, group })));
}

function staticSelect(item, block, ctx) {
  const node = el("select", "select");
  node.dataset.actionId = item.action_id;
  node.setAttribute("aria-label", item.placeholder?.text ?? "Select an option");
  const placeholder = el("option", "", item.placeholder?.text ?? "Select an option");
  placeholder.value = "";
  placeholder.disabled = true;
  node.append(placeholder);
  let parent = node;
  let lastGroup = null;
  for (const { option, group } of optionsOf(item)) {
    if (group.label && group !== lastGroup) {
      parent = el("optgroup");
      parent.label = group.label.text;
      node.append(parent);
      lastGroup = group;
    }
    const shown = el("option", "", emojify(option.text.text));
    shown.value = option.value;
    parent.append(shown);
  }
  const picked = ctx.picks?.[block.block_id]?.[item.action_id];
  node.value = picked?.value ?? item.initial_option?.value ?? "";
  if (ctx.inModal) return node;
  node.addEventListener("change", async () => {
    node.disabled = true;
    try {
      await ctx.act("select", { action_id: item.action_id, value: node.value });
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

function checkboxes(item, block, ctx) {
  const node = el("div", "checkboxes");
  node.setAttribute("role", "group");
  node.dataset.actionId = item.action_id;
  const picked = ctx.picks?.[block.block_id]?.[item.action_id] ?? item.initial_options ?? [];
  const ticked = new Set(picked.map((option) => option.value));
  for (const option of item.options ?? []) {
    const label = el("label", "checkbox");
    const box = el("input");
    box.type = "checkbox";
    box.value = option.value;
    box.checked = ticked.has(option.value);
    const words = el("span", "checkbox-text");
    words.append(textObject(option.text, ctx.names));
    if (option.description) {
      words.append(withClass(el("span", "checkbox-description"), textObject(option.description, ctx.names)));
    }
    label.append(box, words);
    node.append(label);
    if (ctx.inModal) continue;
    box.addEventListener("change", async () => {
      box.disabled = true;
      try {
        await ctx.act("checkbox", { action_id: item.action_id, value: option.value });
      } finally {
        box.disabled = false;
      }
    });
  }
  return node;
}

// --- modals: input blocks and reading them back ---------------------------------------------

function input(block, ctx) {
  const node = el("div", "block block-input");
  node.dataset.blockId = block.block_id;
  const label = el("label", "input-label");
  label.append(textObject(block.label, ctx.names));
  if (block.optional) label.append(el("span", "input-optional", " (optional)"));
  node.append(label);
  const item = block.element ?? {};
  const field = inputElement(item, block, ctx);
  field.dataset.actionId = item.action_id;
  field.dataset.kind = item.type;
  if (item.type === "plain_text_input") field.id = `input-${block.block_id}-${item.action_id}`;
  label.htmlFor = field.id || "";
  node.append(field);
  if (block.hint) node.append(withClass(el("div", "input-hint"), textObject(block.hint, ctx.names)));
  node.append(el("div", "input-error"));
  return node;
}

function inputElement(item, block, ctx) {
  if (item.type === "plain_text_input") {
    const field = el(item.multiline ? "textarea" : "input", "text-input");
    if (!item.multiline) field.type = "text";
    field.value = item.initial_value ?? "";
    if (item.placeholder) field.placeholder = item.placeholder.text;
    if (item.max_length) field.maxLength = item.max_length;
    if (item.min_length) field.dataset.minLength = item.min_length;
    return field;
  }
  if (item.type === "static_select" || item.type === "checkboxes") {
    return element(item, block, { ...ctx, inModal: true });
  }
  if (item.type === "radio_buttons") {
    const group = el("div", "radios");
    for (const option of item.options ?? []) {
      const label = el("label", "checkbox");
      const radio = el("input");
      radio.type = "radio";
      radio.name = `${block.block_id}-${item.action_id}`;
      radio.value = option.value;
      radio.checked = item.initial_option?.value === option.value;
      label.append(radio, withClass(el("span"), textObject(option.text, ctx.names)));
      group.append(label);
    }
    return group;
  }
  return el("div", "element-unsupported", `[${item.type} input]`);
}

// Values of a modal's inputs as UserActions.submit_view takes them, or the errors Slack's
// client shows before sending anything (required fields, minimum lengths).
export function readInputs(root) {
  const values = {};
  const errors = {};
  for (const block of root.querySelectorAll(".block-input")) {
    const field = block.querySelector("[data-kind]");
    if (!field) continue;
    const blockId = block.dataset.blockId;
    const optional = block.querySelector(".input-optional") !== null;
    const value = fieldValue(field);
    const empty = value === "" || value === null || (Array.isArray(value) && value.length === 0);
    if (empty && !optional) {
      errors[blockId] = "Please complete this required field.";
    } else if (field.dataset.minLength && !empty && value.length < Number(field.dataset.minLength)) {
      errors[blockId] = `Must have at least ${field.dataset.minLength} characters`;
    }
    if (empty) continue;
    values[blockId] = { [field.dataset.actionId]: value };
  }
  return { values, errors };
}

function fieldValue(field) {
  switch (field.dataset.kind) {
    case "plain_text_input":
      return field.value;
    case "static_select":
      return field.value || null;
    case "checkboxes":
      return [...field.querySelectorAll("input:checked")].map((box) => box.value);
    case "radio_buttons":
      return field.querySelector("input:checked")?.value ?? null;
    default:
      return null;
  }
}

// Show errors under their inputs; the "" key is the modal's own line.
export function showInputErrors(root, errors) {
  for (const block of root.querySelectorAll(".block-input")) {
    block.querySelector(".input-error").textContent = errors[block.dataset.blockId] ?? "";
    block.classList.toggle("has-error", Boolean(errors[block.dataset.blockId]));
  }
}

export function renderText(text, names) {
  return mrkdwn(text, names);
}
