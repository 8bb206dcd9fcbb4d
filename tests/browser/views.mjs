// Loads each live view in headless Chromium (Debian's, through
// playwright-core) and checks it against the daemon's own state.json:
// no script error, no failed request, no request to another host, no
// dialog, no element made from a name a peer sent, and what is drawn
// matches the state. Saves a screenshot of each page.
//
//   node views.mjs OUT_DIR NAME=URL...     (scripts/browser-test.sh runs it)
//
// NAME picks the checks below (index, ...). Exit status 0 only if every
// page passed; each check prints one PASS or FAIL line.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [outDir, ...pages] = process.argv.slice(2);
if (!outDir || pages.length === 0) {
  console.error("usage: node views.mjs OUT_DIR NAME=URL...");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

let failed = 0;
function check(ok, what, detail) {
  console.log(`${ok ? "PASS" : "FAIL"}  ${what}${ok || detail === undefined ? "" : "\n        " + detail}`);
  if (!ok) failed++;
}

// Per page: wait until it has drawn `state`, then compare.
const checks = {
  async index(page, state, name) {
    await page.waitForFunction(
      (n) => document.querySelectorAll("#supernodes tr").length === n,
      state.supernodes.length, { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      vnodes: document.querySelectorAll("line.vnode").length,
      files: document.querySelectorAll("circle.file").length,
      rows: document.querySelectorAll("#supernodes tr").length,
      fileRows: document.querySelectorAll("#files tr").length,
      names: [...document.querySelectorAll("#files td.name:first-child")].map((td) => td.textContent),
      count: document.getElementById("n-super").textContent,
    }));
    const vnodes = state.supernodes.reduce((n, s) => n + s.vnodes.length, 0);
    check(drawn.vnodes === vnodes, `${name}: one tick per virtual node (${vnodes})`, `drawn ${drawn.vnodes}`);
    check(drawn.files === state.files.length && drawn.fileRows === state.files.length,
      `${name}: one dot and one row per file (${state.files.length})`,
      `dots ${drawn.files}, rows ${drawn.fileRows}`);
    check(drawn.rows === state.supernodes.length && drawn.count === String(state.supernodes.length),
      `${name}: one row per supernode (${state.supernodes.length})`, `rows ${drawn.rows}, header ${drawn.count}`);
    const want = state.files.map((f) => f.name);
    check(JSON.stringify(drawn.names) === JSON.stringify(want),
      `${name}: file names shown as sent, as text`, `shown ${JSON.stringify(drawn.names)}`);
  },
  async nap(page, state, name) {
    await page.waitForFunction(
      (n) => document.querySelectorAll("#users > tr").length === n,
      state.users.length, { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      users: [...document.querySelectorAll("#users > tr > td:first-child")].map((td) => td.textContent),
      connected: document.querySelectorAll("#users .dot.on").length,
      files: document.querySelectorAll("#users ul.files > li").length,
      ops: document.querySelectorAll("#ops > tr").length,
    }));
    check(JSON.stringify(drawn.users) === JSON.stringify(state.users.map((u) => u.name)),
      `${name}: one row per user, names as text`, `shown ${JSON.stringify(drawn.users)}`);
    const connected = state.users.filter((u) => u.connected).length;
    check(drawn.connected === connected, `${name}: connected users marked (${connected})`, `marked ${drawn.connected}`);
    const files = state.users.reduce((n, u) => n + u.files.length, 0);
    check(drawn.files === files, `${name}: every published file listed (${files})`, `listed ${drawn.files}`);
    check(drawn.ops >= Math.min(60, state.operations.length) && drawn.ops > 0,
      `${name}: the operations listed (${state.operations.length})`, `rows ${drawn.ops}`);
  },
  async rdir(page, state, name) {
    await page.waitForFunction(
      (n) => document.querySelectorAll("#requests > tr").length >= n,
      Math.min(60, state.requests.length), { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      mode: document.getElementById("mode").textContent,
      handles: [...document.querySelectorAll("#handles > tr > td:nth-child(3)")].map((td) => td.textContent),
      nothing: document.querySelectorAll(".nothing").length,
    }));
    check(drawn.mode === state.mode, `${name}: the mode shown (${state.mode})`, drawn.mode);
    if (state.mode === "stateful" && state.handles.length > 0) {
      check(JSON.stringify(drawn.handles) === JSON.stringify(state.handles.map((h) => h.path)),
        `${name}: one row per open handle, paths as text (${state.handles.length})`,
        `shown ${JSON.stringify(drawn.handles)}`);
    } else {
      check(drawn.nothing === 1, `${name}: nothing remembered is said`, `boxes ${drawn.nothing}`);
    }
  },
  async flood(page, state, name) {
    await page.waitForFunction(
      (n) => document.querySelectorAll("circle.neighbour").length === n,
      state.links.length, { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      neighbours: document.querySelectorAll("circle.neighbour").length,
      rows: [...document.querySelectorAll("#queries > tr > td:nth-child(2)")].map((td) => td.textContent),
      dups: document.querySelectorAll("text.dup").length,
    }));
    check(drawn.neighbours === state.links.length,
      `${name}: one circle per neighbour (${state.links.length})`, `drawn ${drawn.neighbours}`);
    const want = state.queries.slice().reverse().slice(0, 40).map((q) => (q.query === "key" ? "?" : "T ") + q.info);
    check(JSON.stringify(drawn.rows) === JSON.stringify(want),
      `${name}: one row per query seen, keys as text (${state.queries.length})`, `shown ${JSON.stringify(drawn.rows)}`);
    const newest = state.queries[state.queries.length - 1];
    const known = newest ? newest.duplicates_from.filter((p) => state.links.some((l) => l.peer === p)).length : 0;
    check(drawn.dups === known, `${name}: a cross per duplicate of the newest query (${known})`, `drawn ${drawn.dups}`);
  },
  async records(page, state, name) {
    const want = Math.min(80, state.records.length);
    await page.waitForFunction((n) => document.querySelectorAll("#records > tr").length === n,
      want, { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      title: document.getElementById("title").textContent,
      heads: [...document.querySelectorAll("#head > th")].map((th) => th.textContent),
      rows: document.querySelectorAll("#records > tr").length,
    }));
    check(drawn.title === state.system, `${name}: its title (${state.system})`, drawn.title);
    check(JSON.stringify(drawn.heads) === JSON.stringify(state.columns.map((c) => c.heading)),
      `${name}: its columns`, JSON.stringify(drawn.heads));
    check(drawn.rows === want && want > 0, `${name}: one row per record served (${state.records.length})`,
      `rows ${drawn.rows}`);
  },
  async superd(page, state, name) {
    await page.waitForFunction((n) => document.querySelectorAll("#files > tr.file").length === n,
      state.files.length, { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      files: [...document.querySelectorAll("#files > tr.file > td:first-child")].map((td) => td.textContent),
      addr: document.getElementById("addr").textContent,
    }));
    check(JSON.stringify(drawn.files) === JSON.stringify(state.files.map((f) => f.name)),
      `${name}: one row per file, names as text (${state.files.length})`, `shown ${JSON.stringify(drawn.files)}`);
    check(drawn.addr === state.addr, `${name}: its address (${state.addr})`, drawn.addr);
  },
};

