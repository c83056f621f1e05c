// litestream browser player: protocol v1 over a WebSocket (json encoding), PCM through an
// AudioWorklet ring buffer (pcm-worklet.js). No build step; an ES module.
//
// Page query parameters:
//   server=ws://host:port[/path] (or http(s)://, or host:port)  another server than this page's
//   token=KEY            API key, sent as the `token` query parameter (browsers cannot set headers)
//   prebuffer_ms=N       jitter pre-buffer before playback starts (default 0: play the first frame)
//   format=s16le|f32le   PCM format to ask for (default f32le: no conversion needed)
//   context_rate=N       force the AudioContext's rate (tests the JS resampling fallback)
//
// Read-along: the player asks for `timestamps=word`; each chunk's text goes into #transcript
// as it arrives, its words as spans once its `words` event comes, and the word under the
// playback position is highlighted (class "current") as it is heard. The position is the
// worklet's count of played samples, carried forward on the audio clock to the sample the
// output device is playing now (AudioContext.getOutputTimestamp). A server without word
// timestamps sends no `words`: its chunks show as plain text, the chunk under the position
// highlighted instead.
//
// window.litestreamStats is kept up to date for tests and curious humans:
//   {state, ttfaMs, ttfpMs, underruns, underrunMs, playedMs, bufferedMs, receivedMs, audioMs,
//    chunks, words, word, positionMs, sampleRate, contextRate, contextState, voice, clearSent, cleared, error}
// state: "idle" -> "connecting" -> "playing" -> "done" (server done AND buffer drained),
//        or "stopped" (Stop pressed) / "error"; "waiting" between a refused handshake and
//        its retry (429/503 with Retry-After), back to "connecting" after it.
//
// A refused handshake: the browser's WebSocket reports it only as close 1006, whatever the
// server answered. So after a close before the stream opened, the player asks the same URL
// over plain HTTP, which answers what the handshake would be told now (docs/protocol.md,
// "Why a handshake was refused"): it shows the server's reason, and on 429 or 503 waits the
// server's Retry-After and tries again (at most MAX_RETRIES times, Retry-After at most
// MAX_RETRY_AFTER_S). stats.refusal holds {status, code, message, retryAfterS} of the last.

const params = new URLSearchParams(location.search);
const PREBUFFER_MS = Math.max(0, Number(params.get("prebuffer_ms") ?? 0) || 0);
const FORMAT = params.get("format") === "s16le" ? "s16le" : "f32le";
const TOKEN = params.get("token");
// For testing the fallback: force the AudioContext to this rate and resample in JS.
const FORCE_CONTEXT_RATE = Number(params.get("context_rate")) || null;

const $ = (id) => document.getElementById(id);
const ui = {
  text: $("text"),
  speak: $("speak"),
  stop: $("stop"),
  voice: $("voice"),
  voiceRow: $("voice-row"),
  state: $("stat-state"),
  ttfa: $("stat-ttfa"),
  buffered: $("stat-buffered"),
  underruns: $("stat-underruns"),
  played: $("stat-played"),
  chunks: $("stat-chunks"),
  audio: $("stat-audio"),
  transcript: $("transcript"),
  message: $("message"),
};

function freshStats() {
  return {
    state: "idle",
    ttfaMs: null, // Speak click -> first audio frame received
    ttfpMs: null, // Speak click -> first audio sample handed to the audio output
    underruns: 0,
    underrunMs: 0,
    playedMs: 0,
    bufferedMs: 0,
    receivedMs: 0,
    audioMs: 0, // sum of the server's chunk duration_ms
    chunks: 0,
    words: 0, // words the server timed (sum over its `words` events)
    word: null, // the highlighted word's text
    sampleRate: null,
    contextRate: null,
    contextState: null,
    voice: null,
    playedAtStopMs: null, // playedMs as last reported when Stop was pressed
    clearSent: false, // Stop sent {"type":"clear"}
    cleared: false, // ... and the server answered `cleared`
    error: null,
    refusal: null, // the last refused handshake: {status, code, message, retryAfterS}
    retries: 0, // handshakes retried after a Retry-After
  };
}
const stats = freshStats();
// The read-along's playback position (ms of the stream's audio), computed when read.
Object.defineProperty(stats, "positionMs", {
  enumerable: true,
  get: () => (session && stats.state === "playing" ? session.positionMs() : null),
});
window.litestreamStats = stats;

// ------------------------------------------------------------------ server URLs

