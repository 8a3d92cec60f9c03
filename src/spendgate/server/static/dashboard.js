/* spendgate dashboard: reads the JSON routes with the session cookie, follows
 * /ws/cost-monitoring, reconnects with backoff, and draws with the vendored Chart.js.
 * Every figure shows the time it is as of. No key ever appears in a URL. */
"use strict";

(function () {
  const body = document.body;
  const PAGE = body.dataset.page;
  const SERVICE = body.dataset.service || null;
  const csrfMeta = document.querySelector('meta[name="spendgate-csrf"]');
  const CSRF = csrfMeta ? csrfMeta.content : "";
  const ORDER = ["normal", "warn", "degrade", "stop"];
  const charts = {};

  // -- formatting ---------------------------------------------------------------------------

  function money(text) {
    if (text === null || text === undefined) return "–";
    const n = Number(text);
    if (!Number.isFinite(n)) return String(text);
    // Cents from a dollar (and for nothing at all: "$0.00"); below, API prices need four places.
    const digits = n === 0 || Math.abs(n) >= 1 ? 2 : 4;
    return (n < 0 ? "-$" : "$") + Math.abs(n).toFixed(digits);
  }
  // A money axis: every tick with the decimals its step needs and no more, so neighbours
  // differ and nothing reads "$0.0000". Cents while the step is a cent or more, whole
  // dollars from a dollar, "k"/"M" once the top tick reaches a thousand; a sub-cent step
  // ($0.004 a minute) keeps the digits that tell its ticks apart ("$0.0005").
  function axisMoney(value, ticks) {
    if (value === 0) return "$0";
    const top = Math.max.apply(null, ticks.map(function (t) { return Math.abs(t.value); }));
    const step = ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) : Math.abs(value);
    const [unit, suffix] = top >= 1e6 ? [1e6, "M"] : top >= 1e3 ? [1e3, "k"] : [1, ""];
    const scaled = step / unit;
    let digits = scaled >= 1 ? 0 : Math.ceil(-Math.log10(scaled) - 1e-6);
    if (unit === 1 && digits === 1) digits = 2;  // "$0.50", not "$0.5"
    return (value < 0 ? "-$" : "$") + (Math.abs(value) / unit).toFixed(Math.min(digits, 9)) + suffix;
  }
  function pct(x) {
    return x === null || x === undefined ? "–" : (Number(x) * 100).toFixed(1) + "%";
  }
  function num(x, digits) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits === undefined ? 1 : digits);
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "not running out";
    const s = Math.max(0, Number(seconds));
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return Math.round(s / 86400) + " days";
  }
  function bytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let v = Number(n) || 0;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function asOf(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return "as of " + (Number.isNaN(d.getTime()) ? iso : d.toLocaleString());
  }
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }
  // A name as text with a line-break opportunity after each "_", "-", ".", ":" or "=", so a long
  // name in a narrow column wraps between its words ("google_maps_" / "optimized").
  function nameNodes(name) {
    const nodes = [];
    for (const part of String(name).split(/(?<=[_\-.:=])/)) {
      if (nodes.length) nodes.push(document.createElement("wbr"));
      nodes.push(document.createTextNode(part));
    }
    return nodes;
  }
  function setText(id, text) {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  // -- HTTP (the session cookie travels by itself; the CSRF token on state changes) -------

  async function getJSON(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { signedOut(); throw new Error("signed out"); }
    if (!response.ok) {
      const error = new Error(path + ": HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }
  async function post(path, payload) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Spendgate-CSRF": CSRF },
      body: JSON.stringify(payload || {}),
    });
  }
  function signedOut() {
    // The session ended (signed out elsewhere, key revoked, server restarted): the page
    // reloads into the sign-in form rather than showing stale figures.
    window.location.reload();
  }

  // -- connection status and the live feed -------------------------------------------------

  const conn = document.getElementById("conn");
  function status(state, text) {
    if (!conn) return;
    conn.className = "conn " + state;
    setText("conn-text", text);
  }

  function connect(onMessage) {
    let attempt = 0;
    let timer = null;
    let socket = null;
    function open() {
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(scheme + "//" + window.location.host + "/ws/cost-monitoring");
      socket.onopen = function () {
        attempt = 0;
        status("live", "live");
      };
      socket.onmessage = function (event) {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        onMessage(message);
      };
      socket.onclose = function () {
        socket = null;
        attempt += 1;
        const delay = Math.min(30, 2 ** Math.min(attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
        let left = Math.ceil(delay);
        status("lost", "connection lost — reconnecting in " + left + " s");
        clearInterval(timer);
        timer = setInterval(function () {
          left -= 1;
          if (left > 0) status("lost", "connection lost — reconnecting in " + left + " s");
        }, 1000);
        setTimeout(function () {
          clearInterval(timer);
          status("lost", "connection lost — reconnecting…");
          // A refused handshake looks like any lost connection: ask whether we are still
          // signed in before trying again.
          fetch("/api/cost/current", { credentials: "same-origin" }).then(function (r) {
            if (r.status === 401) signedOut(); else open();
          }, open);
        }, delay * 1000);
      };
      socket.onerror = function () { /* onclose follows and reconnects */ };
    }
    open();
    window.addEventListener("online", function () { if (socket === null) open(); });
  }

  function throttle(fn, ms) {
    let last = 0;
    let pending = null;
    return function () {
      const wait = last + ms - Date.now();
      if (wait <= 0) { last = Date.now(); fn(); return; }
      if (pending === null) {
        pending = setTimeout(function () { pending = null; last = Date.now(); fn(); }, wait);
      }
    };
  }

  // -- charts (colours from the stylesheet, so dark mode follows) ---------------------------

  function colour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }
  function chart(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas || typeof Chart === "undefined") return null;
    const text = colour("--muted");
    const line = colour("--line");
    const options = Object.assign({
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { labels: { color: text, boxWidth: 12 } } },
    }, config.options || {});
    if (config.type !== "doughnut") {
      // A point's own amount, as every other figure on the page writes money.
      options.plugins.tooltip = { callbacks: { label: function (item) { return item.dataset.label + ": " + money(item.parsed.y); } } };
      options.scales = {
        x: { ticks: Object.assign({ color: text, maxRotation: 0, autoSkip: true, maxTicksLimit: window.innerWidth < 600 ? 4 : 8 }, config.xTicks), grid: { color: line } },
        y: { ticks: { color: text, callback: function (v, i, ticks) { return axisMoney(v, ticks); } }, grid: { color: line }, beginAtZero: true },
      };
    }
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].options = options;
      charts[id].update("none");
      return charts[id];
    }
    charts[id] = new Chart(canvas, { type: config.type, data: config.data, options: options });
    return charts[id];
  }

  // The minute axis is labelled on whole hours only (every 6 on a phone, every 3 wider),
  // not at whatever minute an even spacing lands on ("05:01"); the day axis reads "Jan 21".
  const HOUR_TICKS = {
    autoSkip: false,
    callback: function (value) {
      const label = this.getLabelForValue(value);
      const every = window.innerWidth < 600 ? 6 : 3;
      return /:00$/.test(label) && Number(label.slice(0, 2)) % every === 0 ? label : null;
    },
  };
  const DAY_TICKS = {
    callback: function (value) {
      const day = new Date(this.getLabelForValue(value) + "T12:00:00");
      return Number.isNaN(day.getTime()) ? this.getLabelForValue(value)
        : day.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    },
  };

  function drawTimeline(data) {
    setText("asof-charts", asOf(data.as_of));
    const today = data.today;
    chart("chart-today", {
      type: "line",
      data: {
        labels: today.map(function (p) { return p.t; }),
        datasets: [{
          label: "spend per minute", data: today.map(function (p) { return Number(p.cost); }),
          borderColor: colour("--paid"), backgroundColor: colour("--paid"),
          pointRadius: 0, borderWidth: 1.5, stepped: true,
        }],
      },
      xTicks: HOUR_TICKS,
    });
    const labels = data.days.map(function (p) { return p.t; });
    const spent = data.days.map(function (p) { return p.cost === null ? null : Number(p.cost); });
    const forecast = new Array(labels.length).fill(null);
    const f = data.forecast;
    if (f) {
      f.path.forEach(function (p, i) {
        const at = labels.indexOf(p.t);
        if (at >= 0) forecast[at] = p.cost;
        else if (i > 0) { labels.push(p.t); spent.push(null); forecast.push(p.cost); }
      });
      setText("forecast-note",
        "Month-end projection " + money(f.projected_total) + " (" + Math.round(f.level * 100) +
        "% interval " + money(f.interval.low) + " – " + money(f.interval.high) + "; " + f.method +
        ", " + f.confidence + " confidence: " + f.reason + ")" +
        (f.monthly_budget ? " against a monthly budget of " + money(f.monthly_budget) +
          (f.monthly_budget_from ? " (" + f.monthly_budget_from.basis + ", scope " + f.monthly_budget_from.scope + ")" : "") : ""));
      setText("asof-forecast", asOf(f.as_of));
    } else if (PAGE === "dashboard") {
      setText("forecast-note", "No forecast yet: insufficient history (it needs six hours of data).");
    }
    const datasets = [{
      type: "bar", label: "spent", data: spent,
      backgroundColor: colour("--paid"), borderWidth: 0,
    }];
    if (f) {
      datasets.push({
        type: "line", label: "forecast", data: forecast, borderColor: colour("--forecast"),
        backgroundColor: colour("--band"), borderDash: [5, 4], pointRadius: 2, spanGaps: true,
      });
    }
    chart("chart-days", { type: "bar", data: { labels: labels, datasets: datasets }, xTicks: DAY_TICKS });
  }

  // -- tiles, budgets and the ladder gauge -------------------------------------------------

  // What a live figure counts: every event today ("all"), or one budget in its scope.
  function scopeOf(figure) {
    if (!figure) return "";
    if (figure.budget) return "budget " + figure.budget + " · scope " + figure.scope;
    if (figure.scope === "all") return "all spend today";
    return figure.scope ? "scope " + figure.scope : "";
  }

  function tile(id, value, note, iso, figure) {
    const node = document.getElementById(id);
    if (!node) return;
    const scopeNode = node.querySelector(".scope");
    if (scopeNode && figure !== undefined) scopeNode.replaceChildren(...nameNodes(scopeOf(figure)));
    const valueNode = node.querySelector(".value");
    // The figure as the server sent it (exact decimal text), for a reader who hovers.
    if (figure && typeof figure.value === "string") valueNode.title = figure.value;
    // A value in words ("not running out") is set smaller than a figure, so it fits a tile.
    valueNode.classList.toggle("words", !/\d/.test(value));
    if (valueNode.textContent !== value) {
      valueNode.textContent = value;
      node.classList.add("flash");
      setTimeout(function () { node.classList.remove("flash"); }, 600);
    }
    const noteNode = node.querySelector(".note");
    if (noteNode && note !== undefined) noteNode.textContent = note;
    node.querySelector(".as-of").textContent = asOf(iso);
  }

  // A budget's gauge: the bar with a mark at each rung of its ladder, and below it a legend
  // of the rungs in the same order ("warn 60%  degrade 70%  stop 80%"). The legend wraps as
  // text does, so rungs close together never print their names over each other (a label
  // under each mark did: "degradestop" at phone width).
  function gauge(container, budget) {
    container.replaceChildren();
    const used = Number(budget.spent) + Number(budget.reserved || 0);
    const bar = el("div", { class: "bar" });
    const fill = el("div", { class: "fill " + budget.level });
    // The server's one percentage of the budget (budgets.used_percent), never recomputed here.
    fill.style.width = Math.max(0, Math.min(100, Number(budget.used_percent) || 0)).toFixed(1) + "%";
    bar.append(fill);
    const ladder = el("ul", { class: "ladder" });
    const rungs = [];
    for (const rung of ["warn", "degrade", "stop"]) {
      const at = budget.thresholds ? budget.thresholds[rung] : undefined;
      if (at === undefined || at === null) continue;
      const share = +(Number(at) * 100).toFixed(1) + "%";  // "60%", "12.5%"
      const mark = el("div", { class: "rung", title: rung + " at " + share });
      mark.style.left = Math.min(100, Number(at) * 100).toFixed(1) + "%";
      bar.append(mark);
      const reached = ORDER.indexOf(budget.level) >= ORDER.indexOf(rung);
      ladder.append(el("li", { class: rung + (reached ? " reached" : "") }, [
        el("span", { class: "name", text: rung }), document.createTextNode(" " + share),
      ]));
      rungs.push(rung + " at " + share);
    }
    container.append(bar);
    if (rungs.length) container.append(ladder);
    container.setAttribute("role", "img");
    container.setAttribute("aria-label", budget.name + ": " + money(used) + " of " + money(budget.limit) +
      ", level " + budget.level + (rungs.length ? "; " + rungs.join(", ") : ""));
  }

  let primaryBudget = null;

  function drawLive(state) {
    const m = state.live_figures;
    const spend = m.current_daily_spend;
    // Savings vs traditional only when a traditional cost is configured (else null).
    tile("tile-current_daily_spend", money(spend.value), (state.status && state.status.cost_efficiency) || "", spend.as_of, spend);
    // The budget tile, its percentage and its gauge are one budget's figures from one
    // reading (the same message): never today's total spend beside a budget's remainder.
    const left = m.budget_remaining;
    const leftPct = m.budget_remaining_percent;
    const used = m.budget_used;
    primaryBudget = left.budget || null;
    tile("tile-budget_remaining", left.value === null ? "no budget" : money(left.value),
      leftPct && leftPct.value !== null
        ? num(leftPct.value) + "% left" + (used && used.value !== null ? " · " + money(used.value) + " used" : "")
        : "",
      left.as_of, left);
    const free = m.free_source_success_rate;
    tile("tile-free_source_success_rate", pct(free.value), state.status ? state.status.free_source_performance : "", free.as_of, free);
    tile("tile-requests_per_minute", num(m.requests_per_minute.value), "last 15 minutes", m.requests_per_minute.as_of, m.requests_per_minute);
    tile("tile-cost_per_request", money(m.cost_per_request.value), "priced requests", m.cost_per_request.as_of, m.cost_per_request);
    const projection = m.projected_daily_total;
    tile("tile-projected_daily_total", money(projection.value),
      projection.method === "intraday_burn_rate" ? "at the recent pace"
        : "spent so far: under 6 hours of today's data", projection.as_of, projection);
    const runway = m.time_until_budget_exhausted;
    const before = m.runs_out_before_reset ? m.runs_out_before_reset.value : null;
    tile("tile-time_until_budget_exhausted", runway.budget ? duration(runway.value) : "no budget",
      before === true ? "runs out before the reset" : before === false ? "lasts until the reset" : "", runway.as_of, runway);
    if (state.budgets) drawBudgets(state.budgets);
  }

  function drawBudgets(budgets) {
    const list = document.getElementById("budgets");
    if (!list) return;
    list.replaceChildren();
    const mainGauge = document.getElementById("main-gauge");
    if (mainGauge) mainGauge.replaceChildren();  // drawn again below if its budget is listed
    let newest = null;
    for (const b of budgets) {
      const g = el("div", { class: "gauge" });
      gauge(g, b);
      list.append(el("div", { class: "budget", "data-budget": b.name }, [
        el("div", { class: "line" }, [
          el("strong", { text: b.name }),
          el("span", { class: "badge " + b.level, text: b.level }),
        ]),
        el("div", { class: "line note" }, [
          el("span", { class: "used", title: b.spent + " spent + " + b.reserved + " held of " + b.limit + " (" + b.used_percent + "%)",
            text: money(b.spent) + " spent" + (Number(b.reserved) ? " + " + money(b.reserved) + " held" : "") + " of " + money(b.limit) }),
          el("span", { class: "left", title: b.remaining + " left", text: money(b.remaining) + " left · " + b.window + " · " + b.scope }),
        ]),
        g,
      ]));
      if (b.name === primaryBudget && mainGauge) gauge(mainGauge, b);
      newest = b.as_of || newest;
    }
    if (!budgets.length) list.append(el("p", { class: "note", text: "No budgets configured." }));
    setText("asof-budgets", asOf(newest));
    syncAlertsWithBudgets(budgets);
  }

  // -- alerts: live cost_alert messages, acknowledge and silence ---------------------------

  const alerts = new Map();
  const acked = new Set(JSON.parse(sessionStorage.getItem("spendgate.acked") || "[]"));
  const silenced = JSON.parse(sessionStorage.getItem("spendgate.silenced") || "{}");
  const alertRoutes = { list: null, acknowledge: null, silence: null };
  let alertRoutesFound = Promise.resolve();  // settles once detectAlertRoutes() has looked

  function alertKey(a) {
    return a.id !== undefined && a.id !== null ? "id:" + a.id : (a.budget || a.rule || a.type) + ":" + (a.level || "");
  }
  function addAlert(a) {
    if (a.alert_id !== undefined) {
      // An alert from the store (the API or a cost_alert message): its id, title and times.
      a = Object.assign({}, a, { id: a.alert_id, timestamp: a.resolved_at || a.fired_at });
      if (a.acknowledged_at) a.ackNote = "acknowledged by " + (a.acknowledged_by || "someone");
      if (a.silenced_until) silenced["id:" + a.alert_id] = Date.parse(a.silenced_until);
    }
    const key = alertKey(a);
    if (a.state === "resolved") {
      alerts.delete(key);
    } else {
      const old = alerts.get(key) || {};
      alerts.set(key, Object.assign(old, a, { key: key }));
    }
    drawAlerts();
  }
  function syncAlertsWithBudgets(budgets) {
    // A budget back at "normal" (a new window) ends its level alerts.
    let changed = false;
    for (const b of budgets) {
      for (const [key, a] of alerts) {
        if (a.id === undefined && a.budget === b.name && ORDER.indexOf(b.level) < ORDER.indexOf(a.level)) {
          alerts.delete(key);
          changed = true;
        }
      }
    }
    if (changed) drawAlerts();
  }
  function routeFor(template, id) {
    return template.replace(/\{[^}]+\}/, encodeURIComponent(id));
  }

  async function acknowledge(a) {
    acked.add(a.key);
    sessionStorage.setItem("spendgate.acked", JSON.stringify(Array.from(acked)));
    // Say "acknowledged" only once the server has it: until then the page would promise
    // what a reload (or another viewer) might not show. A click before the alert routes
    // are known waits for them rather than settling for this browser.
    a.ackNote = "acknowledging…";
    drawAlerts();
    await alertRoutesFound;
    if (a.id !== undefined && alertRoutes.acknowledge) {
      try {
        const r = await post(routeFor(alertRoutes.acknowledge, a.id), {});
        a.ackNote = r.ok ? "acknowledged on the server" : r.status === 404 ? "acknowledged (in this browser)" : "acknowledged here; the server said " + r.status;
      } catch (e) {
        a.ackNote = "acknowledged (in this browser)";
      }
    } else {
      a.ackNote = "acknowledged (in this browser)";
    }
    drawAlerts();
  }

  async function silence(a, minutes) {
    const until = Date.now() + minutes * 60000;
    silenced[a.budget || a.key] = until;
    sessionStorage.setItem("spendgate.silenced", JSON.stringify(silenced));
    drawAlerts();
    await alertRoutesFound;
    if (a.id !== undefined && alertRoutes.silence) {
      try { await post(routeFor(alertRoutes.silence, a.id), { seconds: minutes * 60 }); } catch (e) { /* local silence stands */ }
    }
    drawAlerts();
    setTimeout(drawAlerts, minutes * 60000 + 50);
  }

  function drawAlerts() {
    const list = document.getElementById("alerts");
    if (!list) return;
    list.replaceChildren();
    const now = Date.now();
    let newest = null;
    const shown = Array.from(alerts.values()).filter(function (a) {
      return !(silenced[a.key] > now) && !(silenced[a.budget || a.key] > now);
    }).sort(function (x, y) { return String(y.timestamp || "").localeCompare(String(x.timestamp || "")); });
    for (const a of shown) {
      const isAcked = acked.has(a.key) || a.state === "acknowledged" || Boolean(a.acknowledged_at);
      const title = a.title || (a.budget
        ? "Budget " + a.budget + " reached " + a.level
        : (a.summary || a.message || a.type));
      const detail = a.remaining !== undefined ? money(a.remaining) + " left" + (a.limit ? " of " + money(a.limit) : "") : (a.message || "");
      const actions = el("div", { class: "actions" });
      if (isAcked) {
        actions.append(el("span", { class: "note ack-state", text: a.ackNote || "acknowledged" }));
      } else {
        const ack = el("button", { type: "button", class: "ack", text: "Acknowledge" });
        ack.addEventListener("click", function () { acknowledge(a); });
        actions.append(ack);
      }
      const mute = el("button", { type: "button", class: "silence", text: "Silence 1 h" });
      mute.addEventListener("click", function () { silence(a, 60); });
      actions.append(mute);
      list.append(el("li", { class: "alert " + (a.severity || "warning") + (isAcked ? " acknowledged" : ""), "data-alert": a.key }, [
        el("div", { class: "title", text: title }),
        el("div", { class: "note", text: detail }),
        el("div", { class: "as-of", text: asOf(a.timestamp || a.as_of) }),
        actions,
      ]));
      newest = newest || a.timestamp || a.as_of;
    }
    if (!shown.length) list.append(el("li", { class: "empty", text: "No active alerts." }));
    setText("asof-alerts", asOf(newest || new Date().toISOString()));
  }

  async function detectAlertRoutes() {
    // The alert routes (issue 7) are used when the server has them, found in its OpenAPI
    // document; without them acknowledging and silencing stay in this browser.
    try {
      const doc = await getJSON("/openapi.json");
      for (const path of Object.keys(doc.paths || {})) {
        if (/^\/api\/alerts\/?$/.test(path) && doc.paths[path].get) alertRoutes.list = path;
        if (/^\/api\/alerts\/\{[^}]+\}\/acknowledge$/.test(path)) alertRoutes.acknowledge = path;
        if (/^\/api\/alerts\/\{[^}]+\}\/silence$/.test(path)) alertRoutes.silence = path;
        if (path === "/api/notifications" && doc.paths[path].get) deadRoute = path;
      }
      if (alertRoutes.list) {
        const found = await getJSON(alertRoutes.list);
        const items = Array.isArray(found) ? found : (found.alerts || found.items || []);
        for (const a of items) {
          if (a && a.state !== "resolved") addAlert(Object.assign({ severity: "warning" }, a));
        }
      }
    } catch (e) {
      /* no OpenAPI access or no alert routes: local acknowledgement only */
    }
  }

  // -- dead letters: notifications that ended undelivered (their channel was deleted) ------

  let deadRoute = null;  // found in the OpenAPI document; an admin's session may read it

  async function refreshDeadLetters() {
    // The page has the section for an unlimited admin's session only (who may read them).
    const section = document.getElementById("dead-letters");
    const list = document.getElementById("dead-list");
    if (!section || !list) return;
    await alertRoutesFound;
    if (!deadRoute) return;
    let rows;
    try {
      rows = await getJSON(deadRoute + "?state=dead&limit=20");
    } catch (e) {
      report(e);
      return;
    }
    list.replaceChildren();
    for (const n of rows) {
      list.append(el("li", { class: "alert dead", "data-notification": n.key }, [
        el("div", { class: "title", text: "Not delivered to " + n.channel }),
        el("div", { class: "note", text: n.last_error || "" }),
        el("div", { class: "note", text: "alert " + n.alert_id }),
        el("div", { class: "as-of", text: asOf(n.dead_at) }),
      ]));
    }
    section.hidden = rows.length === 0;  // each row says when it ended
  }

  // -- the dashboard's sections -----------------------------------------------------------

  function drawDashboard(doc) {
    const d = doc.data;
    drawLive({ live_figures: d.live_figures, status: doc.status, budgets: d.budgets });
    const breakdown = d.service_breakdown;
    const services = document.querySelector("#services tbody");
    services.replaceChildren();
    for (const [name, t] of Object.entries(breakdown.services)) {
      services.append(el("tr", {}, [
        el("td", {}, [el("a", { href: "/services/" + encodeURIComponent(name) }, nameNodes(name))]),
        el("td", { class: "num", text: money(t.total_cost) }),
        el("td", { class: "num", text: String(t.total_requests) }),
        el("td", { class: "num", text: pct(t.free_source_success_rate) }),
        el("td", { class: "num", text: money(t.average_cost_per_request) }),
      ]));
    }
    if (!Object.keys(breakdown.services).length) services.append(el("tr", {}, [el("td", { colspan: "5", class: "note", text: "No requests today yet." })]));
    setText("asof-services", asOf(breakdown.as_of));
    const sources = document.querySelector("#sources tbody");
    sources.replaceChildren();
    for (const [name, t] of Object.entries(breakdown.sources)) {
      sources.append(el("tr", {}, [
        el("td", {}, nameNodes(name)),
        el("td", { class: "num", text: money(t.total_cost) }),
        el("td", { class: "num", text: String(t.total_requests) }),
        el("td", { class: "num", text: pct(t.cache_hit_rate) }),
      ]));
    }
    setText("asof-sources", asOf(breakdown.as_of));

    const s = d.daily_summary;
    chart("chart-free", {
      type: "doughnut",
      data: {
        labels: ["free", "paid", "unpriced"],
        datasets: [{
          data: [s.free_requests, s.paid_requests, s.unpriced_requests],
          backgroundColor: [colour("--free"), colour("--paid"), colour("--warn")],
          borderColor: colour("--panel"),
        }],
      },
    });
    setText("free-note", s.free_requests + " free, " + s.paid_requests + " paid" +
      (s.unpriced_requests ? ", " + s.unpriced_requests + " unpriced" : "") + " of " + s.total_requests +
      " requests; paid spend " + money(s.total_cost));
    setText("asof-free", asOf(s.as_of));

    const opps = document.getElementById("opportunities");
    opps.replaceChildren();
    for (const o of d.optimization_opportunities) {
      opps.append(el("li", {}, [
        el("div", {}, [el("span", { class: "saving", text: "save " + money(o.saving) + " in " + (+Number(o.window_days).toFixed(2)) + " days" }),
          document.createTextNode(" (" + money(o.monthly_saving) + " in 30 days) · " + o.kind.replace(/_/g, " "))]),
        el("div", { class: "note", text: o.summary }),
      ]));
    }
    if (!d.optimization_opportunities.length) opps.append(el("li", { class: "empty", text: "None found." }));
    setText("asof-opps", asOf(doc.timestamp));
    for (const w of d.alerts_and_warnings) addAlert(Object.assign({ timestamp: w.as_of }, w));
    drawAlerts();
  }

  function drawStreams(doc) {
    const m = doc.market;
    const market = document.getElementById("market");
    market.replaceChildren(
      document.createTextNode("Market" + (m.calendar ? " (" + m.calendar + ")" : "") + ": "),
      el("span", { class: "badge " + (m.state === "open" || m.state === "always" ? "open" : "closed"), text: m.state }),
      document.createTextNode(m.reason ? " " + m.reason : ""),
    );
    const rows = document.querySelector("#streams tbody");
    rows.replaceChildren();
    for (const s of doc.streams) {
      rows.append(el("tr", {}, [
        el("td", {}, nameNodes(s.source)),
        el("td", { class: "num", text: bytes(s.data_bytes) }),
        el("td", { class: "num", text: Number(s.events_processed).toLocaleString() }),
        el("td", { class: "num", text: num(s.connection_hours, 2) + " h" }),
        el("td", { class: "num", text: money(s.estimated_cost) }),
        el("td", {}, [el("span", { class: "badge " + s.level, text: s.level })]),
      ]));
    }
    if (!doc.streams.length) rows.append(el("tr", {}, [el("td", { colspan: "6", class: "note", text: "No streamed sources configured." })]));
    setText("asof-streams", asOf(doc.as_of));
  }

  function report(error) {
    if (error && error.message !== "signed out") console.warn("spendgate:", error.message);
  }

  function startDashboard() {
    const refreshAll = throttle(function () { getJSON("/cost/dashboard/live").then(drawDashboard, report); }, 5000);
    const refreshCharts = throttle(function () { getJSON("/api/dashboard/charts").then(drawTimeline, report); }, 10000);
    const refreshStreams = throttle(function () { getJSON("/api/dashboard/streams").then(drawStreams, report); }, 15000);
    getJSON("/api/dashboard/charts").then(drawTimeline, report);
    getJSON("/api/dashboard/streams").then(drawStreams, report);
    getJSON("/cost/dashboard/live").then(drawDashboard, report);
    alertRoutesFound = detectAlertRoutes();
    refreshDeadLetters();
    const refreshDead = throttle(refreshDeadLetters, 5000);
    setInterval(refreshDead, 60000);  // a round ends a dead letter without a message
    connect(function (message) {
      if (message.type === "cost_state" || message.type === "cost_update" || message.type === "current_metrics") {
        drawLive(message.data);
        if (message.type === "cost_update") { refreshAll(); refreshCharts(); refreshStreams(); }
      } else if (message.type === "cost_alert") {
        addAlert(message.alert);
        refreshDead();
      }
    });
    setInterval(refreshCharts, 60000); // the minute axis moves on even when nothing is spent
  }

  // -- a service's page ----------------------------------------------------------------------

  function startService() {
    const path = encodeURIComponent(SERVICE);
    let period = "today";
    function fail(error) {
      if (error && error.status === 404) {
        const node = document.getElementById("service-error");
        node.hidden = false;
        node.textContent = "No service named " + SERVICE + " has recorded anything yet.";
      }
      report(error);
    }
    function summary() {
      getJSON("/cost/services/" + path + "/metrics?period=" + period).then(function (s) {
        tile("svc-total_cost", money(s.total_cost), undefined, s.as_of);
        tile("svc-total_requests", String(s.total_requests), undefined, s.as_of);
        tile("svc-free_source_success_rate", pct(s.free_source_success_rate), undefined, s.as_of);
        tile("svc-cache_hit_rate", pct(s.cache_hit_rate), undefined, s.as_of);
        tile("svc-average_cost_per_request", money(s.average_cost_per_request), undefined, s.as_of);
        const q = s.quality_metrics ? s.quality_metrics.average_quality_score : null;
        tile("svc-quality", q === null || q === undefined ? "–" : num(q, 2), undefined, s.as_of);
        const rows = document.querySelector("#sources tbody");
        rows.replaceChildren();
        for (const [name, t] of Object.entries(s.sources || {})) {
          rows.append(el("tr", {}, [
            el("td", {}, nameNodes(name)),
            el("td", { class: "num", text: money(t.total_cost) }),
            el("td", { class: "num", text: String(t.total_requests) }),
            el("td", { class: "num", text: pct(t.free_source_success_rate) }),
            el("td", { class: "num", text: pct(t.cache_hit_rate) }),
            el("td", { class: "num", text: money(t.average_cost_per_request) }),
          ]));
        }
        setText("asof-sources", asOf(s.as_of));
      }, fail);
    }
    function trends() {
      getJSON("/api/cost/service/" + path + "/performance?days=30").then(function (p) {
        const list = document.getElementById("trends");
        list.replaceChildren();
        for (const [name, t] of Object.entries(p.trends || {})) {
          list.append(el("li", {}, [el("strong", { text: name.replace(/_/g, " ") + ": " }), document.createTextNode(t.summary || t.trend)]));
        }
        setText("asof-trends", asOf(p.as_of));
      }, fail);
    }
    function timeline() {
      getJSON("/api/dashboard/charts?service=" + path).then(drawTimeline, fail);
    }
    for (const button of document.querySelectorAll("[data-period]")) {
      button.addEventListener("click", function () {
        period = button.dataset.period;
        for (const b of document.querySelectorAll("[data-period]")) b.setAttribute("aria-pressed", String(b === button));
        summary();
      });
    }
    summary(); trends(); timeline();
    const refresh = throttle(function () { summary(); timeline(); }, 3000);
    connect(function (message) { if (message.type === "cost_update") refresh(); });
  }

  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      for (const id of Object.keys(charts)) { charts[id].destroy(); delete charts[id]; }
      if (PAGE === "dashboard") getJSON("/cost/dashboard/live").then(drawDashboard, report);
      getJSON("/api/dashboard/charts" + (SERVICE ? "?service=" + encodeURIComponent(SERVICE) : "")).then(drawTimeline, report);
    });
  }
  if (PAGE === "dashboard") startDashboard();
  else if (PAGE === "service") startService();
})();
