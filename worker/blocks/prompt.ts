// Whether a task's last output asks for input. Pure: the classifier calls it with the tail of the
// output to shorten the `waiting_for_input` window when a prompt backs up a read of stdin.

/** Endings of a line that asks for something: `Name:`, `Continue?`, `> `, `[y/N]`, `(yes/no)`, `Password:`. */
const PROMPT_END = /(?:[?:>#$]|\[[^\]\n]{1,20}\]|\([^)\n]{1,20}\))\s*$/;

/**
 * True when the output's last line is a prompt: a partial line (no newline after it: the program
 * wrote it and now waits) or a complete line ending like a question or a field label. Only the
 * last line counts: earlier prompts were answered or are not what the program waits for now.
 */
export function looksLikePrompt(tail: string): boolean {
  if (tail === "") return false;
  // A terminal's carriage returns redraw the line: what is shown is after the last one.
  const end = tail.endsWith("\n") ? tail.slice(0, tail.endsWith("\r\n") ? -2 : -1) : tail;
  const line = end.slice(end.lastIndexOf("\n") + 1);
  const shown = line.slice(line.lastIndexOf("\r") + 1);
  if (shown.trim() === "") return false;
  if (!tail.endsWith("\n")) return true;
  return PROMPT_END.test(shown);
}
