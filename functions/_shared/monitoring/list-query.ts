// The query of GET /tasks, validated (kept apart from lists.ts so browser bundles skip zod).
import { z } from "zod";
import { TASK_STATES, type TaskStatus } from "../states.ts";
import { decodeCursor, UUID_RE } from "./lists.ts";

/**
 * GET /tasks?status=running,queued&q=npm&kind=basic&planId=…&sandboxId=…&limit=50&cursor=… (newest
 * first). A sandbox's init task is never listed (the sandbox is: GET /sandboxes); its commands are.
 */
export const TaskListQuerySchema = z
  .object({
    status: z
      .string()
      .transform((s, ctx) => {
        const list = s
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean);
        for (const x of list) {
          if (!(TASK_STATES as readonly string[]).includes(x)) {
            ctx.addIssue({ code: "custom", message: `unknown state ${JSON.stringify(x)}; one of ${TASK_STATES.join(", ")}` });
            return z.NEVER;
          }
        }
        return list as TaskStatus[];
      })
      .optional(),
    q: z.string().max(200).optional(),
    kind: z.string().max(32).optional(),
    planId: z.string().regex(UUID_RE, "planId is a UUID").optional(),
    /** Only the commands of this sandbox. */
    sandboxId: z.string().regex(UUID_RE, "sandboxId is a UUID").optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z
      .string()
      .max(300)
      .transform((s, ctx) => {
        const cursor = decodeCursor(s);
        if (!cursor) {
          ctx.addIssue({ code: "custom", message: "not a cursor this API returned" });
          return z.NEVER;
        }
        return cursor;
      })
      .optional(),
  })
  .strict();
export type TaskListQuery = z.output<typeof TaskListQuerySchema>;

/** `q` as an ILIKE pattern matching it anywhere, with its own % _ \ taken literally. */
export function likePattern(q: string): string {
  return "%" + q.replace(/[\\%_]/g, (c) => "\\" + c) + "%";
}
