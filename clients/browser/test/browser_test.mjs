#!/usr/bin/env node
// Real-browser test of the litestream player: Debian's chromium, headless, driven by
// playwright-core (which downloads no browser).
//
//   node browser_test.mjs --url http://127.0.0.1:PORT [--screenshot out.png] [--stop-screenshot out2.png]
//   (or LITESTREAM_HTTP_URL, LITESTREAM_SCREENSHOT, LITESTREAM_STOP_SCREENSHOT, CHROMIUM)
//
// Check 1 (play): fill #text, click #speak, wait for state "done"; expect chunks > 0,
//   played audio == the sum of the server's chunk duration_ms (within 10% or 300 ms),
//   0 underruns, and the page's audio clock running at real time.
// Check 1 also checks the voice picker: filled from GET /v1/voices, default selected, and the
//   read-along: at moments sampled while it plays, the highlighted word is the one under the
//   playback position, within HIGHLIGHT_TOLERANCE_MS. The truth comes from outside the
//   player's own bookkeeping: the server's `words` events as they came off the socket, and
//   the audio clock (the AudioContext's output timestamp, less the context frame at which the
//   worklet played the first sample). Both are tapped by an init script before the page loads.
//   That clock is the play head only while the buffer never ran dry, so only moments before
//   the worklet's first underrun report (less 200 ms: it reports every ~100 ms) are judged.
// Check 2 (stop): speak a long text, click #stop mid-stream; expect state "stopped", the
//   server's `cleared`, and played ms frozen afterwards.
// Prints one JSON line (prefix "RESULT ") and exits 0 only when every check passed.
//
// Headless audio: nothing special is needed. Debian's chromium 156, headless (new headless
// mode), in a container with no sound device (no /dev/snd, no PulseAudio) falls back to a
// fake audio output stream driven by a timer: the AudioContext is "running" and its clock
// advances in real time (the play check measures played-audio / wall-clock ~= 1.0, which is
// what makes the 0-underrun assertion meaningful). Verified both with and without
// --mute-audio and --autoplay-policy=no-user-gesture-required (Playwright's click is a
// trusted user gesture, so the context would resume anyway); both flags are kept so a
// machine with a real sound card stays silent and a context created outside the click
// cannot stay "suspended".

import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string", default: process.env.LITESTREAM_HTTP_URL },
    screenshot: { type: "string", default: process.env.LITESTREAM_SCREENSHOT ?? "browser-test.png" },
    "stop-screenshot": { type: "string", default: process.env.LITESTREAM_STOP_SCREENSHOT },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
    timeout: { type: "string", default: process.env.BROWSER_TEST_TIMEOUT_S ?? "60" },
    only: { type: "string" }, // "play", "stop"; "long", "cors" or "refused" (only by name)
    "page-url": { type: "string" }, // cors: the player served from an allowed other origin
    "denied-url": { type: "string" }, // cors: the player served from an origin not allowed
    key: { type: "string" }, // cors, refused: the server's API key
    headed: { type: "boolean", default: false },
  },
});

const PLAY_TEXT =
  "The quick brown fox jumps over the lazy dog. Streaming speech begins as soon as the first " +
  "sentence is ready. Each later sentence arrives before the one before it has finished playing. " +
  "This is how a listener hears no gaps at all.";
const STOP_TEXT = Array.from(
  { length: 8 },
  (_, i) =>
    `This is sentence number ${i + 1} of a long passage that will be interrupted by the stop button.`,
).join(" ");

const TIMEOUT_MS = Number(opts.timeout) * 1000;
const HIGHLIGHT_TOLERANCE_MS = 100;
const HIGHLIGHT_SAMPLE_EVERY_MS = 170; // not a multiple of the worklet's 100 ms stats period
const MIN_HIGHLIGHT_SAMPLES = 5;