// The swarm's pages change many times a second: the check draws the page
// from a state.json it reads itself, in one turn of the page's event loop,
// and compares what is then on the page with that state.
async function drawnFrom(page, kind) {
  return page.evaluate(async (kind) => {
    const state = await (await fetch("state.json", { cache: "no-store" })).json();
    draw(state);
    const all = (sel, root) => [...(root || document).querySelectorAll(sel)];
    const readers = {
      tracker: () => all("section.swarm").map((sec) => ({
        title: sec.querySelector("h2").firstChild.textContent,
        rows: all("tr.peer", sec).map((tr) => ({
          held: tr.querySelectorAll(".cell.held").length,
          cells: tr.querySelectorAll(".cell").length,
        })),
        rarity: sec.querySelectorAll("tr.rarity .cell").length,
        members: sec.querySelectorAll("circle.member").length,
        flows: sec.querySelectorAll("line.flow").length,
      })),
      btpeer: () => ({
        cells: all("#mine .cell").length,
        held: all("#mine .cell.held").length,
        transfers: all("#transfers > tr").length,
        remotes: all("#remotes > tr").length,
        title: document.getElementById("name").textContent,
      }),
      nappeer: () => ({
        files: all("#files > li").map((li) => li.textContent),
        finished: all("#finished > tr > td:nth-child(3)").map((td) => td.textContent),
      }),
    };
    return { state, drawn: readers[kind]() };
  }, kind);
}