export function streamUrl(voice) {
  let base;
  const override = params.get("server");
  if (override) {
    let s = override;
    if (/^https?:\/\//i.test(s)) s = s.replace(/^http/i, "ws");
    else if (!/^wss?:\/\//i.test(s)) s = `${location.protocol === "https:" ? "wss" : "ws"}://${s}`;
    const u = new URL(s);
    if (u.pathname === "/" || u.pathname === "") u.pathname = "/v1/stream";
    base = u;
  } else {
    base = new URL(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
  }
  base.searchParams.set("format", FORMAT);
  base.searchParams.set("timestamps", "word");
  if (voice) base.searchParams.set("voice", voice);
  if (TOKEN) base.searchParams.set("token", TOKEN);
  return base.toString();
}

// The stream URL over plain HTTP (same path and query): what a refused handshake was told.
function checkUrl(voice) {
  const u = new URL(streamUrl(voice));
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  return u;
}

// Retry a refused handshake by itself only within these bounds; past them, the user decides.
const MAX_RETRIES = 3;
const MAX_RETRY_AFTER_S = 30;

function httpBase() {
  const ws = new URL(streamUrl());
  ws.protocol = ws.protocol === "wss:" ? "https:" : "http:";
  ws.pathname = "/";
  ws.search = "";
  return ws;
}

// The server refuses one `text` message holding more than max_buffered_chars (20000 by
// default) with a non-fatal text_too_long, and closes with 1009 on a message over
// max_message_bytes (64 KiB): a long text goes as several `text` messages. The server joins
// them as one text (fragments may split a word), so the cut needs no care beyond code points.
// 4000 code points stay under 64 KiB even when JSON escapes every one of them (6 bytes).
export const TEXT_PIECE_CHARS = 4000;

export function textPieces(text, max = TEXT_PIECE_CHARS) {
  const chars = Array.from(text);
  const pieces = [];
  for (let at = 0; at < chars.length; at += max) pieces.push(chars.slice(at, at + max).join(""));
  return pieces;
}

// ------------------------------------------------------------------ audio output

// One AudioContext (+ worklet node) per sample rate, reused across streams.
let audio = null; // {ctx, node, rate, resample: bool}
let audioPending = null;

async function ensureAudio(sampleRate) {
  if (audio && audio.rate === sampleRate) {
    if (audio.ctx.state !== "running") await audio.ctx.resume().catch(() => {});
    return audio;
  }
  if (audioPending && audioPending.rate === sampleRate) return audioPending.promise;
  const promise = (async () => {
    if (audio) {
      audio.ctx.close().catch(() => {});
      audio = null;
    }
    let ctx;
    let resample = false;
    try {
      if (FORCE_CONTEXT_RATE && FORCE_CONTEXT_RATE !== sampleRate) throw new Error("forced");
      ctx = new AudioContext({ sampleRate, latencyHint: "interactive" });
    } catch (err) {
      console.warn(`AudioContext refused ${sampleRate} Hz (${err}); resampling in JS`);
      ctx = new AudioContext(
        FORCE_CONTEXT_RATE ? { sampleRate: FORCE_CONTEXT_RATE, latencyHint: "interactive" }
          : { latencyHint: "interactive" },
      );
      resample = ctx.sampleRate !== sampleRate;
    }
    await ctx.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(ctx, "litestream-pcm-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    node.connect(ctx.destination);
    node.port.onmessage = (event) => onWorkletMessage(event.data);
    ctx.onstatechange = () => {
      stats.contextState = ctx.state;
    };
    if (ctx.state !== "running") await ctx.resume().catch(() => {});
    audio = { ctx, node, rate: sampleRate, resample };
    return audio;
  })();
  audioPending = { rate: sampleRate, promise };
  try {
    return await promise;
  } finally {
    if (audioPending && audioPending.promise === promise) audioPending = null;
  }
}

// Streaming linear resampler (only used when the AudioContext refuses the voice's rate).
class LinearResampler {
  constructor(from, to) {
    this.step = from / to; // input samples per output sample
    this.pos = 0; // position of the next output sample, relative to this.prev's index (-1)
    this.prev = 0; // last input sample of the previous block
    this.havePrev = false;
  }

  process(input) {
    if (input.length === 0) return new Float32Array(0);
    // Virtual signal: [prev, ...input] when havePrev, else input; pos indexes into it.
    const offset = this.havePrev ? 1 : 0;
    const total = input.length + offset;
    const at = (i) => (i < offset ? this.prev : input[i - offset]);
    const out = [];
    let pos = this.pos;
    while (pos <= total - 1) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = at(i);
      const b = i + 1 < total ? at(i + 1) : a;
      if (i + 1 >= total && frac > 0) break;
      out.push(a + (b - a) * frac);
      pos += this.step;
    }
    // Keep the last input sample; the next block's index 0 is it.
    this.pos = pos - (total - 1);
    this.prev = input[input.length - 1];
    this.havePrev = true;
    return Float32Array.from(out);
  }
}

// ------------------------------------------------------------------ session

let gen = 0; // stream generation; messages from older ones are ignored
let session = null;

function setState(state, message = "") {
  stats.state = state;
  ui.message.textContent = message;
  render();
}

function render() {
  const ms = (v) => (v == null ? "–" : `${Math.round(v)} ms`);
  ui.state.textContent = stats.state;
  ui.ttfa.textContent =
    stats.ttfaMs == null
      ? "–"
      : `${Math.round(stats.ttfaMs)} ms` +
        (stats.ttfpMs == null ? "" : `, heard at ${Math.round(stats.ttfpMs)} ms`);
  ui.buffered.textContent = ms(stats.bufferedMs);
  ui.underruns.textContent =
    String(stats.underruns) + (stats.underrunMs ? ` (${Math.round(stats.underrunMs)} ms silent)` : "");
  ui.played.textContent = ms(stats.playedMs);
  ui.chunks.textContent = String(stats.chunks);
  ui.audio.textContent = ms(stats.audioMs);
  const busy = ["connecting", "playing", "waiting"].includes(stats.state);
  ui.stop.disabled = !busy;
  highlight();
}

// ------------------------------------------------------------------ read-along

// The AudioContext's time of the sample the output device plays now: getOutputTimestamp pairs
// a context time with the performance.now() at which the device played it.
function heardContextTime(ctx) {
  const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
  if (ts && ts.performanceTime > 0) {
    return ts.contextTime + Math.max(0, performance.now() - ts.performanceTime) / 1000;
  }
  return ctx.currentTime - (ctx.baseLatency || 0) - (ctx.outputLatency || 0);
}

// Builds a chunk's transcript element: plain text until its words come, then a span per word
// (char_start/char_end index the text by code point, as the server counts) with the text
// between words kept as it is.
function renderChunk(chunk) {
  const el = chunk.el;
  if (!chunk.words) {
    el.textContent = chunk.text;
    return;
  }
  const chars = Array.from(chunk.text);
  const parts = [];
  let at = 0;
  chunk.words.forEach((w, index) => {
    if (w.charStart > at) parts.push(document.createTextNode(chars.slice(at, w.charStart).join("")));
    const span = document.createElement("span");
    span.className = "word";
    span.dataset.seq = String(chunk.seq);
    span.dataset.index = String(index);
    span.textContent = chars.slice(w.charStart, w.charEnd).join("");
    w.el = span;
    parts.push(span);
    at = Math.max(at, w.charEnd);
  });
  if (at < chars.length) parts.push(document.createTextNode(chars.slice(at).join("")));
  el.replaceChildren(...parts);
}

let highlighted = null; // {word, chunk} elements currently marked
let highlightFrame = 0;

function mark(el, cls, on) {
  if (el) el.classList.toggle(cls, on);
}

// Marks the word (or, without word timestamps, the chunk) under the playback position.
function highlight() {
  const live = session && stats.state === "playing";
  const at = live ? session.positionMs() : null;
  let chunk = null;
  let word = null;
  if (at != null) {
    chunk = session.chunkList.find((c) => at >= c.start && at < c.end) ?? null;
    if (chunk?.words) word = chunk.words.find((w) => at >= w.start && at < w.end) ?? null;
  }
  const next = { word: word?.el ?? null, chunk: chunk && !chunk.words ? chunk.el : null };
  if (!highlighted || highlighted.word !== next.word || highlighted.chunk !== next.chunk) {
    mark(highlighted?.word, "current", false);
    mark(highlighted?.chunk, "current", false);
    mark(next.word, "current", true);
    mark(next.chunk, "current", true);
    if (next.word) next.word.setAttribute("aria-current", "true");
    if (highlighted?.word && highlighted.word !== next.word) {
      highlighted.word.removeAttribute("aria-current");
    }
    highlighted = next;
    stats.word = word ? word.text : null;
  }
  if (live && !highlightFrame) {
    highlightFrame = requestAnimationFrame(() => {
      highlightFrame = 0;
      highlight();
    });
  }
}

function onWorkletMessage(msg) {
  if (!session || msg.gen !== session.gen) return;
  const rate = session.outRate;
  if (msg.type === "stats") {
    stats.bufferedMs = (msg.buffered / rate) * 1000;
    stats.playedMs = (msg.played / rate) * 1000;
    stats.underruns = msg.underruns;
    stats.underrunMs = (msg.underrunSamples / rate) * 1000;
    if (msg.started && msg.frame != null) session.anchor = { played: msg.played, frame: msg.frame };
    render();
  } else if (msg.type === "started") {
    if (stats.ttfpMs == null) stats.ttfpMs = performance.now() - session.t0;
    render();
  } else if (msg.type === "drained") {
    if (stats.state === "playing") setState("done", session.warning);
    session.finish();
  }
}

class Session {
  constructor(text, voice) {
    this.gen = ++gen;
    this.t0 = performance.now();
    this.text = text;
    this.voice = voice;
    this.ws = null;
    this.rate = null; // the server's sample rate
    this.outRate = null; // the AudioContext's rate
    this.format = FORMAT;
    this.resampler = null;
    this.node = null;
    this.pending = []; // Float32Arrays received before the worklet is ready
    // {seq, start, end, text, words, el}: ms of this stream's audio; words (null until the
    // chunk's `words` event) are {text, start, end, charStart, charEnd, el}
    this.chunkList = [];
    this.sentSamples = 0; // samples handed to the worklet (at the context's rate)
    this.anchor = null; // {played, frame}: the worklet's played count at a context frame
    this.serverDone = false;
    this.closed = false;
    this.warning = ""; // the last non-fatal server error, shown until the next Speak
    this.opened = false; // the handshake succeeded (onopen ran)
    this.retryTimer = 0;
  }

  start() {
    Object.assign(stats, freshStats(), { state: "connecting" });
    ui.transcript.replaceChildren();
    setState("connecting");
    this.connect();
  }

  connect() {
    let ws;
    try {
      ws = new WebSocket(streamUrl(this.voice));
    } catch (err) {
      this.fail(`cannot connect: ${err.message}`);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.opened = true;
      for (const piece of textPieces(this.text)) ws.send(JSON.stringify({ type: "text", text: piece }));
      ws.send(JSON.stringify({ type: "end" }));
    };
    ws.onmessage = (event) => this.onMessage(event.data);
    ws.onerror = () => {}; // onclose reports it
    ws.onclose = (event) => this.onClose(event);
  }

  onMessage(data) {
    if (session !== this || stats.state === "stopped") return;
    if (typeof data !== "string") {
      this.onAudio(data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn("unparseable message", data);
      return;
    }
    switch (msg.type) {
      case "ready":
        this.onReady(msg);
        break;
      case "chunk":
        stats.chunks += 1;
        stats.audioMs += Number(msg.duration_ms) || 0;
        this.onChunk(msg);
        render();
        break;
      case "words":
        this.onWords(msg);
        break;
      case "done":
        this.serverDone = true;
        stats.serverStats = msg.stats ?? null;
        this.flushPending();
        if (this.node) this.node.port.postMessage({ type: "end" });
        else this.endWhenReady = true;
        break;
      case "error":
        console.warn("server error", msg);
        if (msg.fatal) this.fail(`${msg.code}: ${msg.message}`);
        else {
          // Kept on screen through "done": some of the text may not have been spoken.
          this.warning = `server: ${msg.code}: ${msg.message}`;
          ui.message.textContent = this.warning;
        }
        break;
      case "cleared":
      case "flushed":
      default:
        break;
    }
  }

  onChunk(msg) {
    const start = Number(msg.start_ms) || 0;
    const chunk = {
      seq: Number(msg.seq),
      start,
      end: start + (Number(msg.duration_ms) || 0),
      text: msg.text ?? "",
      words: null,
      el: document.createElement("span"),
    };
    chunk.el.className = "chunk";
    renderChunk(chunk);
    if (this.chunkList.length) ui.transcript.append(" ");
    ui.transcript.append(chunk.el);
    this.chunkList.push(chunk);
  }

  onWords(msg) {
    const seq = Number(msg.seq);
    const chunk = this.chunkList.find((c) => c.seq === seq);
    if (!chunk || !Array.isArray(msg.words)) return;
    chunk.words = msg.words.map((w) => ({
      text: String(w.text ?? ""),
      start: Number(w.start_ms),
      end: Number(w.end_ms),
      charStart: Number(w.char_start),
      charEnd: Number(w.char_end),
      el: null,
    }));
    stats.words += chunk.words.length;
    renderChunk(chunk);
  }

  // Where playback is now, in ms of this stream's audio (the clock of the server's start_ms):
  // the worklet's last played count, carried forward on the audio clock to the sample being
  // heard, never past the audio handed to the worklet. null before the first sample plays.
  positionMs() {
    if (!this.anchor || !audio || !this.outRate) return null;
    const heardFrame = heardContextTime(audio.ctx) * this.outRate;
    const samples = Math.min(this.anchor.played + (heardFrame - this.anchor.frame), this.sentSamples);
    return (Math.max(0, samples) / this.outRate) * 1000;
  }

  onReady(msg) {
    this.rate = Number(msg.sample_rate);
    this.format = msg.format || FORMAT;
    stats.sampleRate = this.rate;
    stats.voice = msg.voice ?? null;
    setState("playing");
    ensureAudio(this.rate).then(
      (a) => {
        if (session !== this || stats.state !== "playing") return;
        this.outRate = a.ctx.sampleRate;
        stats.contextRate = this.outRate;
        stats.contextState = a.ctx.state;
        if (a.resample) this.resampler = new LinearResampler(this.rate, this.outRate);
        this.node = a.node;
        this.node.port.postMessage({
          type: "reset",
          gen: this.gen,
          prebufferSamples: Math.round((PREBUFFER_MS / 1000) * this.outRate),
        });
        this.flushPending();
        if (this.endWhenReady) this.node.port.postMessage({ type: "end" });
      },
      (err) => this.fail(`audio output failed: ${err.message ?? err}`),
    );
  }

  decode(buf) {
    if (this.format === "s16le") {
      const pcm = new Int16Array(buf, 0, buf.byteLength >> 1);
      const out = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
      return out;
    }
    return new Float32Array(buf, 0, buf.byteLength >> 2);
  }

  onAudio(buf) {
    if (stats.ttfaMs == null) stats.ttfaMs = performance.now() - this.t0;
    let samples = this.decode(buf);
    stats.receivedMs += (samples.length / (this.rate || 22050)) * 1000;
    if (this.node) {
      this.send(samples);
    } else {
      this.pending.push(samples);
    }
  }

  send(samples) {
    if (this.resampler) samples = this.resampler.process(samples);
    if (samples.length === 0) return;
    this.sentSamples += samples.length;
    // Transfer the buffer; copy first when the view does not own the whole buffer.
    const own =
      samples.byteOffset === 0 && samples.byteLength === samples.buffer.byteLength
        ? samples
        : samples.slice();
    this.node.port.postMessage({ type: "audio", samples: own }, [own.buffer]);
  }

  flushPending() {
    if (!this.node) return;
    for (const s of this.pending) this.send(s);
    this.pending = [];
  }

  onClose(event) {
    this.closed = true;
    if (session !== this) return;
    if (stats.state === "connecting" && !this.opened) {
      this.explainRefusal(event.code);
    } else if (stats.state === "connecting" || (stats.state === "playing" && !this.serverDone)) {
      this.fail(`connection closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`);
    }
  }

  // The handshake never completed: ask the same URL over HTTP what the server says to it.
  async explainRefusal(code) {
    const url = checkUrl(this.voice);
    let res = null;
    let body = null;
    try {
      res = await fetch(url, { cache: "no-store" });
      body = await res.json().catch(() => null);
    } catch {
      res = null;
    }
    if (session !== this || stats.state !== "connecting") return;
    if (res === null) {
      this.fail(await this.unreadable(url, code));
      return;
    }
    const error = body?.error;
    if (res.status === 426 || !error) {
      // 426: a handshake would be let in now. Either the refusal has passed, or it was this
      // page's origin: a same-origin GET carries no Origin header, so the check cannot see it.
      this.fail(`connection closed before it opened (${code}), yet the server would accept a ` +
        `stream now (HTTP ${res.status}): press Speak to try again; if this keeps happening, ` +
        `this page's origin (${location.origin}) may not be among the server's allowed origins`);
      return;
    }
    const header = Number(res.headers.get("Retry-After"));
    const retryAfterS = Number.isFinite(header) && header > 0 ? header
      : Number(error.retry_after_s) || null;
    stats.refusal = { status: res.status, code: error.code ?? null, message: error.message ?? "",
      retryAfterS };
    const why = `refused by the server: ${error.message} (HTTP ${res.status} ${error.code})`;
    const retryable = res.status === 429 || res.status === 503;
    if (retryable && retryAfterS != null && retryAfterS <= MAX_RETRY_AFTER_S
        && stats.retries < MAX_RETRIES) {
      this.waitAndRetry(why, retryAfterS);
    } else {
      this.fail(why);
    }
  }

  // fetch itself failed: either the server did not let this page read its answer (CORS: this
  // page's origin is not allowed) or it cannot be reached. A no-cors request tells the two
  // apart: it succeeds, with an opaque answer, whenever the server answers at all.
  async unreadable(url, code) {
    try {
      await fetch(new URL("/healthz", url), { mode: "no-cors", cache: "no-store" });
    } catch {
      return `cannot reach the server at ${url.host} (connection closed, ${code})`;
    }
    return `the server at ${url.host} refused the connection and does not let this page ` +
      `read why: this page's origin (${location.origin}) is probably not among its allowed origins`;
  }

  waitAndRetry(why, retryAfterS) {
    setState("waiting", `${why}; retrying in ${Math.ceil(retryAfterS)} s`);
    const due = performance.now() + retryAfterS * 1000;
    const tick = () => {
      if (session !== this || stats.state !== "waiting") return;
      const left = Math.ceil((due - performance.now()) / 1000);
      if (left > 0) {
        ui.message.textContent = `${why}; retrying in ${left} s`;
        this.retryTimer = setTimeout(tick, Math.min(1000, due - performance.now()));
        return;
      }
      stats.retries += 1;
      setState("connecting", `retrying (${stats.retries} of ${MAX_RETRIES}) after: ${why}`);
      this.connect();
    };
    this.retryTimer = setTimeout(tick, Math.min(1000, retryAfterS * 1000));
  }

  stop() {
    if (stats.state === "waiting") {
      clearTimeout(this.retryTimer);
      setState("stopped");
      return;
    }
    if (stats.state !== "connecting" && stats.state !== "playing") return;
    stats.playedAtStopMs = stats.playedMs;
    if (this.node) this.node.port.postMessage({ type: "clear" });
    this.pending = [];
    setState("stopped");
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "clear" }));
      stats.clearSent = true;
      // Wait briefly for `cleared` (or done) before closing; drop any audio meanwhile.
      const timer = setTimeout(() => ws.close(1000), 1000);
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        try {
          const msg = JSON.parse(event.data);
          if (msg.type === "cleared" && session === this) stats.cleared = true;
          if (msg.type === "cleared" || msg.type === "done") {
            clearTimeout(timer);
            ws.close(1000);
          }
        } catch {
          /* ignore */
        }
      };
    } else if (ws && ws.readyState === WebSocket.CONNECTING) {
      ws.onopen = () => ws.close(1000);
    }
  }

  fail(message) {
    if (this.node) this.node.port.postMessage({ type: "clear" });
    stats.error = message;
    setState("error", message);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }

  finish() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }
}

