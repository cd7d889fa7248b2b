// The AG-UI page of the playground: posts a RunAgentInput to POST /ag-ui/{tenant}/{agent} with the session
// cookie (and the CSRF token) and renders the text/event-stream of AG-UI events as it arrives.
//
// The page keeps the conversation the AG-UI way: every run sends all the messages so far; the server's
// MESSAGES_SNAPSHOT replaces them at the end of a run. A run that ends with an interrupt for a frontend tool
// shows a form for the tool's result, which the next run sends as a tool message.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = { messages: [], pending: null, events: [], running: false };

  function cookie(name) {
    const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  async function api(path) {
    const response = await fetch("/api/v1/" + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) location.assign("/playground/login/?next=/playground/ag-ui/");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }

  function bubble(kind, text) {
    const div = document.createElement("div");
    div.className = `bubble ${kind}`;
    div.textContent = text;
    $("transcript").append(div);
    return div;
  }

  const id = (prefix) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;

  function logEvent(event) {
    state.events.push(event);
    const li = document.createElement("li");
    li.dataset.type = event.type;
    const { type, ...rest } = event;
    const data = JSON.stringify(rest);
    li.textContent = `${type} ${data.length > 200 ? data.slice(0, 200) + "…" : data}`;
    $("events").append(li);
    $("event-count").textContent = String(state.events.length);
  }

  const texts = new Map(); // message id -> bubble
  const calls = new Map(); // tool call id -> {id, name, args}

  function render(event) {
    switch (event.type) {
      case "TEXT_MESSAGE_START":
        texts.set(event.messageId, bubble("assistant", ""));
        break;
      case "TEXT_MESSAGE_CONTENT":
        texts.get(event.messageId).textContent += event.delta;
        break;
      case "TOOL_CALL_START":
        calls.set(event.toolCallId, { id: event.toolCallId, name: event.toolCallName, args: "" });
        break;
      case "TOOL_CALL_ARGS":
        calls.get(event.toolCallId).args += event.delta;
        break;
      case "TOOL_CALL_END": {
        const call = calls.get(event.toolCallId);
        bubble("tool", `→ ${call.name}(${call.args})`);
        break;
      }
      case "TOOL_CALL_RESULT":
        bubble("tool", `← ${event.content}`);
        break;
      case "MESSAGES_SNAPSHOT":
        state.messages = event.messages;
        break;
      case "RUN_FINISHED": {
        const interrupts = (event.outcome && event.outcome.interrupts) || [];
        const call = interrupts.length && calls.get(interrupts[0].toolCallId);
        $("run-status").textContent = call ? "interrupted" : "finished";
        if (call) {
          // The tool call becomes part of the conversation, so the next run can answer it.
          state.messages.push({ id: id("a"), role: "assistant", toolCalls: [
            { id: call.id, type: "function", function: { name: call.name, arguments: call.args } },
          ] });
          state.pending = call;
          $("pending-tool").textContent = `${call.name}(${call.args})`;
          $("answer").hidden = false;
        }
        break;
      }
      case "RUN_ERROR":
        $("run-status").textContent = "error";
        showError(event.message);
        break;
    }
  }

  async function run() {
    const tools = JSON.parse($("tools").value || "[]");
    const input = {
      threadId: $("thread-id").value,
      runId: id("run"),
      messages: state.messages,
      tools,
      state: {},
      context: [],
      forwardedProps: {},
    };
    state.running = true;
    $("run-status").textContent = "running";
    showError("");
    const response = await fetch(`/ag-ui/${$("tenant").value}/${$("agent").value}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "text/event-stream", "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken") },
      body: JSON.stringify(input),
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      $("run-status").textContent = "refused";
      showError(problem.detail || `HTTP ${response.status}`);
      state.running = false;
      return;
    }
    // Server-sent events over fetch (EventSource cannot POST): frames are separated by a blank line.
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
        if (!data) continue; // a keep-alive comment
        const event = JSON.parse(data);
        logEvent(event);
        render(event);
      }
    }
    state.running = false;
  }

  $("composer").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const text = $("message").value.trim();
    if (!text || state.running) return;
    $("message").value = "";
    bubble("user", text);
    state.messages.push({ id: id("u"), role: "user", content: text });
    await run().catch((error) => showError(error.message));
  });
  $("message").addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey) {
      key.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("answer").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    if (!state.pending || state.running) return;
    const content = $("tool-result").value;
    state.messages.push({ id: id("t"), role: "tool", toolCallId: state.pending.id, content });
    state.pending = null;
    $("answer").hidden = true;
    await run().catch((error) => showError(error.message));
  });
  $("new-thread").addEventListener("click", () => {
    $("thread-id").value = id("thread");
    state.messages = [];
    $("transcript").replaceChildren();
  });

  (async () => {
    try {
      const me = await api("me");
      for (const tenant of me.tenants) $("tenant").add(new Option(tenant.name || tenant.slug, tenant.slug));
      const slugs = me.tenants.map((t) => t.slug);
      $("tenant").value = slugs.includes("demo") ? "demo" : slugs[0];
      const agents = await api(`${$("tenant").value}/agents/?limit=200`);
      for (const agent of agents.items) $("agent").add(new Option(`${agent.name} (${agent.slug})`, agent.slug));
      $("thread-id").value = id("thread");
      document.body.dataset.ready = "true";
    } catch (error) {
      showError(error.message);
    }
  })();

  window.aihubAgui = { state };
})();
