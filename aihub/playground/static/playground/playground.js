// The aihub playground: plain JavaScript, no build step.
//
// It is an ordinary client of the public interfaces: the REST API with the session cookie (and the CSRF token
// on writes) for tenants, agents and threads, and the thread WebSocket for everything live — messages go out
// as `message.create` frames, cancels as `job.cancel`, and events come back in the event contract.
//
// Each event is shown once: the page keeps the last event id it has shown and, after a dropped connection,
// reconnects with that id (`?last_event_id=`, the connect-time form of a `subscribe` frame), so the server
// replays exactly what was missed. An event whose id is not past the last one is never drawn twice.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const FINAL = new Set(["job.succeeded", "job.failed", "job.cancelled", "job.expired"]);
  // Close codes after which reconnecting cannot help (threads/consumers.py).
  const CLOSE_UNAUTHENTICATED = 4401;
  const NO_RETRY = new Set([4400, 4403, 4404]);

  const state = {
    tenant: null,
    thread: null,
    socket: null,
    live: false,
    lastEventId: 0,
    shown: 0,
    repeated: 0, // events the server sent again (ids not past lastEventId): counted, never drawn
    connects: 0,
    retry: 0,
    retryTimer: null,
    activeJob: null,
    assistant: new Map(), // job id -> the bubble its llm.chunk deltas stream into
    refs: 0,
    agents: new Map(), // slug -> the agent as the API gives it (its conversation starters among the rest)
  };

  // --- REST ----------------------------------------------------------------------------------------------

  function cookie(name) {
    const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  async function api(path, options = {}) {
    const response = await fetch("/api/v1/" + path, {
      credentials: "same-origin",
      ...options,
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken") },
    });
    if (response.status === 401) {
      location.assign("/playground/login/?next=/playground/");
      throw new Error("Not logged in.");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || body.title || `HTTP ${response.status}`);
    return body;
  }

  function fill(select, items, value, label) {
    for (const item of items) {
      const option = document.createElement("option");
      option.value = value(item);
      option.textContent = label(item);
      select.append(option);
    }
  }

  async function loadTenant(slug) {
    state.tenant = slug;
    const agents = await api(`${slug}/agents/?limit=200`);
    state.agents = new Map(agents.items.map((a) => [a.slug, a]));
    $("agent").replaceChildren();
    fill($("agent"), agents.items, (a) => a.slug, (a) => `${a.name} (${a.slug})`);
    const threads = await api(`${slug}/threads/?limit=50`);
    $("thread").replaceChildren($("thread").options[0] || new Option("— new thread —", ""));
    fill($("thread"), threads.items, (t) => t.id, (t) => t.title || t.id);
  }

  // --- rendering -----------------------------------------------------------------------------------------

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }

  function setConnection(text) {
    $("connection").textContent = text;
    // Without an open thread Send stays enabled: the first message starts the thread (see the composer).
    $("send").disabled = Boolean(state.thread) && !(state.socket && state.socket.readyState === WebSocket.OPEN);
  }

  // Suggestions under the transcript: a click sends one as if it had been typed. The agent's conversation
  // starters while the thread has nothing in it yet (a new thread, or one just opened whose log is empty), its
  // quick replies after an answer of the page's own (a live one, not one replayed); anything drawn hides them.
  function suggest(texts, kind) {
    const buttons = texts.map((text) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = kind;
      button.textContent = text;
      button.addEventListener("click", () => {
        $("message").value = text;
        $("composer").requestSubmit();
      });
      return button;
    });
    $("starters").replaceChildren(...buttons);
    $("starters").hidden = !buttons.length;
  }

  function selectedAgent() {
    return state.agents.get($("agent").value) || {};
  }

  function showStarters() {
    const empty = $("transcript").children.length === 0 && state.lastEventId === 0;
    suggest(empty ? selectedAgent().conversation_starters || [] : [], "starter");
  }

  function bubble(kind, text) {
    $("starters").hidden = true;
    const div = document.createElement("div");
    div.className = `bubble ${kind}`;
    div.textContent = text;
    $("transcript").append(div);
    $("transcript").scrollTop = $("transcript").scrollHeight;
    return div;
  }

  function textOf(content) {
    if (typeof content === "string") return content;
    return (content || []).filter((b) => b.type === "text").map((b) => b.text).join("");
  }

  function setJob(jobId, status) {
    state.activeJob = FINAL.has("job." + status) ? null : jobId;
    $("job-status").textContent = status;
    $("job-status").dataset.job = jobId || "";
    $("cancel").disabled = !state.activeJob;
  }

  function showUsage(usage) {
    if (!usage) return;
    const parts = ["input_tokens", "output_tokens", "total_tokens"].filter((k) => k in usage);
    $("usage").textContent = "usage: " + parts.map((k) => `${k.replace("_tokens", "")} ${usage[k]}`).join(", ");
  }

  function logEvent(event) {
    const li = document.createElement("li");
    li.value = event.id;
    li.dataset.eventId = event.id;
    li.dataset.type = event.type;
    const data = event.type === "llm.chunk" ? JSON.stringify(event.data.delta) : JSON.stringify(event.data);
    li.textContent = `${event.type} ${data.length > 160 ? data.slice(0, 160) + "…" : data}`;
    $("events").append(li);
    $("event-count").textContent = String(++state.shown);
    $("last-event-id").textContent = String(event.id);
  }

  function render(event) {
    const data = event.data || {};
    switch (event.type) {
      case "message.created":
        if (data.role === "user") {
          bubble("user", textOf(data.content));
        } else if (data.role === "assistant") {
          // The stored answer replaces the streamed text: the same words, now final.
          const streamed = state.assistant.get(event.job);
          if (streamed) streamed.textContent = textOf(data.content);
          else bubble("assistant", textOf(data.content));
          state.assistant.delete(event.job);
          const citations = (data.content || []).filter((b) => b.type === "citation");
          citations.forEach((c, n) => {
            const score = typeof c.score === "number" ? ` (${c.score.toFixed(2)})` : "";
            bubble("citation", `[${n + 1}] ${c.title || c.document_id}${score}: “${c.text}”`);
          });
        }
        break;
      case "llm.chunk": {
        let target = state.assistant.get(event.job);
        if (!target) {
          target = bubble("assistant", "");
          state.assistant.set(event.job, target);
        }
        target.textContent += data.delta || "";
        break;
      }
      case "llm.completed":
        showUsage(data.usage);
        break;
      case "tool.started":
        bubble("tool", `→ ${data.name}(${JSON.stringify(data.arguments)})`).dataset.toolCall = data.id;
        break;
      case "tool.completed":
        bubble("tool", `← ${data.name}: ${JSON.stringify(data.output)}${data.is_error ? " (error)" : ""}`).dataset.toolResult = data.id;
        break;
      case "retrieval.completed":
        bubble("note", `retrieved ${(data.hits || []).length} passage(s) for “${data.query || ""}”`);
        break;
      case "thought":
        bubble("note", `thought: ${JSON.stringify(data)}`);
        break;
      default:
        if (event.type.startsWith("job.")) {
          // The job's status as the API names it (job.started means it is running).
          setJob(event.job, event.type === "job.started" ? "running" : event.type.slice(4));
          if (event.type === "job.succeeded") {
            showUsage(data.usage);
            if (state.live) suggest(selectedAgent().quick_replies || [], "quick-reply");
          }
          if (event.type === "job.failed") bubble("note", `failed: ${(data.error && data.error.detail) || ""}`);
          if (event.type === "job.cancelled") bubble("note", "cancelled");
        }
    }
  }

  function receive(frame) {
    if (typeof frame.id === "number") {
      if (frame.id <= state.lastEventId) {
        state.repeated += 1;
        return;
      }
      state.lastEventId = frame.id;
      logEvent(frame);
      render(frame);
      return;
    }
    switch (frame.type) {
      case "stream.mode":
        state.live = true;
        setConnection("live");
        break;
      case "message.accepted":
        if (frame.job) setJob(frame.job.id, frame.job.status);
        break;
      case "job.cancel.accepted":
        break;
      case "error": {
        const error = frame.error || {};
        if (String(error.type || "").endsWith("last-event-id-ahead")) {
          // The log is behind what this page saw (restored from a backup): start over from the beginning.
          reset();
          send({ type: "subscribe", last_event_id: 0 });
        }
        showError(error.detail || error.title || "Error");
        break;
      }
    }
  }

  // --- the socket ----------------------------------------------------------------------------------------

  function send(frame) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      showError("Not connected; reconnecting…");
      return false;
    }
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  function opened(socket) {
    return new Promise((resolve, reject) => {
      if (socket.readyState === WebSocket.OPEN) return resolve();
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("close", () => reject(new Error("The stream closed before the message went.")), {
        once: true,
      });
    });
  }

  function connect() {
    clearTimeout(state.retryTimer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/v1/${state.tenant}/threads/${state.thread}/?last_event_id=${state.lastEventId}`;
    const socket = new WebSocket(url);
    state.socket = socket;
    state.live = false;
    state.connects += 1;
    setConnection("connecting");
    socket.onopen = () => {
      state.retry = 0;
      setConnection("replaying");
    };
    socket.onmessage = (message) => {
      if (socket === state.socket) receive(JSON.parse(message.data));
    };
    socket.onclose = (closed) => {
      if (socket !== state.socket) return; // replaced on purpose
      state.live = false;
      if (closed.code === CLOSE_UNAUTHENTICATED) {
        location.assign("/playground/login/?next=/playground/");
        return;
      }
      if (NO_RETRY.has(closed.code)) {
        setConnection(`closed (${closed.code})`);
        showError(closed.reason || `The server closed the stream (${closed.code}).`);
        return;
      }
      // Anything else (a network drop, a server restart): back off, then resume after the last id shown.
      const delay = Math.min(5000, 250 * 2 ** state.retry++);
      setConnection("reconnecting");
      state.retryTimer = setTimeout(connect, delay);
    };
  }

  function disconnect() {
    clearTimeout(state.retryTimer);
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close(1000);
    setConnection("closed");
  }

  function reset() {
    state.lastEventId = 0;
    state.shown = 0;
    state.assistant.clear();
    $("transcript").replaceChildren();
    $("events").replaceChildren();
    $("event-count").textContent = "0";
    $("last-event-id").textContent = "0";
    $("usage").textContent = "";
    setJob(null, "—");
    showStarters();
  }

  async function openThread() {
    showError("");
    try {
      let id = $("thread").value;
      if (!id) {
        const agent = $("agent").value;
        const thread = await api(`${state.tenant}/threads/`, {
          method: "POST",
          body: JSON.stringify({ title: `Playground: ${agent}`, metadata: { source: "playground" } }),
        });
        id = thread.id;
        const option = new Option(thread.title, id);
        $("thread").add(option, 1);
        $("thread").value = id;
      }
      disconnect();
      reset();
      state.thread = id;
      // In the address, so that a reload (or a shared link) continues this thread.
      history.replaceState(null, "", `#${state.tenant}/${id}`);
      connect();
    } catch (error) {
      showError(error.message);
    }
  }

  // --- wiring --------------------------------------------------------------------------------------------

  $("open-thread").addEventListener("click", openThread);
  $("tenant").addEventListener("change", () =>
    loadTenant($("tenant").value)
      .then(showStarters)
      .catch((e) => showError(e.message)),
  );
  $("agent").addEventListener("change", showStarters);
  $("composer").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const content = $("message").value.trim();
    if (!content) return;
    if (!state.thread) {
      // A new user types and sends: the message goes to the thread picked (a new one by default), opened first.
      $("send").disabled = true;
      await openThread();
      if (!state.socket) {
        $("send").disabled = false; // openThread said why; the user may try again
        return;
      }
      try {
        await opened(state.socket);
      } catch (error) {
        showError(error.message);
        return;
      }
    }
    const sent = send({ type: "message.create", content, agent: $("agent").value, ref: `m${++state.refs}` });
    if (sent) {
      $("message").value = "";
      showError("");
    }
  });
  $("message").addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey) {
      key.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("cancel").addEventListener("click", () => {
    if (state.activeJob) send({ type: "job.cancel", job: state.activeJob, mode: "immediate", ref: "cancel" });
  });

  (async () => {
    try {
      const me = await api("me");
      fill($("tenant"), me.tenants, (t) => t.slug, (t) => t.name || t.slug);
      const slugs = me.tenants.map((t) => t.slug);
      if (!slugs.length) {
        showError("You are not a member of any tenant.");
        return;
      }
      const [linkedTenant, linkedThread] = decodeURIComponent(location.hash.slice(1)).split("/");
      $("tenant").value = slugs.includes(linkedTenant) ? linkedTenant : slugs.includes("demo") ? "demo" : slugs[0];
      await loadTenant($("tenant").value);
      setConnection("closed"); // no thread open yet: Send is ready to start one
      showStarters();
      if (linkedThread) {
        // A reload: the thread's whole log is replayed, so the page shows it as it was, then goes on live.
        const thread = await api(`${state.tenant}/threads/${linkedThread}/`).catch(() => null);
        if (thread) {
          if (!Array.from($("thread").options).some((o) => o.value === thread.id)) {
            $("thread").add(new Option(thread.title || thread.id, thread.id), 1);
          }
          $("thread").value = thread.id;
          await openThread();
        }
      }
      document.body.dataset.ready = "true";
    } catch (error) {
      showError(error.message);
    }
  })();

  // For tests and the curious: the stream's state, and a way to drop the connection as a network would.
  window.aihubPlayground = {
    state,
    dropConnection() {
      if (state.socket) state.socket.close(4000, "dropped by the page");
    },
    renderedEventIds() {
      return Array.from($("events").children, (li) => Number(li.dataset.eventId));
    },
  };
})();
