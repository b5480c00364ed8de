// Turns a task's stdout/stderr bytes into numbered rows, written and broadcast in batches.
//
// Policy: output after a quiet spell (no flush for `intervalMs`) goes out at once, so a line
// printed now reaches subscribers within a database round trip; while output keeps coming, one
// flush per `intervalMs` carries everything buffered (≤ 1000/intervalMs Realtime messages a second
// per task). Memory is bounded by the sandbox's output byte limit. Flushes are sequential, so seq
// order is byte order.
import type { OutputStream } from "../../functions/_shared/states.ts";

export interface Chunk {
  stream: OutputStream;
  data: string;
  at: Date;
}

/** Writes one batch; throws when the task's lease is lost (the batcher then stops). */
export type FlushFn = (chunks: Chunk[]) => Promise<void>;

/** Largest row, in UTF-16 units; longer runs of one stream become several rows. */
const ROW_CHARS = 64 * 1024;

export class OutputBatcher {
  private pending: Chunk[] = [];
  private lastFlushAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<void> | undefined;
  private failed: unknown;
  private readonly decoders = new Map<OutputStream, TextDecoder>();

  constructor(
    private readonly flushFn: FlushFn,
    private readonly intervalMs: number,
  ) {}

  /** Adds bytes; invalid UTF-8 becomes U+FFFD, a character split across reads is kept whole. */
  push(stream: OutputStream, bytes: Uint8Array): void {
    let decoder = this.decoders.get(stream);
    if (!decoder) this.decoders.set(stream, (decoder = new TextDecoder("utf-8", { fatal: false })));
    this.add(stream, decoder.decode(bytes, { stream: true }));
    this.schedule();
  }

  /** A line the worker itself writes (stream `system`). */
  system(text: string): void {
    this.add("system", text.endsWith("\n") ? text : text + "\n");
    this.schedule();
  }

  /** Flushes everything left, including bytes held by the UTF-8 decoders. */
  async close(): Promise<void> {
    for (const [stream, decoder] of this.decoders) this.add(stream, decoder.decode());
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.inFlight || this.pending.length) {
      if (this.inFlight) await this.inFlight;
      else this.flushNow();
    }
    if (this.failed) throw this.failed;
  }

  get error(): unknown {
    return this.failed;
  }

  private add(stream: OutputStream, text: string): void {
    if (!text) return;
    // Postgres text and jsonb cannot hold NUL.
    const data = text.includes("\0") ? text.replaceAll("\0", "\uFFFD") : text;
    const last = this.pending.at(-1);
    if (last && last.stream === stream && last.data.length + data.length <= ROW_CHARS) last.data += data;
    else this.pending.push({ stream, data, at: new Date() });
  }

  private schedule(): void {
    if (this.inFlight || this.timer || this.failed || !this.pending.length) return;
    const wait = this.lastFlushAt + this.intervalMs - performance.now();
    if (wait <= 0) this.flushNow();
    else this.timer = setTimeout(() => ((this.timer = undefined), this.flushNow()), wait);
  }

  private flushNow(): void {
    if (this.inFlight || !this.pending.length) return;
    const batch = this.pending;
    this.pending = [];
    this.lastFlushAt = performance.now();
    this.inFlight = this.flushFn(batch)
      .catch((err) => {
        this.failed ??= err;
        this.pending = [];
      })
      .finally(() => {
        this.inFlight = undefined;
        this.schedule();
      });
  }
}
