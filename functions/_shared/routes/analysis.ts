// Repository analysis: start (clone task planned in SQL), status, results, full-text search.
import type { TransactionSql } from "postgres";
import { checkSource, isUnder, normalizeAbsolute, SourceRefused, type AnalysisPolicy } from "../analysis/source.ts";
import { AnalyzeRequestSchema, analysisTopic, ResultsQuerySchema, SearchQuerySchema } from "../analysis/schemas.ts";
import { analysisView, type AnalysisRow } from "../analysis/views.ts";
import { HttpError, json, requireRole } from "../http.ts";
import { asCaller, body, query, UUID, type Route } from "../routing.ts";

async function findAnalysis(tx: TransactionSql, id: string): Promise<AnalysisRow> {
  const [row] = await tx<AnalysisRow[]>`
    select a.*, (select count(*) from public.analysis_files f
                   join public.analysis_blobs b on b.repo_id = a.repo_id and b.hash = f.hash and b.language = f.language
                  where f.analysis_id = a.id and b.parsed_at is not null)::int as files_done
      from public.analyses a where a.id = ${id}`;
  if (!row) throw new HttpError(404, "analysis_not_found", `no analysis ${id} (or it belongs to someone else)`);
  return row;
}

/**
 * A local source must exist, stay under an allowed root once symlinks are resolved, and be a git
 * repository (a work tree with .git, or a bare one). Only reached where the operator lists local
 * roots, i.e. where the function shares a filesystem with the workers.
 */
async function probeLocal(path: string, policy: AnalysisPolicy): Promise<string> {
  const fs = await import("node:fs/promises");
  const real = await fs.realpath(path).catch(() => {
    throw new SourceRefused(`${path} does not exist`);
  });
  const roots = await Promise.all(policy.localRoots.map((r) => fs.realpath(r).catch(() => normalizeAbsolute(r) ?? "\0")));
  if (!roots.some((r) => isUnder(real, r))) throw new SourceRefused(`${path} resolves to ${real}, outside the allowed directories`);
  const isDir = (p: string) =>
    fs.stat(p).then(
      (s) => s.isDirectory(),
      () => false,
    );
  const isFile = (p: string) =>
    fs.stat(p).then(
      (s) => s.isFile(),
      () => false,
    );
  if (!(await isDir(real))) throw new SourceRefused(`${path} is not a directory`);
  const repo = (await isDir(`${real}/.git`)) || (await isFile(`${real}/.git`)) || ((await isFile(`${real}/HEAD`)) && (await isDir(`${real}/objects`)));
  if (!repo) throw new HttpError(400, "not_a_repository", `source: ${path} is not a git repository (no .git; run git init and commit, or point at the repository's root)`);
  return real;
}

const likePrefix = (p: string) => p.replace(/[\\%_]/g, "\\$&") + "%";

