// Step `inputs` are globs over workspace paths; Postgres matches changed paths against the regexes
// made here (plan_steps.input_patterns). Pure: shared by the API, the SDK and tests.

/**
 * `*` any run of characters but `/`, `?` one such character, `**` any number of whole path
 * components (`src/**` = everything under src, `**\/*.ts` = every .ts file). A glob without a `/`
 * matches the file name in any directory (`*.c` = every C file), as in .gitignore.
 */
export function globToRegex(glob: string): string {
  const anchored = glob.includes("/");
  const g = glob.replace(/^\.\//, "").replace(/\/$/, "/**");
  let re = "";
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === "*" && g[i + 1] === "*") {
      const slash = g[i + 2] === "/";
      re += slash ? "(.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return anchored ? `^${re}$` : `^(.*/)?${re}$`;
}

export function matchesAny(path: string, regexes: string[]): boolean {
  return regexes.some((r) => new RegExp(r).test(path));
}
