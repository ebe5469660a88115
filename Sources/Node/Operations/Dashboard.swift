/// The dashboard at `GET /`: one static page compiled into the binary (no CDN, no build step). It refreshes
/// itself every 2 s from the JSON API and `/metrics`: queues × status counts, throughput and latency over the
/// last 10 minutes (a hand-drawn canvas chart), recent failures with their `last_error`, a batch's detail with its
/// first rows, and retry/cancel buttons. Every value from the server is inserted as text (never as HTML).
enum Dashboard {
    /// Scripts and styles only from the page itself; fetches only to this origin.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>ValkeyFlight dashboard</title>
        <style>
          :root { --bg:#0f1419; --panel:#171d24; --line:#2a333d; --text:#d8dee5; --dim:#8b97a3; --accent:#4fb3ff;
                  --ok:#3fb950; --warn:#d29922; --bad:#f85149; --mute:#6e7681; }
          * { box-sizing: border-box; }
          body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--text); }
          header { display:flex; align-items:center; gap:16px; padding:12px 20px; border-bottom:1px solid var(--line); }
          header h1 { font-size:18px; margin:0; font-weight:600; }
          header .dot { width:10px; height:10px; border-radius:50%; background:var(--mute); display:inline-block; }
          header .dot.ok { background:var(--ok); } header .dot.bad { background:var(--bad); }
          header .meta { color:var(--dim); font-size:12px; margin-left:auto; }
          main { display:grid; grid-template-columns: minmax(0,1.2fr) minmax(0,1fr); gap:16px; padding:16px 20px; }
          section { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 14px; min-width:0; }
          section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--dim); margin:0 0 10px; font-weight:600; }
          .wide { grid-column: 1 / -1; }
          table { border-collapse:collapse; width:100%; font-variant-numeric: tabular-nums; }
          th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
          th { color:var(--dim); font-weight:500; font-size:12px; }
          td.n { text-align:right; } th.n { text-align:right; }
          tr.click { cursor:pointer; } tr.click:hover td { background:#1e2630; }
          .s-pending{color:var(--accent)} .s-processing{color:var(--warn)} .s-retry_wait{color:#a371f7}
          .s-completed{color:var(--ok)} .s-failed{color:var(--bad)} .s-cancelled{color:var(--mute)}
          .err { color:#ffa198; font-family: ui-monospace, monospace; font-size:12px; white-space:pre-wrap; word-break:break-word; }
          .mono { font-family: ui-monospace, monospace; font-size:12px; word-break:break-all; }
          .empty { color:var(--dim); font-style:italic; }
          canvas { width:100%; height:220px; display:block; }
          .legend { display:flex; gap:16px; font-size:12px; color:var(--dim); margin-top:6px; }
          .legend i { display:inline-block; width:10px; height:3px; vertical-align:middle; margin-right:5px; }
          button { background:#21262d; color:var(--text); border:1px solid var(--line); border-radius:6px; padding:4px 12px; cursor:pointer; }
          button:hover { border-color:var(--accent); }
          .kv { display:grid; grid-template-columns: 120px 1fr; gap:2px 10px; margin-bottom:10px; }
          .kv div:nth-child(odd) { color:var(--dim); }
          #message { color:var(--warn); font-size:12px; }
          .scroll { overflow:auto; max-height:320px; }
        </style>
        </head>
        <body>
        <header>
          <span id="ready" class="dot" title="readiness"></span>
          <h1>ValkeyFlight</h1>
          <span id="message"></span>
          <span class="meta" id="updated">loading…</span>
        </header>
        <main>
          <section>
            <h2>Queues</h2>
            <table id="queues"><thead><tr><th>queue</th><th class="n">pending</th><th class="n">processing</th>
              <th class="n">retry_wait</th><th class="n">completed</th><th class="n">failed</th><th class="n">cancelled</th></tr></thead>
              <tbody id="queue-rows"><tr><td colspan="7" class="empty">no queues yet</td></tr></tbody></table>
          </section>
          <section>
            <h2>Throughput and latency (last 10 minutes)</h2>
            <canvas id="chart" width="600" height="220"></canvas>
            <div class="legend"><span><i style="background:#3fb950"></i>completed / s</span>
              <span><i style="background:#f85149"></i>failed attempts / s</span>
              <span><i style="background:#d29922"></i>mean processing ms (right axis)</span></div>
          </section>
          <section>
            <h2>Recent failures</h2>
            <div class="scroll"><table><thead><tr><th>batch</th><th class="n">attempts</th><th>updated</th><th>last error</th></tr></thead>
              <tbody id="failures"><tr><td colspan="4" class="empty">none</td></tr></tbody></table></div>
          </section>
          <section>
            <h2 id="batches-title">Recent batches</h2>
            <div class="scroll"><table><thead><tr><th>batch</th><th>status</th><th class="n">rows</th><th>updated</th></tr></thead>
              <tbody id="batches"><tr><td colspan="4" class="empty">none</td></tr></tbody></table></div>
          </section>
          <section class="wide" id="detail-section">
            <h2>Batch detail</h2>
            <div id="detail" class="empty">Select a batch above.</div>
          </section>
        </main>
        <script>
        "use strict";
        const STATES = ["pending", "processing", "retry_wait", "completed", "failed", "cancelled"];
        const samples = [];           // {t, completed, failed, sum, count}
        let selectedQueue = null;
        let selectedKey = null;

        function el(tag, attrs, ...children) {
          const node = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) {
            if (k === "class") node.className = v; else if (k === "onclick") node.onclick = v; else node.setAttribute(k, v);
          }
          for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
          return node;
        }
        function replace(id, nodes, emptyText, columns) {
          const target = document.getElementById(id);
          target.replaceChildren(...(nodes.length ? nodes : [el("tr", {}, el("td", {colspan: columns, class: "empty"}, emptyText))]));
        }
        async function getJSON(path) {
          const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
          const text = await r.text();
          let body; try { body = JSON.parse(text); } catch (e) { body = {error: text}; }
          if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
          return body;
        }
        function when(text) { return text ? text.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }

        async function refreshQueues() {
          const stats = await getJSON("api/stats");
          const rows = Object.keys(stats).sort().map(q => {
            const counts = stats[q];
            return el("tr", {class: "click", onclick: () => { selectedQueue = q; refreshBatches(); }},
              el("td", {class: "mono"}, q), ...STATES.map(s => el("td", {class: "n s-" + s}, counts[s] || 0)));
          });
          replace("queue-rows", rows, "no queues yet", 7);
        }
        function batchRow(b, cells) {
          return el("tr", {class: "click", onclick: () => {
            selectedKey = b.key; history.replaceState(null, "", "#batch=" + encodeURIComponent(b.key)); refreshDetail();
          }}, ...cells);
        }
        async function refreshFailures() {
          const failed = await getJSON("api/batches?status=failed&limit=20");
          replace("failures", failed.map(b => batchRow(b, [el("td", {class: "mono"}, b.key),
            el("td", {class: "n"}, b.attempts + "/" + b.max_attempts), el("td", {}, when(b.updated_at)),
            el("td", {class: "err"}, b.last_error || "")])), "none", 4);
        }
        async function refreshBatches() {
          const query = selectedQueue ? "api/batches?limit=20&queue=" + encodeURIComponent(selectedQueue) : "api/batches?limit=20";
          document.getElementById("batches-title").textContent = selectedQueue ? "Recent batches of " + selectedQueue : "Recent batches";
          const list = await getJSON(query);
          replace("batches", list.map(b => batchRow(b, [el("td", {class: "mono"}, b.key),
            el("td", {class: "s-" + b.status}, b.status), el("td", {class: "n"}, b.rows), el("td", {}, when(b.updated_at))])), "none", 4);
        }
        async function act(action) {
          const parts = selectedKey.split("/");
          const path = "api/batches/" + parts.map(encodeURIComponent).join("/") + "/" + action;
          const r = await fetch(path, {method: "POST", credentials: "same-origin", headers: {"X-Requested-With": "valkeyflight-dashboard"}});
          const body = await r.json().catch(() => ({}));
          setMessage(r.ok ? action + ": " + selectedKey + " is " + body.status : action + " failed: " + (body.error || r.status));
          await refreshAll();
        }
        async function refreshDetail() {
          if (!selectedKey) return;
          const target = document.getElementById("detail");
          let d;
          try { d = await getJSON("api/batches/" + selectedKey.split("/").map(encodeURIComponent).join("/")); }
          catch (e) { target.replaceChildren(el("div", {class: "err"}, String(e.message))); return; }
          const s = d.status || {};
          const kv = el("div", {class: "kv"});
          for (const [k, v] of [["key", d.key], ["status", s.status], ["attempts", s.attempts + "/" + s.max_attempts],
                                ["worker", s.worker], ["location", s.location], ["result", s.result_key],
                                ["created", when(s.created_at)], ["updated", when(s.updated_at)],
                                ["rows", d.data ? d.data.rows : s.rows], ["bytes", d.data ? d.data.bytes : s.bytes], ["data", d.data_source]]) {
            kv.append(el("div", {}, k), el("div", {class: k === "status" ? "s-" + v : "mono"}, v == null ? "—" : v));
          }
          const nodes = [kv];
          if (s.last_error) nodes.push(el("div", {class: "err"}, "last error: " + s.last_error));
          const buttons = el("div", {style: "margin:10px 0"});
          if (s.status === "failed" || s.status === "cancelled") buttons.append(el("button", {onclick: () => act("retry")}, "Retry"));
          if (["pending", "processing", "retry_wait"].includes(s.status)) buttons.append(el("button", {onclick: () => act("cancel")}, "Cancel"));
          nodes.push(buttons);
          if (d.data && d.data.schema) {
            const cols = d.data.schema.map(f => f.name);
            const head = el("tr", {}, ...d.data.schema.map(f => el("th", {}, f.name + " ", el("span", {class: "empty"}, f.type))));
            const body = d.data.preview.map(row => el("tr", {}, ...cols.map(c => el("td", {class: "mono"},
              row[c] === null ? "null" : (typeof row[c] === "object" ? JSON.stringify(row[c]) : row[c])))));
            nodes.push(el("div", {class: "scroll"}, el("table", {}, el("thead", {}, head), el("tbody", {}, ...body))));
            nodes.push(el("div", {class: "empty"}, "first " + d.data.preview.length + " of " + d.data.rows + " rows"));
          }
          target.className = "";
          target.replaceChildren(...nodes);
        }

        function parseMetrics(text) {
          const out = {completed: 0, failed: 0, sum: 0, count: 0};
          for (const line of text.split("\n")) {
            if (!line || line[0] === "#") continue;
            const value = parseFloat(line.slice(line.lastIndexOf(" ") + 1));
            if (line.startsWith("valkeyflight_batch_attempts_total{")) {
              if (line.includes('outcome="completed"')) out.completed += value;
              if (line.includes('outcome="failed"') || line.includes('outcome="retry"')) out.failed += value;
            } else if (line.startsWith("valkeyflight_batch_processing_seconds_sum{")) out.sum += value;
            else if (line.startsWith("valkeyflight_batch_processing_seconds_count{")) out.count += value;
          }
          return out;
        }
        async function refreshChart() {
          const r = await fetch("metrics", {credentials: "same-origin", cache: "no-store"});
          if (!r.ok) return;
          const m = parseMetrics(await r.text());
          m.t = Date.now() / 1000;
          samples.push(m);
          while (samples.length && samples[0].t < m.t - 600) samples.shift();
          drawChart();
        }
        function drawChart() {
          const canvas = document.getElementById("chart");
          const ratio = window.devicePixelRatio || 1;
          const width = canvas.clientWidth || 600, height = canvas.clientHeight || 220;
          canvas.width = width * ratio; canvas.height = height * ratio;
          const g = canvas.getContext("2d");
          g.scale(ratio, ratio);
          g.clearRect(0, 0, width, height);
          const pad = {l: 40, r: 46, t: 10, b: 20};
          const points = [];
          for (let i = 1; i < samples.length; i++) {
            const a = samples[i - 1], b = samples[i], dt = Math.max(0.001, b.t - a.t);
            const dc = b.count - a.count;
            points.push({t: b.t, completed: Math.max(0, b.completed - a.completed) / dt, failed: Math.max(0, b.failed - a.failed) / dt,
                         latency: dc > 0 ? (b.sum - a.sum) / dc * 1000 : null});
          }
          // The window grows with the samples: from one minute up to the last 10 minutes.
          const now = Date.now() / 1000;
          const span = Math.min(600, Math.max(60, samples.length ? now - samples[0].t : 60));
          const t0 = now - span;
          const x = t => pad.l + (t - t0) / span * (width - pad.l - pad.r);
          const maxRate = Math.max(1, ...points.map(p => Math.max(p.completed, p.failed)));
          const maxLatency = Math.max(1, ...points.map(p => p.latency || 0));
          const y = (v, max) => height - pad.b - v / max * (height - pad.t - pad.b);
          g.strokeStyle = "#2a333d"; g.fillStyle = "#8b97a3"; g.font = "11px system-ui"; g.lineWidth = 1;
          for (let i = 0; i <= 4; i++) {
            const yy = pad.t + i * (height - pad.t - pad.b) / 4;
            g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(width - pad.r, yy); g.stroke();
            g.fillText((maxRate * (4 - i) / 4).toFixed(maxRate < 10 ? 1 : 0), 4, yy + 4);
            g.fillText((maxLatency * (4 - i) / 4).toFixed(maxLatency < 10 ? 1 : 0), width - pad.r + 4, yy + 4);
          }
          for (let i = 0; i <= 5; i++) {
            const ago = span * (5 - i) / 5;
            g.fillText(ago >= 120 ? "-" + Math.round(ago / 60) + "m" : "-" + Math.round(ago) + "s", x(t0 + span * i / 5) - 10, height - 4);
          }
          const line = (key, max, color) => {
            g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
            let started = false;
            for (const p of points) {
              if (p[key] == null) { started = false; continue; }
              if (!started) { g.moveTo(x(p.t), y(p[key], max)); started = true; } else g.lineTo(x(p.t), y(p[key], max));
            }
            g.stroke();
          };
          line("completed", maxRate, "#3fb950");
          line("failed", maxRate, "#f85149");
          line("latency", maxLatency, "#d29922");
        }
        function setMessage(text) { document.getElementById("message").textContent = text; }
        async function refreshReady() {
          const r = await fetch("readyz", {credentials: "same-origin", cache: "no-store"});
          const dot = document.getElementById("ready");
          dot.className = "dot " + (r.ok ? "ok" : "bad");
          dot.title = (await r.text()).trim();
        }
        async function refreshAll() {
          const results = await Promise.allSettled([refreshReady(), refreshQueues(), refreshFailures(), refreshBatches(),
                                                    refreshChart(), refreshDetail()]);
          const failed = results.filter(r => r.status === "rejected").map(r => String(r.reason && r.reason.message || r.reason));
          if (failed.length) setMessage(failed[0]);
          document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
        }
        // A batch to show at once: /#batch=QUEUE/ID (links and bookmarks).
        if (location.hash.startsWith("#batch=")) selectedKey = decodeURIComponent(location.hash.slice(7));
        refreshAll();
        setInterval(refreshAll, 2000);
        window.addEventListener("resize", drawChart);
        </script>
        </body>
        </html>
        """#
}