Object.assign(checks, {
  async tracker(page, _state, name) {
    await page.waitForFunction(() => document.querySelectorAll("tr.peer").length > 0, null, { timeout: 15000 });
    const { state, drawn } = await drawnFrom(page, "tracker");
    check(drawn.length === state.swarms.length, `${name}: one section per swarm (${state.swarms.length})`, drawn.length);
    state.swarms.forEach((s, i) => {
      const d = drawn[i];
      if (!d) return;
      check(d.title === s.name, `${name}: the swarm's name as text`, JSON.stringify(d.title));
      check(d.rows.length === s.peers.length, `${name}: rows in the piece map = members (${s.peers.length})`, d.rows.length);
      const held = s.peers.map((p) => p.pieces), shown = d.rows.map((r) => r.held);
      check(JSON.stringify(held) === JSON.stringify(shown), `${name}: cells filled = pieces held (${held.join(", ")})`, shown.join(", "));
      check(d.rows.every((r) => r.cells === s.piece_count) && d.rarity === s.piece_count,
        `${name}: a cell per piece in every row and in the rarity row (${s.piece_count})`, JSON.stringify(d.rows.map((r) => r.cells)));
      check(d.members === s.peers.length, `${name}: a circle per member in who-sends-to-whom`, d.members);
      check(d.flows <= s.flows.length, `${name}: an arrow per flow reported (${s.flows.length})`, d.flows);
    });
  },
  async btpeer(page, _state, name) {
    await page.waitForFunction(() => document.querySelectorAll("#mine .cell").length > 0, null, { timeout: 15000 });
    const { state, drawn } = await drawnFrom(page, "btpeer");
    check(drawn.cells === state.piece_count, `${name}: a cell per piece (${state.piece_count})`, drawn.cells);
    check(drawn.held === state.pieces, `${name}: cells filled = pieces held (${state.pieces})`, drawn.held);
    check(drawn.transfers === state.transfers.length, `${name}: a row per transfer (${state.transfers.length})`, drawn.transfers);
    check(drawn.remotes === state.remotes.length, `${name}: a row per other member (${state.remotes.length})`, drawn.remotes);
    check(drawn.title.startsWith(state.name), `${name}: the file's name as text`, drawn.title);
  },
  async nappeer(page, _state, name) {
    await page.waitForFunction(() => document.querySelectorAll("#files > li").length > 0, null, { timeout: 15000 });
    const { state, drawn } = await drawnFrom(page, "nappeer");
    check(JSON.stringify(drawn.files) === JSON.stringify(state.files), `${name}: the files it serves, names as text`,
      JSON.stringify(drawn.files));
    const want = state.finished.slice().reverse().slice(0, 40).map((t) => t.name);
    check(JSON.stringify(drawn.finished) === JSON.stringify(want) && want.length > 0,
      `${name}: a row per finished transfer (${state.finished.length})`, JSON.stringify(drawn.finished));
  },
  async overlay(page, _state, name) {
    const overlay = await page.evaluate(async () => (await fetch("overlay.json", { cache: "no-store" })).json());
    await page.waitForFunction((n) => document.querySelectorAll("circle.servent").length === n,
      overlay.servents.length, { timeout: 15000 });
    const drawn = await page.evaluate(() => ({
      servents: document.querySelectorAll("circle.servent").length,
      links: document.querySelectorAll("line.overlay-link").length,
      tree: document.querySelectorAll("line.tree").length,
      rows: document.querySelectorAll("#oqueries > tr").length,
    }));
    const pairs = new Set();
    for (const s of overlay.servents) for (const l of s.links) if (l.to) pairs.add([s.addr, l.to].sort().join(" "));
    check(overlay.servents.length === 3 && drawn.servents === 3, `${name}: every servent of the overlay read and drawn (3)`,
      `read ${overlay.servents.length}, drawn ${drawn.servents}`);
    check(drawn.links === pairs.size, `${name}: a line per link (${pairs.size})`, drawn.links);
    check(drawn.tree > 0 && drawn.rows > 0, `${name}: the newest query's flood tree drawn`, JSON.stringify(drawn));
  },
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--disable-quic", "--no-first-run"],
});
try {
  for (const spec of pages) {
    const eq = spec.indexOf("=");
    const name = spec.slice(0, eq);
    const url = spec.slice(eq + 1);
    const origin = new URL(url).origin;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
    page.on("dialog", async (d) => { problems.push(`a dialog opened: ${d.message()}`); await d.dismiss(); });
    page.on("request", (r) => {
      if (!r.url().startsWith(origin)) problems.push(`a request to another host: ${r.url()}`);
    });
    page.on("requestfailed", (r) => {
      // The event stream is cut when the page closes; anything else is a failure.
      if (!r.url().endsWith("/events")) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
    });
    const resp = await page.goto(url, { waitUntil: "domcontentloaded" });
    check(resp && resp.status() === 200, `${name}: the page loads (${url})`, resp && resp.status());
    const state = await page.evaluate(async () => (await fetch("state.json", { cache: "no-store" })).json());
    if (checks[name]) {
      try {
        await checks[name](page, state, name);
      } catch (e) {
        check(false, `${name}: the page drew its state`, e.message);
      }
    } else {
      check(false, `${name}: a check for this page`, "no checks are defined for it");
    }
    // Live: the event stream is open.
    await page.waitForFunction(() => document.getElementById("live")?.className === "on", null, { timeout: 10000 })
      .then(() => check(true, `${name}: the event stream is open`))
      .catch(() => check(false, `${name}: the event stream is open`, "never connected"));
    // Nothing a peer named became markup: no image, no script beyond the page's own.
    const made = await page.evaluate(() => ({
      img: document.querySelectorAll("img").length,
      scripts: document.querySelectorAll("script").length,
    }));
    check(made.img === 0 && made.scripts === 1, `${name}: no element made from a peer's name`,
      JSON.stringify(made));
    const shot = `${outDir}/${name}-${new URL(url).port}.png`;
    await page.screenshot({ path: shot, fullPage: false });
    console.log(`      screenshot: ${shot}`);
    check(problems.length === 0, `${name}: no script error, failed request, dialog or other host`,
      problems.join("\n        "));
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(`${failed === 0 ? "all pages passed" : failed + " check(s) failed"}`);
process.exit(failed === 0 ? 0 : 1);