// Runs in the page before its scripts: keeps every JSON message the server sent, every
// AudioContext, and the worklet's "started" messages (their context frame), without touching
// what the player sees.
function tapPage() {
  const tap = { messages: [], contexts: [], started: [], firstUnderrunAt: null };
  window.__litestreamTap = tap;
  const NativeSocket = window.WebSocket;
  window.WebSocket = class extends NativeSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (typeof event.data === "string") tap.messages.push(JSON.parse(event.data));
      });
    }
  };
  const NativeContext = window.AudioContext;
  window.AudioContext = class extends NativeContext {
    constructor(...args) {
      super(...args);
      tap.contexts.push(this);
    }
  };
  const NativeNode = window.AudioWorkletNode;
  window.AudioWorkletNode = class extends NativeNode {
    constructor(ctx, ...rest) {
      super(ctx, ...rest);
      this.port.addEventListener("message", (event) => {
        if (event.data?.type === "started") tap.started.push({ ctx, frame: event.data.frame });
        if (event.data?.type === "stats" && event.data.underruns > 0 && tap.firstUnderrunAt == null) {
          tap.firstUnderrunAt = performance.now();
        }
      });
    }
  };
}

// One sampled moment, read in one task: the highlighted word, and where the audio clock says
// playback is (ms of the stream's audio since its first sample).
function sampleHighlight() {
  const tap = window.__litestreamTap;
  const started = tap.started[tap.started.length - 1];
  const el = document.querySelector("#transcript .word.current");
  const highlighted = el
    ? { seq: Number(el.dataset.seq), index: Number(el.dataset.index), text: el.textContent }
    : null;
  const positionMs = window.litestreamStats.positionMs; // the player's own idea, for the record
  const t = performance.now();
  if (!started) return { atMs: null, highlighted, positionMs, t };
  const ctx = started.ctx;
  const ts = ctx.getOutputTimestamp();
  const heard =
    ts.performanceTime > 0
      ? ts.contextTime + Math.max(0, performance.now() - ts.performanceTime) / 1000
      : ctx.currentTime - ctx.baseLatency - (ctx.outputLatency || 0);
  const atMs = ((heard * ctx.sampleRate - started.frame) / ctx.sampleRate) * 1000;
  return { atMs, highlighted, positionMs, t };
}

// How far (ms) position `at` lies outside [start, end); 0 inside.
const outside = (at, start, end) => (at < start ? start - at : at >= end ? at - end : 0);

// Scores the samples against the server's words: a highlighted word must be the server's word
// (same text) and the position within tolerance of its interval; no highlight is right only
// when no word's interval holds the position by more than the tolerance (a pause). Samples
// from 200 ms before the first underrun report on are left out (the clock is not the play head).
function judgeHighlights(taken, messages, firstUnderrunAt) {
  const samples = taken.filter((x) => firstUnderrunAt == null || x.t < firstUnderrunAt - 200);
  const words = new Map();
  for (const m of messages) if (m.type === "words") words.set(m.seq, m.words);
  const all = [...words.entries()].flatMap(([seq, ws]) => ws.map((w, index) => ({ seq, index, ...w })));
  const result = { samples: samples.length, afterUnderrun: taken.length - samples.length, highlighted: 0, distinct: 0, maxErrorMs: 0, wrong: [],
    wordsTimed: all.length, maxPositionErrorMs: 0 };
  const seen = new Set();
  for (const { atMs, highlighted, positionMs } of samples) {
    if (positionMs != null) {
      result.maxPositionErrorMs = Math.max(result.maxPositionErrorMs, Math.abs(positionMs - atMs));
    }
    if (highlighted) {
      result.highlighted += 1;
      seen.add(`${highlighted.seq}:${highlighted.index}`);
      const w = words.get(highlighted.seq)?.[highlighted.index];
      const error = w ? outside(atMs, w.start_ms, w.end_ms) : Infinity;
      result.maxErrorMs = Math.max(result.maxErrorMs, error);
      if (!w || w.text !== highlighted.text || error > HIGHLIGHT_TOLERANCE_MS) {
        result.wrong.push({ atMs: Math.round(atMs), highlighted, server: w ?? null });
      }
    } else {
      const under = all.find((w) => atMs >= w.start_ms + HIGHLIGHT_TOLERANCE_MS
        && atMs < w.end_ms - HIGHLIGHT_TOLERANCE_MS);
      if (under) result.wrong.push({ atMs: Math.round(atMs), highlighted: null, server: under });
    }
  }
  result.distinct = seen.size;
  result.maxErrorMs = Math.round(result.maxErrorMs);
  result.maxPositionErrorMs = Math.round(result.maxPositionErrorMs);
  return result;
}
const CHROMIUM_ARGS = [
  "--autoplay-policy=no-user-gesture-required",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--mute-audio",
  "--disable-dev-shm-usage",
];

