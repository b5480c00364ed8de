// Request and query shapes of the analysis API (zod), with the caps every analysis gets.
import { z } from "zod";

const GLOB = z
  .string()
  .min(1)
  .max(500)
  .refine((s) => !/[\0\n\r]/.test(s), "globs contain no NUL or newline");
// What git accepts as a ref name or an object id, minus anything a shell or option parser could misread.
const REF = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._/+-]{1,255}$/;

/** Caps and batch sizes of one analysis; every field has a default and a hard maximum. */
export const AnalysisOptionsSchema = z
  .object({
    /** Files past this count are refused (the analysis fails). @default 50000 */
    maxFiles: z.number().int().min(1).max(200_000).default(50_000),
    /** Files larger than this are listed (size, language) but neither stored nor parsed. @default 1 MiB */
    maxFileBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(1024 * 1024),
    /** Total bytes of the files kept; past it the analysis fails. @default 512 MiB */
    maxTotalBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .max(2 * 1024 ** 3)
      .default(512 * 1024 * 1024),
    /** A batch holds at most this many bytes of source. @default 1 MiB */
    batchBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    /** A batch holds at most this many files. @default 200 */
    batchFiles: z.number().int().min(1).max(10_000).default(200),
    /** Wall time of the clone task. @default 600000 */
    cloneTimeoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  })
  .strict();
export type AnalysisOptions = z.output<typeof AnalysisOptionsSchema>;

export const AnalyzeRequestSchema = z
  .object({
    source: z
      .string()
      .min(1)
      .max(4096)
      .refine((s) => !s.includes("\0"), "contains a NUL byte"),
    ref: z.string().regex(REF, "a branch, tag or commit id (letters, digits, . _ / + -)").default("HEAD"),
    include: z.array(GLOB).max(100).default([]),
    exclude: z.array(GLOB).max(100).default([]),
    options: AnalysisOptionsSchema.default(AnalysisOptionsSchema.parse({})),
    idempotencyKey: z.string().min(1).max(200).optional(),
  })
  .strict();
export type AnalyzeRequest = z.input<typeof AnalyzeRequestSchema>;

export const ResultsQuerySchema = z
  .object({
    section: z.enum(["files", "symbols", "imports"]).default("files"),
    offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    /** Exact language name (as linguist names it: TypeScript, Python, …). */
    language: z.string().min(1).max(100).optional(),
    /** Path prefix: a directory ("src/") or a file. */
    path: z.string().min(1).max(4096).optional(),
    /** Symbol kind (function, class, method, type, interface, enum, variable, …); symbols only. */
    kind: z
      .string()
      .regex(/^[a-z_]{1,32}$/)
      .optional(),
    /** Symbol name, exact (symbols) or substring with `*` (e.g. `*Client*`). */
    name: z.string().min(1).max(200).optional(),
    /** Directory depth of the per-directory totals. @default 1 */
    depth: z.coerce.number().int().min(1).max(10).default(1),
    /** Imports only: `unresolved` for those matching no file of the repository. */
    resolved: z.enum(["resolved", "unresolved"]).optional(),
  })
  .strict();

export const SearchQuerySchema = z
  .object({
    q: z.string().min(1).max(500),
    limit: z.coerce.number().int().min(1).max(100).default(20),
    offset: z.coerce.number().int().min(0).max(10_000).default(0),
    language: z.string().min(1).max(100).optional(),
    path: z.string().min(1).max(4096).optional(),
  })
  .strict();

export const ANALYSIS_TOPIC_PREFIX = "analysis:";
export const analysisTopic = (id: string) => ANALYSIS_TOPIC_PREFIX + id;
