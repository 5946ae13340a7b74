// The align-serve playground: one conversation, up to three strategy columns, each
// streamed from the server's own /v1/chat/completions. Plain JS, no build step; every
// URL is relative so the page works behind a gateway that mounts the server anywhere.
"use strict";

const KEY_STORAGE = "align-serve.api-key";
const MAX_COLUMNS = 3;
const STRATEGIES = ["vanilla", "nudging", "rain"];
const DEFAULT_QUESTION = "How do I bake bread at home?";

const $ = (selector, root = document) => root.querySelector(selector);
const element = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

let models = [];  // served model cards (aliases left out: the columns pick the strategy)
let controllers = [];  // one AbortController per running column

// ---------------------------------------------------------------- API access

/** An error the server (or the page) explains: `message`, and `param`/`code` if known. */
class ShownError extends Error {
  constructor(message, detail = {}) {
    super(message);
    this.param = detail.param;
    this.code = detail.code;
  }
}

function headers() {
  const result = {"Content-Type": "application/json"};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

/** The message an error response carries (OpenAI's envelope), else its status line. */
async function responseError(response) {
  const text = await response.text();
  try {
    const error = JSON.parse(text).error;
    if (error && error.message) return new ShownError(error.message, error);
  } catch (_) { /* not JSON: a gateway's page */ }
  return new ShownError(`HTTP ${response.status} ${response.statusText}`.trim());
}

/** Server-sent events from a fetch response: {data} for data lines, {comment} for ": …". */
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) yield {comment: line.slice(1).trim()};
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield {data: data.join("\n")};
    }
  }
}

async function loadModels() {
  const notice = $("#notice");
  notice.hidden = true;
  let response;
  try {
    response = await fetch("v1/models", {headers: headers()});
  } catch (error) {
    showNotice(`Cannot reach the server: ${error.message}`);
    return;
  }
  if (!response.ok) {
    const error = await responseError(response);
    const hint = response.status === 401 ? " Enter the server's API key above." : "";
    showNotice(error.message + hint);
    return;
  }
  models = (await response.json()).data.filter((card) => !card.parent);
  const select = $("#model");
  const previous = select.value;
  select.replaceChildren(...models.map((card) => {
    const option = element("option", "", `${card.id} (${card.role})`);
    option.value = card.id;
    return option;
  }));
  const nudgeable = models.find((card) => card.strategies.includes("nudging"));
  select.value = models.some((card) => card.id === previous) ? previous
    : (nudgeable || models[0] || {}).id || "";
  refreshColumns();
}

function showNotice(message) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.hidden = false;
}

// ---------------------------------------------------------------- the setup

function addMessage(role = "user", content = "") {
  const message = $("#message-template").content.firstElementChild.cloneNode(true);
  $(".role", message).value = role;
  $(".content", message).value = content;
  $(".remove", message).addEventListener("click", () => message.remove());
  $("#messages").append(message);
}

function conversation() {
  return [...document.querySelectorAll("#messages .message")].map((message) => ({
    role: $(".role", message).value, content: $(".content", message).value,
  }));
}

function addColumn(strategy) {
  const columns = document.querySelectorAll("#columns .column");
  if (columns.length >= MAX_COLUMNS) return;
  const column = $("#column-template").content.firstElementChild.cloneNode(true);
  const used = new Set([...columns].map((c) => c.dataset.strategy));
  strategy = strategy || STRATEGIES.find((s) => !used.has(s)) || "vanilla";
  $(".strategy", column).value = strategy;
  column.dataset.strategy = strategy;
  $(".strategy", column).addEventListener("change", (event) => {
    column.dataset.strategy = event.target.value;
    refreshColumn(column);
  });
  $(".remove", column).addEventListener("click", () => {
    column.remove();
    refreshColumns();
  });
  $("#columns").append(column);
  refreshColumns();
}

