// Runs every parser over one stream's lines: text in, findings out. One scanner per stream
// (stdout and stderr interleave, and multi-line messages never span both).
import { eslintParser } from "./eslint.ts";
import { gccParser } from "./gcc.ts";
import { jestParser } from "./jest.ts";
import { makeParser } from "./make.ts";
import { nodeParser } from "./node.ts";
import { npmParser } from "./npm.ts";
import { protocolParser } from "./protocol.ts";
import { pytestParser } from "./pytest.ts";
import { pythonParser } from "./python.ts";
import { rustParser } from "./rust.ts";
import { tscParser } from "./tsc.ts";
import type { Finding, LineParser } from "./types.ts";
import { vitestParser } from "./vitest.ts";

/** Longest line parsed; the rest of a longer one is skipped (a minified bundle is no diagnostic). */
export const MAX_LINE_CHARS = 64 * 1024;

// CSI (colours, cursor), OSC (titles, links) and two-character escapes.
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
export const stripAnsi = (s: string) => (s.includes("\x1b") ? s.replace(ANSI, "") : s);

export interface ScannerOptions {
  /** The task's command, to name the C compiler (`clang` when the command runs it, else `gcc`). */
  command?: string;
}

export interface LineScanner {
  /** Adds decoded text; returns the findings of the lines it completed. */
  push(text: string): Finding[];
  /** Reports what parsers hold; context (e.g. failures listed so far) is kept. */
  flush(): Finding[];
  /** End of stream: the unterminated last line, then everything held. */
  end(): Finding[];
}

export function createParsers(options: ScannerOptions = {}): LineParser[] {
  const cc = /\bclang(\+\+)?\b/.test(options.command ?? "") ? "clang" : "gcc";
  return [
    protocolParser(),
    tscParser(),
    gccParser(cc),
    makeParser(),
    rustParser(),
    pythonParser(),
    pytestParser(),
    eslintParser(),
    nodeParser(),
    vitestParser(),
    jestParser(),
    npmParser(),
  ];
}

export function createLineScanner(options: ScannerOptions = {}): LineScanner {
  const parsers = createParsers(options);
  let partial = "";
  let skipping = false; // inside an over-long line, until its newline

  const scanLine = (raw: string, out: Finding[]) => {
    const text = stripAnsi(raw.endsWith("\r") ? raw.slice(0, -1) : raw);
    for (const p of parsers) for (const f of p.line(text)) out.push(f);
  };
  const flush = () => parsers.flatMap((p) => p.flush());

  return {
    push(text) {
      const out: Finding[] = [];
      let start = 0;
      for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
        const piece = text.slice(start, nl);
        start = nl + 1;
        if (skipping) {
          skipping = false;
          partial = "";
          continue;
        }
        const line = partial ? partial + piece : piece;
        partial = "";
        // A bare \r redraws the line (progress bars): each redraw is a line of its own.
        if (line.includes("\r") && line.indexOf("\r") !== line.length - 1) for (const seg of line.split("\r")) seg && scanLine(seg, out);
        else scanLine(line, out);
      }
      if (!skipping) {
        partial += text.slice(start);
        if (partial.length > MAX_LINE_CHARS) {
          scanLine(partial.slice(0, MAX_LINE_CHARS), out);
          partial = "";
          skipping = true;
        }
      }
      return out;
    },
    flush,
    end() {
      const out: Finding[] = [];
      if (partial && !skipping) scanLine(partial, out);
      partial = "";
      skipping = false;
      return [...out, ...flush()];
    },
  };
}