const summary = { ok: false, url: opts.url, checks: {}, failures: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(name, cond, detail) {
  summary.checks[name] = Boolean(cond);
  if (!cond) summary.failures.push(`${name}: ${detail}`);
  return Boolean(cond);
}

async function openPage(browser) {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  await page.addInitScript(tapPage);
  const problems = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
  });
  await page.goto(new URL("/", opts.url).toString(), { waitUntil: "load" });
  await page.waitForFunction(() => window.litestreamStats?.state === "idle", null, {
    timeout: 10_000,
  });
  return { page, problems };
}

const getStats = (page) => page.evaluate(() => ({ ...window.litestreamStats }));

// The voice picker is filled from GET /v1/voices: one option per voice, the default selected.
async function pickerCheck(page) {
  await page.waitForFunction(() => document.querySelectorAll("#voice option").length > 0, null, {
    timeout: 10_000,
  }).catch(() => {});
  const picker = await page.evaluate(async () => {
    const doc = await (await fetch("/v1/voices", { cache: "no-store" })).json();
    const select = document.querySelector("#voice");
    return {
      voiceIds: doc.voices.map((v) => v.id),
      defaultVoice: doc.default,
      options: [...select.options].map((o) => o.value),
      labels: [...select.options].map((o) => o.textContent),
      selected: select.value,
      visible: !document.querySelector("#voice-row").hidden,
    };
  });
  summary.picker = picker;
  check("picker.filled", picker.visible && picker.options.join() === picker.voiceIds.join(),
    `options ${picker.options} vs /v1/voices ${picker.voiceIds} (visible ${picker.visible})`);
  check("picker.default", picker.selected === picker.defaultVoice,
    `selected ${picker.selected}, default ${picker.defaultVoice}`);
}

async function playCheck(browser) {
  const { page, problems } = await openPage(browser);
  await pickerCheck(page);
  await page.fill("#text", PLAY_TEXT);
  const t0 = Date.now();
  await page.click("#speak");
  // Sample the audio clock vs wall time while it plays, to prove it advances in real time.
  let firstPlay = null;
  let st;
  const highlightSamples = [];
  let nextSample = 0;
  for (;;) {
    st = await getStats(page);
    if (firstPlay == null && st.playedMs > 0) firstPlay = { wall: Date.now(), played: st.playedMs };
    if (["done", "error", "stopped"].includes(st.state)) break;
    if (Date.now() - t0 > TIMEOUT_MS) break;
    if (st.playedMs > 0 && Date.now() >= nextSample) {
      const sample = await page.evaluate(sampleHighlight);
      // Only while the stream plays: after the last word the page stops highlighting.
      if (sample.atMs != null && sample.atMs < st.audioMs - HIGHLIGHT_TOLERANCE_MS) {
        highlightSamples.push(sample);
      }
      nextSample = Date.now() + HIGHLIGHT_SAMPLE_EVERY_MS;
    }
    await sleep(20);
  }
  const wallPlayMs = firstPlay ? Date.now() - firstPlay.wall : null;
  const tapped = await page.evaluate(() => ({
    messages: window.__litestreamTap.messages,
    firstUnderrunAt: window.__litestreamTap.firstUnderrunAt,
  }));
  const highlight = judgeHighlights(highlightSamples, tapped.messages, tapped.firstUnderrunAt);
  await page.screenshot({ path: opts.screenshot, fullPage: true });
  const result = {
    state: st.state,
    error: st.error,
    chunks: st.chunks,
    audioMs: Math.round(st.audioMs),
    playedMs: Math.round(st.playedMs),
    receivedMs: Math.round(st.receivedMs),
    underruns: st.underruns,
    underrunMs: Math.round(st.underrunMs),
    ttfaMs: st.ttfaMs == null ? null : Math.round(st.ttfaMs),
    ttfpMs: st.ttfpMs == null ? null : Math.round(st.ttfpMs),
    sampleRate: st.sampleRate,
    contextRate: st.contextRate,
    wallMs: Date.now() - t0,
    // played audio per wall-clock ms from first sound to done: ~1.0 when the clock is real time
    words: st.words,
    highlight,
    realtimeRatio:
      firstPlay && wallPlayMs > 0
        ? Number(((st.playedMs - firstPlay.played) / wallPlayMs).toFixed(3))
        : null,
    pageProblems: problems,
    screenshot: opts.screenshot,
    contextState: st.contextState,
  };
  summary.play = result;
  check("play.done", st.state === "done", `state ${st.state} (${st.error ?? "timeout?"})`);
  check("play.chunks", st.chunks > 0, `chunks ${st.chunks}`);
  const tol = Math.max(300, 0.1 * st.audioMs);
  check(
    "play.played_matches_audio",
    st.audioMs > 0 && Math.abs(st.playedMs - st.audioMs) <= tol,
    `playedMs ${st.playedMs} vs audioMs ${st.audioMs} (tolerance ${tol})`,
  );
  check("play.no_underruns", st.underruns === 0, `${st.underruns} underruns (${st.underrunMs} ms)`);
  check("play.ttfa", st.ttfaMs != null && st.ttfaMs > 0, `ttfaMs ${st.ttfaMs}`);
  // The audio clock must run at real time: finishing N ms of audio takes ~N ms of wall time.
  check(
    "play.realtime_clock",
    result.realtimeRatio != null && result.realtimeRatio > 0.8 && result.realtimeRatio < 1.25,
    `played/wall ratio ${result.realtimeRatio}`,
  );
  check("play.no_page_errors", problems.length === 0, problems.join("; "));
  // Read-along: the server timed the words, and at every sampled moment the highlight matched.
  check("highlight.words_timed", highlight.wordsTimed > 0, "the server sent no `words` events");
  check("highlight.sampled", highlight.highlighted >= MIN_HIGHLIGHT_SAMPLES && highlight.distinct >= 3,
    `${highlight.highlighted} of ${highlight.samples} samples had a highlighted word, ` +
    `${highlight.distinct} distinct`);
  check("highlight.matches_position", highlight.wrong.length === 0,
    `${highlight.wrong.length} samples off by more than ${HIGHLIGHT_TOLERANCE_MS} ms: ` +
    JSON.stringify(highlight.wrong.slice(0, 5)));
  await page.close();
}

