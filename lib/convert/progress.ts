/**
 * Progress of the converters: the events their pipelines emit, and the bar the CLI draws from them
 * on a terminal (one plain line at the end when stderr is a file or a pipe).
 */

/** One step of a conversion: `done` of `total` stored tensors are on disk, the last one `name`. */
export interface ConvertProgress {
  readonly done: number;
  readonly total: number;
  readonly name: string;
}

/** Called by the pipelines after each stored tensor; must not throw. */
export type ProgressListener = (progress: ConvertProgress) => void;

const BAR_WIDTH = 30;
const REDRAW_MS = 100;

/** A one-line progress bar on a TTY stream; silent until `finish` on anything else. */
export class ProgressBar {
  readonly #stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly #label: string;
  #lastDraw = 0;
  #drawn = false;

  constructor(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }, label: string) {
    this.#stream = stream;
    this.#label = label;
  }

  /** Redraws the bar (at most every 100 ms, and always for the last step). */
  readonly update = (progress: ConvertProgress): void => {
    if (!this.#stream.isTTY) return;
    const now = performance.now();
    if (progress.done < progress.total && now - this.#lastDraw < REDRAW_MS) return;
    this.#lastDraw = now;
    const fraction = progress.total > 0 ? progress.done / progress.total : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    const line = `${this.#label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${progress.done}/${progress.total} ${progress.name}`;
    this.#stream.write(`\r${line.slice(0, (this.#stream.columns ?? 120) - 1)}\x1b[K`);
    this.#drawn = true;
  };

  /** Ends the bar with a summary line (the only output when the stream is not a TTY). */
  finish(summary: string): void {
    this.#stream.write(`${this.#drawn ? '\r\x1b[K' : ''}${summary}\n`);
    this.#drawn = false;
  }

  /** Clears the bar without a summary (on failure, before the error is printed). */
  abandon(): void {
    if (this.#drawn) this.#stream.write('\r\x1b[K');
    this.#drawn = false;
  }
}

/** Lets other work on the event loop run (between chunks of synchronous computation). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The date a converter records: now, or SOURCE_DATE_EPOCH (seconds) for reproducible files. */
export function recipeDate(): string {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  const seconds = epoch !== undefined && /^\d+$/.test(epoch) ? Number(epoch) : undefined;
  return new Date(seconds !== undefined ? seconds * 1000 : Date.now()).toISOString();
}