/** Fill a column's pickers from the chosen model's card (/v1/models). */
function refreshColumn(column) {
  const model = models.find((card) => card.id === $("#model").value);
  for (const option of $(".strategy", column).options) {
    const reason = model && model.unavailable[option.value];
    option.disabled = Boolean(reason);
    option.title = reason || "";
  }
  const reason = model && model.unavailable[column.dataset.strategy];
  $(".unavailable", column).textContent = reason ? `unavailable: ${reason}` : "";
  const nudgers = models.filter((card) => card.role === "chat" && card.id !== $("#model").value);
  fillSelect($(".nudging-model", column), nudgers.map((card) => [card.id, card.id]));
  fillSelect($(".evaluator-model", column),
             [["", "the model itself"], ...models.map((card) => [card.id, card.id])]);
}

function fillSelect(select, entries) {
  const previous = select.value;
  select.replaceChildren(...entries.map(([value, label]) => {
    const option = element("option", "", label);
    option.value = value;
    return option;
  }));
  if (entries.some(([value]) => value === previous)) select.value = previous;
}

function refreshColumns() {
  const columns = document.querySelectorAll("#columns .column");
  columns.forEach(refreshColumn);
  $("#add-column").disabled = columns.length >= MAX_COLUMNS;
}

// ---------------------------------------------------------------- one column's request

const numberField = (input) => (input.value === "" ? undefined : Number(input.value));

function alignmentField(column) {
  const strategy = column.dataset.strategy;
  const alignment = {strategy};
  if (strategy === "nudging") {
    Object.assign(alignment, {
      nudging_model: $(".nudging-model", column).value || undefined,
      gamma: numberField($(".gamma", column)), return_spans: true,
    });
  } else if (strategy === "rain") {
    Object.assign(alignment, {
      max_visits: numberField($(".max-visits", column)),
      min_searches: numberField($(".min-searches", column)),
      parallel_searches: numberField($(".parallel-searches", column)),
      evaluation: $(".evaluation", column).value,
      evaluator_model: $(".evaluator-model", column).value || undefined,
      principle: $(".principle", column).value, return_tree: true,
    });
  }
  const extra = $(".extra-json", column).value.trim();
  if (extra) {
    let fields;
    try {
      fields = JSON.parse(extra);
    } catch (error) {
      throw new ShownError(`The extra alignment fields are not JSON: ${error.message}`);
    }
    Object.assign(alignment, fields);
  }
  return alignment;
}

function requestBody(column) {
  return {
    model: $("#model").value,
    messages: conversation(),
    max_tokens: numberField($("#max-tokens")),
    temperature: numberField($("#temperature")),
    seed: numberField($("#seed")),
    stream: true,
    stream_options: {include_usage: true},
    alignment: alignmentField(column),
  };
}

/** Run one column: stream its answer, then show what the strategy reported. */
async function runColumn(column, signal) {
  resetColumn(column);
  column.dataset.state = "running";
  const answer = $(".answer", column);
  const setsAreShown = column.dataset.strategy === "rain";
  const started = performance.now();
  const run = {firstText: null, text: "", usage: null, alignment: null, finish: null};
  try {
    const body = JSON.stringify(requestBody(column));
    $(".status", column).textContent = "waiting for the first token…";
    const response = await fetch("v1/chat/completions",
                                 {method: "POST", headers: headers(), body, signal});
    if (!response.ok) throw await responseError(response);
    for await (const event of sseEvents(response)) {
      if (event.comment !== undefined) {  // RAIN's "still searching" notes
        $(".status", column).textContent = event.comment;
        continue;
      }
      if (event.data === "[DONE]") break;
      const chunk = JSON.parse(event.data);
      if (chunk.error) throw new ShownError(chunk.error.message, chunk.error);
      for (const choice of chunk.choices) {
        const text = choice.delta.content;
        if (text) {
          run.firstText ??= performance.now() - started;
          run.text += text;
          if (setsAreShown) answer.append(element("span", "set", text));
          else answer.append(text);
          $(".status", column).textContent = "streaming…";
        }
        run.finish = choice.finish_reason || run.finish;
      }
      run.usage = chunk.usage || run.usage;
      run.alignment = chunk.alignment || run.alignment;
    }
    run.seconds = (performance.now() - started) / 1000;
    showResult(column, run);
    column.dataset.state = "done";
  } catch (error) {
    if (error.name === "AbortError") {
      $(".status", column).textContent = "stopped";
      column.dataset.state = "stopped";
    } else {
      showError(column, error);
      column.dataset.state = "error";
    }
  }
}