async function stopCheck(browser) {
  const { page, problems } = await openPage(browser);
  await page.fill("#text", STOP_TEXT);
  await page.click("#speak");
  const t0 = Date.now();
  let st;
  for (;;) {
    st = await getStats(page);
    if (st.playedMs >= 1200 || ["done", "error", "stopped"].includes(st.state)) break;
    if (Date.now() - t0 > TIMEOUT_MS) break;
    await sleep(25);
  }
  const before = st;
  const stopDisabledBefore = await page.isDisabled("#stop");
  await page.click("#stop");
  await page.waitForFunction(() => window.litestreamStats.state !== "playing", null, {
    timeout: 5_000,
  }).catch(() => {});
  await sleep(400); // let the worklet's final stats and the server's `cleared` arrive
  const after1 = await getStats(page);
  await sleep(1500);
  const after2 = await getStats(page);
  if (opts["stop-screenshot"]) await page.screenshot({ path: opts["stop-screenshot"], fullPage: true });
  summary.stop = {
    stateBefore: before.state,
    playedAtClickMs: Math.round(before.playedMs),
    playedAtStopMs: Math.round(after1.playedAtStopMs ?? -1),
    playedAfterMs: Math.round(after1.playedMs),
    playedLaterMs: Math.round(after2.playedMs),
    audioMs: Math.round(after2.audioMs),
    state: after2.state,
    clearSent: after2.clearSent,
    cleared: after2.cleared,
    bufferedMs: Math.round(after2.bufferedMs),
    pageProblems: problems,
  };
  check("stop.was_playing", before.state === "playing" && before.playedMs > 0 && !stopDisabledBefore,
    `state ${before.state}, played ${before.playedMs}, stop disabled ${stopDisabledBefore}`);
  check("stop.state", after2.state === "stopped", `state ${after2.state}`);
  check("stop.clear_sent", after2.clearSent === true, "Stop sent no clear");
  check("stop.cleared", after2.cleared === true, "no `cleared` from the server");
  check("stop.silent_after", after2.playedMs === after1.playedMs,
    `played grew after stop: ${after1.playedMs} -> ${after2.playedMs}`);
  // Output stops within ~one stats period (100 ms) of the Stop handler running: the worklet's
  // final count (sent on clear) vs the last count the page had seen when Stop ran.
  check("stop.prompt", after1.playedAtStopMs != null && after1.playedMs - after1.playedAtStopMs < 250,
    `played ${after1.playedMs - after1.playedAtStopMs} ms after Stop ran`);
  check("stop.no_page_errors", problems.length === 0, problems.join("; "));
  await page.close();
}

