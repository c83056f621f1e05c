// litestream PCM player: an AudioWorkletProcessor around a growable ring buffer.
//
// The main thread posts messages to this node's port:
//   {type: "reset", prebufferSamples}  new stream: empty the buffer, zero the counters
//   {type: "audio", samples}           a Float32Array of mono samples (buffer transferred)
//   {type: "end"}                      the server sent `done`: no more audio will come
//   {type: "clear"}                    barge-in / Stop: drop everything, play nothing more
// and receives:
//   {type: "stats", gen, buffered, played, underruns, underrunSamples, started, drained, frame}
//     every ~100 ms while a stream is live, and at once on start, drain and clear; `frame` is
//     the context frame at which sample number `played` (counted from 0) plays, which lets the
//     page place the play head between two stats messages (null when not sent from process())
//   {type: "started", gen, frame}      the first real sample went to the output
//   {type: "drained", gen}             ended and every buffered sample has been played
//
// Underruns: the buffer running dry after playback started and before `end` counts one
// underrun per dry spell (underrunSamples counts the silence). Before the first audio
// (or before the pre-buffer fills) silence is expected; after `end` an empty buffer means done.

const INITIAL_CAPACITY = 1 << 18; // ~11.9 s at 22050 Hz; grows on demand

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(INITIAL_CAPACITY);
    this.gen = 0;
    this.resetState(0);
    this.statsEvery = Math.max(128, Math.round(sampleRate / 10)); // ~100 ms of frames
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  resetState(prebufferSamples) {
    this.readPos = 0;
    this.size = 0;
    this.played = 0;
    this.underruns = 0;
    this.underrunSamples = 0;
    this.started = false;
    this.ended = false;
    this.stopped = false;
    this.drained = false;
    this.dry = false;
    this.active = false; // a stream is attached (between reset and drain/clear)
    this.prebuffer = Math.max(0, prebufferSamples | 0);
    this.sinceStats = 0;
  }

  onMessage(msg) {
    switch (msg.type) {
      case "reset":
        this.gen = msg.gen | 0;
        this.resetState(msg.prebufferSamples);
        this.active = true;
        break;
      case "audio":
        if (this.active && !this.stopped && !this.ended) this.push(msg.samples);
        break;
      case "end":
        this.ended = true;
        this.checkDrained();
        break;
      case "clear":
        this.stopped = true;
        this.size = 0;
        this.readPos = 0;
        this.postStats();
        this.active = false;
        break;
      default:
        break;
    }
  }

  push(samples) {
    const n = samples.length;
    if (n === 0) return;
    if (this.size + n > this.ring.length) this.grow(this.size + n);
    const cap = this.ring.length;
    let writePos = (this.readPos + this.size) % cap;
    const first = Math.min(n, cap - writePos);
    this.ring.set(samples.subarray(0, first), writePos);
    if (first < n) this.ring.set(samples.subarray(first), 0);
    this.size += n;
  }

  grow(needed) {
    let cap = this.ring.length;
    while (cap < needed) cap *= 2;
    const next = new Float32Array(cap);
    const old = this.ring;
    const first = Math.min(this.size, old.length - this.readPos);
    next.set(old.subarray(this.readPos, this.readPos + first), 0);
    if (first < this.size) next.set(old.subarray(0, this.size - first), first);
    this.ring = next;
    this.readPos = 0;
  }

  checkDrained() {
    if (this.active && this.ended && this.size === 0 && !this.drained) {
      this.drained = true;
      this.postStats();
      this.port.postMessage({ type: "drained", gen: this.gen });
      this.active = false;
    }
  }

  postStats(frame = null) {
    this.sinceStats = 0;
    this.port.postMessage({
      type: "stats",
      gen: this.gen,
      buffered: this.size,
      played: this.played,
      underruns: this.underruns,
      underrunSamples: this.underrunSamples,
      started: this.started,
      drained: this.drained,
      frame,
    });
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const ch0 = out[0];
    if (!ch0) return true;
    const frames = ch0.length;
    let written = 0;

    if (this.active && !this.stopped) {
      if (!this.started && this.size > 0 && (this.size >= this.prebuffer || this.ended)) {
        this.started = true;
        this.port.postMessage({ type: "started", gen: this.gen, frame: currentFrame });
      }
      // The play head's anchor moves when playback starts or resumes after a dry spell.
      const restart = this.started && (this.played === 0 || this.dry);
      if (this.started) {
        const cap = this.ring.length;
        written = Math.min(frames, this.size);
        const first = Math.min(written, cap - this.readPos);
        ch0.set(this.ring.subarray(this.readPos, this.readPos + first), 0);
        if (first < written) ch0.set(this.ring.subarray(0, written - first), first);
        this.readPos = (this.readPos + written) % cap;
        this.size -= written;
        this.played += written;
        if (written < frames && !this.ended) {
          if (!this.dry) this.underruns += 1; // one per dry spell
          this.dry = true;
          this.underrunSamples += frames - written;
        } else if (written > 0) {
          this.dry = false;
        }
      }
      this.sinceStats += frames;
      // Samples written in this block play from currentFrame on, so sample `played` (the next
      // one) plays at currentFrame + written.
      if ((restart && written > 0) || this.sinceStats >= this.statsEvery) {
        this.postStats(currentFrame + written);
      }
      this.checkDrained();
    }

    ch0.fill(0, written);
    for (let c = 1; c < out.length; c++) out[c].set(ch0);
    return true;
  }
}

registerProcessor("litestream-pcm-player", PcmPlayer);