function resetColumn(column) {
  $(".answer", column).replaceChildren();
  $(".metrics", column).replaceChildren();
  $(".tree", column).replaceChildren();
  $(".raw pre", column).textContent = "";
  $(".error", column).hidden = true;
  $(".status", column).textContent = "";
}

function showError(column, error) {
  $(".status", column).textContent = "";
  $(".error-message", column).textContent = error.message;
  const detail = [error.param && `param: ${error.param}`, error.code && `code: ${error.code}`];
  $(".error-detail", column).textContent = detail.filter(Boolean).join(", ");
  $(".error", column).hidden = false;
}

// ---------------------------------------------------------------- results

function showResult(column, run) {
  const alignment = run.alignment || {};
  const stats = alignment.stats || {};
  const tokens = run.usage ? run.usage.completion_tokens : undefined;
  $(".status", column).textContent = `finished: ${run.finish || "?"}`
    + (alignment.strategy ? ` · ran ${alignment.strategy}` : "");
  const rows = [
    ["ttft", "time to first token", run.firstText === null ? "—" : seconds(run.firstText / 1000)],
    ["total", "total time", seconds(run.seconds)],
    ["tokens", "answer tokens", tokens ?? "—"],
    ["tokens-per-second", "tokens / s", tokens === undefined ? "—" : fixed(tokens / run.seconds)],
    ["engine-tokens", "engine tokens per answer token", engineTokensPerAnswerToken(alignment)],
  ];
  if (alignment.strategy === "nudging") {
    const spans = alignment.spans;
    rows.push(["nudge-ratio", "nudge ratio", fixed(stats.nudge_ratio, 3)],
              ["handoffs", "handoffs (source changes)", spans ? spans.length - 1 : "—"],
              ["rounds", "rounds (nudger chunks)", stats.rounds],
              ["nudged-words", "nudged words", stats.nudged_words], ["end", "end", stats.end]);
    showSpans(column, spans, run.text);
  } else if (alignment.strategy === "rain") {
    rows.push(["committed-sets", "committed token sets", stats.committed_sets],
              ["searches", "searches", stats.searches],
              ["tree-nodes", "tree nodes", stats.tree_nodes], ["end", "end", stats.end]);
    if (alignment.tree) showTree($(".tree", column), alignment.tree);
  }
  $(".metrics", column).replaceChildren(...rows.flatMap(([name, label, value]) => {
    const term = element("dt", "", label);
    const data = element("dd", "", String(value ?? "—"));
    data.dataset.metric = name;
    return [term, data];
  }));
  $(".raw pre", column).textContent = JSON.stringify(
    {strategy: alignment.strategy, selected_by: alignment.selected_by, stats}, null, 2);
}

const seconds = (value) => `${fixed(value, 2)} s`;
const fixed = (value, digits = 1) => (typeof value === "number" && isFinite(value)
  ? value.toFixed(digits) : "—");