// ------------------------------------------------------------------ controls

async function loadVoices() {
  try {
    const res = await fetch(new URL("/v1/voices", httpBase()), { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    const voices = Array.isArray(body.voices) ? body.voices : [];
    if (voices.length === 0) throw new Error("no voices");
    ui.voice.replaceChildren(
      ...voices.map((v) => {
        const opt = document.createElement("option");
        opt.value = v.id;
        opt.textContent = [v.id, v.language, v.gender, v.model, v.sample_rate && `${v.sample_rate} Hz`]
          .filter(Boolean)
          .join(" · ");
        if (v.sample_rate) opt.dataset.rate = String(v.sample_rate);
        if (v.id === body.default) opt.selected = true;
        return opt;
      }),
    );
    ui.voiceRow.hidden = false;
  } catch (err) {
    // Optional endpoint: without it the server's default voice is used.
    console.info(`voice list unavailable (${err.message}); using the server's default voice`);
    ui.voiceRow.hidden = true;
  }
}

ui.speak.addEventListener("click", () => {
  const text = ui.text.value.trim();
  if (!text) {
    ui.message.textContent = "Type something to speak first.";
    return;
  }
  if (session) session.stop();
  // Create/resume the AudioContext inside the click (user activation) when we can guess the
  // rate; onReady reuses it when the server's rate matches.
  const guess = Number(ui.voice.selectedOptions[0]?.dataset.rate) || audio?.rate;
  if (guess) ensureAudio(guess).catch(() => {});
  session = new Session(text, ui.voiceRow.hidden ? null : ui.voice.value || null);
  session.start();
});

ui.stop.addEventListener("click", () => {
  if (session) session.stop();
});

render();
loadVoices();