// Long text (--only long, not part of the default run): speak LONG_TEXT, far over the server's
// 20000-character limit on one `text` message, and record the page once the first chunk came
// or the stream ended: state, chunks and the message the user sees. Then Stop. The caller
// judges, knowing the server's limits.
const LONG_TEXT = Array.from(
  { length: 700 },
  (_, i) => `Sentence ${i + 1} of a very long paragraph.`,
).join(" ");

async function longCheck(browser) {
  const { page, problems } = await openPage(browser);
  await page.fill("#text", LONG_TEXT);
  await page.click("#speak");
  await page.waitForFunction(
    () => window.litestreamStats.chunks > 0 || ["done", "error"].includes(window.litestreamStats.state),
    null, { timeout: TIMEOUT_MS },
  );
  const st = await getStats(page);
  const message = await page.textContent("#message");
  await page.click("#stop").catch(() => {});
  summary.long = { chars: LONG_TEXT.length, state: st.state, chunks: st.chunks, message, pageProblems: problems };
  await page.close();
}

// Cross-origin (--only cors, --url the server, --page-url and --denied-url the player served by
// another server on two other origins, --key): on the allowed origin, the player (pointed at
// the server with ?server=) fills its voice picker and speaks to the end, and the page itself
// fetches POST /v1/audio/speech (JSON, Authorization: Bearer) and decodes and plays the WAV,
// reads a 401 and GET /v1/models; on the denied origin the same fetch is blocked and the
// player says its origin is not allowed. The caller judges.
async function speechFromPage(page, server, key) {
  return page.evaluate(async ({ server, key }) => {
    const out = {};
    const speech = new URL("/v1/audio/speech", server).toString();
    const body = JSON.stringify({ model: "tts-1", input: "Hello from another origin.",
      response_format: "wav" });
    try {
      const res = await fetch(speech, { method: "POST", body,
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}`,
          "X-Stainless-Retry-Count": "0" } });
      out.status = res.status;
      out.contentType = res.headers.get("Content-Type");
      // What the server says beside the body: only what it exposes is readable here.
      out.sampleRateHeader = res.headers.get("X-Sample-Rate");
      out.requestId = res.headers.get("X-Request-Id");
      out.voiceHeader = res.headers.get("X-Litestream-Voice");
      const bytes = await res.arrayBuffer();
      out.bytes = bytes.byteLength;
      const ctx = new AudioContext();
      const decoded = await ctx.decodeAudioData(bytes);
      out.durationMs = Math.round(decoded.duration * 1000);
      out.sampleRate = decoded.sampleRate;
      out.played = await playBuffer(ctx, decoded);
      await ctx.close();
    } catch (err) {
      out.error = `${err.name}: ${err.message}`;
    }
    try {
      const res = await fetch(speech, { method: "POST", body,
        headers: { "Content-Type": "application/json", Authorization: "Bearer wrong" } });
      out.badKey = { status: res.status, code: (await res.json()).error?.code };
    } catch (err) {
      out.badKey = { error: `${err.name}: ${err.message}` };
    }
    try {
      const res = await fetch(new URL("/v1/models", server));
      out.models = { status: res.status, count: (await res.json()).data?.length };
    } catch (err) {
      out.models = { error: `${err.name}: ${err.message}` };
    }
    return out;

    // Plays an AudioBuffer to its end: resolves true on `ended`.
    function playBuffer(ctx, buffer) {
      return new Promise((resolve) => {
        const node = new AudioBufferSourceNode(ctx, { buffer });
        node.connect(ctx.destination);
        node.onended = () => resolve(true);
        node.start();
      });
    }
  }, { server, key });
}

async function playerOn(browser, pageUrl, text) {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  const problems = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForFunction(() => window.litestreamStats?.state === "idle", null, { timeout: 10_000 });
  await page.waitForFunction(() => document.querySelectorAll("#voice option").length > 0, null, {
    timeout: 5_000,
  }).catch(() => {});
  const picker = await page.evaluate(() => document.querySelectorAll("#voice option").length);
  await page.fill("#text", text);
  await page.click("#speak");
  await page.waitForFunction(() => ["done", "error", "stopped"].includes(window.litestreamStats.state),
    null, { timeout: TIMEOUT_MS });
  const st = await getStats(page);
  const message = await page.textContent("#message");
  return { page, result: { picker, state: st.state, chunks: st.chunks, playedMs: Math.round(st.playedMs),
    message, refusal: st.refusal, pageProblems: problems } };
}

async function corsCheck(browser) {
  const server = new URL(opts.url).origin;
  const allowedUrl = `${opts["page-url"]}/?server=${encodeURIComponent(server)}&token=${opts.key}`;
  const allowed = await playerOn(browser, allowedUrl, "Spoken from a page on another origin.");
  allowed.result.fetch = await speechFromPage(allowed.page, server, opts.key);
  allowed.result.origin = await allowed.page.evaluate(() => location.origin);
  await allowed.page.close();
  const deniedUrl = `${opts["denied-url"]}/?server=${encodeURIComponent(server)}&token=${opts.key}`;
  const denied = await playerOn(browser, deniedUrl, "This page's origin is not allowed.");
  denied.result.fetch = await speechFromPage(denied.page, server, opts.key);
  denied.result.origin = await denied.page.evaluate(() => location.origin);
  await denied.page.close();
  // The server's own player, its origin not on the server's allowlist: the handshake is
  // refused, and the plain GET (same-origin: no Origin header) would be let in.
  const own = await playerOn(browser, `${server}/?token=${opts.key}`, "Not from here either.");
  await own.page.close();
  summary.cors = { allowed: allowed.result, denied: denied.result, own: own.result };
}

// Refused handshakes (--only refused, --url a server with --key and max_streams 1): the player
// without the key says the server's 401; with it, while the page itself holds the server's one
// stream, Speak is refused with 503 and the player waits the Retry-After, showing why; the
// holder closes, and the retry plays to the end. The caller judges.
async function refusedCheck(browser) {
  const base = new URL("/", opts.url).toString();
  const noKey = await playerOn(browser, base, "Nobody hears this.");
  await noKey.page.close();
  const page = await browser.newPage();
  await page.goto(`${base}?token=${opts.key}`, { waitUntil: "load" });
  await page.waitForFunction(() => window.litestreamStats?.state === "idle", null, { timeout: 10_000 });
  await page.evaluate((key) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/v1/stream?token=${key}`);
    window.__holder = ws;
    ws.onmessage = () => resolve(); // `ready`: the stream is open
    ws.onclose = (e) => reject(new Error(`holder closed ${e.code}`));
  }), opts.key);
  await page.fill("#text", "Spoken once the server has room.");
  await page.click("#speak");
  await page.waitForFunction(() => ["waiting", "error", "done"].includes(window.litestreamStats.state),
    null, { timeout: TIMEOUT_MS });
  const waiting = { ...(await getStats(page)), message: await page.textContent("#message"),
    stopEnabled: !(await page.isDisabled("#stop")) };
  await page.evaluate(() => window.__holder.close(1000));
  await page.waitForFunction(() => ["done", "error", "stopped"].includes(window.litestreamStats.state),
    null, { timeout: TIMEOUT_MS });
  const after = await getStats(page);
  await page.close();
  summary.refused = {
    noKey: noKey.result,
    waiting: { state: waiting.state, message: waiting.message, refusal: waiting.refusal,
      stopEnabled: waiting.stopEnabled },
    after: { state: after.state, retries: after.retries, chunks: after.chunks, error: after.error },
  };
}

async function main() {
  if (!opts.url) throw new Error("--url http://HOST:PORT (or LITESTREAM_HTTP_URL) is required");
  if (!existsSync(opts.chromium)) {
    throw new Error(`no chromium at ${opts.chromium}: run .ci/browser-deps.sh (apt-get install chromium)`);
  }
  const browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: !opts.headed,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  summary.browser = browser.version();
  try {
    if (opts.only === "long") await longCheck(browser);
    else if (opts.only === "cors") await corsCheck(browser);
    else if (opts.only === "refused") await refusedCheck(browser);
    else {
      if (opts.only !== "stop") await playCheck(browser);
      if (opts.only !== "play") await stopCheck(browser);
    }
  } finally {
    await browser.close();
  }
  summary.ok = summary.failures.length === 0;
}

const started = Date.now();
try {
  await main();
} catch (err) {
  summary.failures.push(`exception: ${err.stack ?? err}`);
  summary.ok = false;
}
summary.runtimeMs = Date.now() - started;
console.log(`RESULT ${JSON.stringify(summary)}`);
process.exit(summary.ok ? 0 : 1);