/** What the strategy cost: tokens the engines decoded per token of the answer. */
function engineTokensPerAnswerToken(alignment) {
  const stats = alignment.stats || {};
  if (alignment.strategy === "vanilla") return "1 (the answer itself)";
  if (alignment.strategy === "rain" && stats.engine_tokens_per_answer_token) {
    const cost = stats.engine_tokens_per_answer_token;
    return `${cost.generated} decoded, ${cost.prefilled} prefilled`;
  }
  if (alignment.strategy === "nudging" && stats.engine_generated_tokens) {
    const decoded = Object.values(stats.engine_generated_tokens).reduce((a, b) => a + b, 0);
    const answer = stats.nudged_tokens + stats.base_tokens_kept;
    const per = stats.engine_generated_tokens;
    return answer ? `${fixed(decoded / answer, 2)} (base ${per.base} + nudger ${per.nudger}`
      + ` decoded for ${answer})` : "—";
  }
  return "—";
}

/** Nudging: the answer again, each span coloured by the model that wrote it. */
function showSpans(column, spans, streamed) {
  if (!spans) return;
  const answer = $(".answer", column);
  answer.replaceChildren(...spans.map((span) => {
    const node = element("span", `span src-${span.source}`, span.text);
    node.title = span.source;
    return node;
  }));
  if (spans.map((span) => span.text).join("") !== streamed) {
    $(".status", column).textContent += " · the spans differ from the streamed text";
  }
}

/** RAIN: one collapsible entry per committed decision, its candidates below. */
function showTree(container, tree) {
  container.append(element("h3", "", `Search tree: ${tree.length} decisions`));
  tree.forEach((decision, index) => {
    const committed = decision.children.find((child) => child.committed);
    const details = element("details", "decision");
    const summary = element("summary", "",
      `#${index + 1} ${committed ? quote(committed.text) : "(not listed)"} · `
      + `${decision.visits} visits · ${decision.children.length} candidates`
      + (decision.truncated ? " · truncated" : ""));
    details.append(summary, nodeList(decision.children));
    container.append(details);
  });
}

function nodeList(nodes) {
  const list = element("ul", "nodes");
  for (const node of nodes) {
    const item = element("li", ["node", node.committed && "committed",
                                !node.whole_visits && "unvisited"].filter(Boolean).join(" "));
    const line = element("span", "node-line");
    line.append(element("span", "node-text", quote(node.text)),
                element("span", "num", `visits ${fixed(node.visits, 2)}`),
                element("span", "num", `value ${signed(node.value)}`),
                element("span", "num", `prior ${fixed(node.prior, 3)}`));
    if (node.committed) line.append(element("span", "badge", "committed"));
    if (node.terminal) line.append(element("span", "badge", "end"));
    if (node.children.length) {
      const details = element("details");
      const summary = element("summary");
      summary.append(line);
      details.append(summary, nodeList(node.children));
      item.append(details);
    } else {
      item.append(line);
    }
    list.append(item);
  }
  return list;
}

const quote = (text) => JSON.stringify(text);
const signed = (value) => (value >= 0 ? "+" : "") + fixed(value, 3);

// ---------------------------------------------------------------- running

async function runAll() {
  const columns = [...document.querySelectorAll("#columns .column")];
  if (!columns.length) return;
  controllers = columns.map(() => new AbortController());
  $("#run").disabled = true;
  $("#stop").disabled = false;
  document.body.dataset.state = "running";
  await Promise.allSettled(columns.map((column, i) => runColumn(column, controllers[i].signal)));
  $("#run").disabled = false;
  $("#stop").disabled = true;
  document.body.dataset.state = "idle";
}

function start() {
  const key = $("#api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    if (key.value) sessionStorage.setItem(KEY_STORAGE, key.value);
    else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
  });
  $("#model").addEventListener("change", refreshColumns);
  $("#add-message").addEventListener("click", () => addMessage());
  $("#add-column").addEventListener("click", () => addColumn());
  $("#run").addEventListener("click", runAll);
  $("#stop").addEventListener("click", () => controllers.forEach((c) => c.abort()));
  addMessage("user", DEFAULT_QUESTION);
  addColumn("vanilla");
  addColumn("nudging");
  loadModels();
  document.body.dataset.state = "idle";
}

start();