export const analysisRoutes: Route[] = [
  // What this deployment accepts as a source, so a client (the dashboard) suggests sources that
  // work. The policy row is already readable by signed-in users (cogo.analysis_policy()).
  [
    "GET",
    /^\/analysis\/sources$/,
    async ({ sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      const policy = await asCaller(sql, caller, async (tx) => (await tx<{ policy: AnalysisPolicy }[]>`select cogo.analysis_policy() as policy`)[0]!.policy);
      return json(200, { localRoots: policy.localRoots, allowPrivateHosts: policy.allowPrivateHosts });
    },
  ],
  [
    "POST",
    /^\/analyze\/repository$/,
    async ({ req, sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      const spec = await body(req, AnalyzeRequestSchema);
      const row = await asCaller(sql, caller, async (tx) => {
        const [row] = await tx<{ policy: AnalysisPolicy }[]>`select cogo.analysis_policy() as policy`;
        const policy = row!.policy;
        let source: string;
        try {
          const checked = checkSource(spec.source, policy);
          if (checked.kind === "workspace") {
            const [ws] = await tx`select id from public.workspaces where id = ${checked.workspaceId}`;
            if (!ws) throw new HttpError(404, "workspace_not_found", `source: no workspace ${checked.workspaceId} (or it belongs to someone else)`);
            source = `workspace:${checked.workspaceId}`;
          } else source = checked.kind === "url" ? checked.url : await probeLocal(checked.path, policy);
        } catch (err) {
          if (err instanceof SourceRefused) throw new HttpError(400, err.code, err.message);
          throw err;
        }
        const [a] = await tx<AnalysisRow[]>`select * from cogo.start_analysis(${tx.json({ ...spec, source } as never)})`;
        return a!;
      });
      return json(202, { analysisId: row.id, topic: analysisTopic(row.id), phase: row.phase, cloneTaskId: row.cloneTaskId, source: row.source, ref: row.ref });
    },
  ],

  [
    "GET",
    new RegExp(`^/analysis/${UUID}/status$`),
    async ({ sql, caller, params }) => {
      const row = await asCaller(sql, caller, (tx) => findAnalysis(tx, params[0]!));
      return json(200, analysisView(row));
    },
  ],

  [
    "GET",
    new RegExp(`^/analysis/${UUID}/results$`),
    async ({ sql, caller, params, url }) => {
      const q = query(url, ResultsQuerySchema);
      return await asCaller(sql, caller, async (tx) => {
        const a = await findAnalysis(tx, params[0]!);
        const byLanguage = await tx`
        select f.language, count(*)::int as files, sum(f.size)::bigint as bytes, sum(b.code)::int as code,
               sum(b.comment)::int as comment, sum(b.blank)::int as blank,
               sum(jsonb_array_length(coalesce(b.symbols, '[]')))::int as symbols
          from public.analysis_files f
          left join public.analysis_blobs b on b.repo_id = ${a.repoId} and b.hash = f.hash and b.language = f.language
         where f.analysis_id = ${a.id} group by f.language order by sum(b.code) desc nulls last, f.language`;
        const byDirectory = await tx`
        select case when cardinality(parts) = 1 then '.' else array_to_string(parts[1:least(${q.depth}::int, cardinality(parts) - 1)], '/') end as directory,
               count(*)::int as files, sum(size)::bigint as bytes, sum(code)::int as code, sum(comment)::int as comment, sum(blank)::int as blank
          from (select string_to_array(f.path, '/') as parts, f.size, b.code, b.comment, b.blank
                  from public.analysis_files f
                  left join public.analysis_blobs b on b.repo_id = ${a.repoId} and b.hash = f.hash and b.language = f.language
                 where f.analysis_id = ${a.id}) x
         group by 1 order by 1`;
        const [imports] = await tx<{ total: number; resolved: number }[]>`
        select count(*)::int as total, count(resolved_path)::int as resolved from public.analysis_imports where analysis_id = ${a.id}`;
        const summary = {
          languages: byLanguage.map((r) => ({ ...r, language: r.language || null, bytes: Number(r.bytes) })),
          directories: byDirectory.map((r) => ({ ...r, bytes: Number(r.bytes) })),
          imports: imports,
        };
        const language = q.language ?? null;
        const prefix = q.path ? likePrefix(q.path) : null;
        let items: readonly unknown[];
        if (q.section === "files") {
          items = await tx`
          select f.path, f.hash, f.language, f.size, b.is_binary as binary, b.code, b.comment, b.blank, b.parser, b.parse_error,
                 b.parsed_at is not null as parsed, f.batch is null as reused,
                 jsonb_array_length(coalesce(b.symbols, '[]'))::int as symbols, jsonb_array_length(coalesce(b.imports, '[]'))::int as imports
            from public.analysis_files f
            left join public.analysis_blobs b on b.repo_id = ${a.repoId} and b.hash = f.hash and b.language = f.language
           where f.analysis_id = ${a.id} and (${language}::text is null or f.language = ${language})
             and (${prefix}::text is null or f.path like ${prefix})
           order by f.path offset ${q.offset} limit ${q.limit}`;
        } else if (q.section === "symbols") {
          const exact = q.name && !q.name.includes("*") ? q.name : null;
          const pattern = q.name?.includes("*") ? q.name.replace(/[\\%_]/g, "\\$&").replace(/\*/g, "%") : null;
          items = await tx`
          select f.path, f.language, s.name, s.kind, s.line, s."endLine", s.exported, s.parent
            from public.analysis_files f
            join public.analysis_blobs b on b.repo_id = ${a.repoId} and b.hash = f.hash and b.language = f.language,
                 jsonb_to_recordset(coalesce(b.symbols, '[]')) as s(name text, kind text, line int, "endLine" int, exported boolean, parent text)
           where f.analysis_id = ${a.id} and (${language}::text is null or f.language = ${language})
             and (${prefix}::text is null or f.path like ${prefix})
             and (${q.kind ?? null}::text is null or s.kind = ${q.kind ?? null})
             and (${exact}::text is null or s.name = ${exact})
             and (${pattern}::text is null or s.name ilike ${pattern})
           order by f.path, s.line, s.name offset ${q.offset} limit ${q.limit}`;
        } else {
          const resolved = q.resolved ?? null;
          items = await tx`
          select i.path, i.specifier, i.kind, i.line, i.resolved_path
            from public.analysis_imports i join public.analysis_files f on f.analysis_id = i.analysis_id and f.path = i.path
           where i.analysis_id = ${a.id} and (${language}::text is null or f.language = ${language})
             and (${prefix}::text is null or i.path like ${prefix})
             and (${resolved}::text is null or (i.resolved_path is not null) = (${resolved} = 'resolved'))
           order by i.path, i.line offset ${q.offset} limit ${q.limit}`;
        }
        return json(200, {
          analysis: analysisView(a),
          summary,
          section: q.section,
          [q.section]: items,
          offset: q.offset,
          next: items.length === q.limit ? q.offset + q.limit : null,
        });
      });
    },
  ],

  [
    "GET",
    new RegExp(`^/analysis/${UUID}/search$`),
    async ({ sql, caller, params, url }) => {
      const q = query(url, SearchQuerySchema);
      return await asCaller(sql, caller, async (tx) => {
        const a = await findAnalysis(tx, params[0]!);
        const language = q.language ?? null;
        const prefix = q.path ? likePrefix(q.path) : null;
        const hits = await tx`
        with q as (select websearch_to_tsquery('simple', ${q.q}) as q),
        ranked as (
          select f.path, f.language, b.repo_id, b.hash, b.language as blang, ts_rank(b.search, q.q) as rank
            from public.analysis_files f
            join public.analysis_blobs b on b.repo_id = ${a.repoId} and b.hash = f.hash and b.language = f.language, q
           where f.analysis_id = ${a.id} and b.search @@ q.q
             and (${language}::text is null or f.language = ${language})
             and (${prefix}::text is null or f.path like ${prefix})
           order by rank desc, f.path offset ${q.offset} limit ${q.limit})
        select r.path, r.language, r.rank,
               ts_headline('simple', left(coalesce(b.content, ''), 262144), q.q,
                           'MaxFragments=3, MaxWords=18, MinWords=6, FragmentDelimiter=" … ", StartSel=«, StopSel=»') as snippet,
               coalesce((select jsonb_agg(s) from jsonb_array_elements(coalesce(b.symbols, '[]')) s
                          where to_tsvector('simple', s ->> 'name') @@ q.q), '[]') as symbols
          from ranked r join public.analysis_blobs b on b.repo_id = r.repo_id and b.hash = r.hash and b.language = r.blang, q
         order by r.rank desc, r.path`;
        return json(200, {
          analysisId: a.id,
          phase: a.phase,
          query: q.q,
          hits: hits.map((h) => ({ ...h, rank: Number(h.rank) })),
          next: hits.length === q.limit ? q.offset + q.limit : null,
        });
      });
    },
  ],
];
