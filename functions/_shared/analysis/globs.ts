// Include/exclude globs over repository paths: `*` (within a segment), `**` (any depth), `?`,
// `[abc]`, `{a,b}`. A pattern without `/` matches the file name at any depth (as .gitignore does).

export function globToRegExp(glob: string): RegExp {
  const anchored = glob.includes("/");
  let g = glob.replace(/^\/+/, "");
  if (g.endsWith("/")) g += "**";
  let re = "";
  let braces = 0;
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === "*") {
      if (g[i + 1] === "*") {
        const slash = g[i + 2] === "/";
        re += slash ? "(?:.*/)?" : ".*";
        i += slash ? 2 : 1;
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = g.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        const body = g
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\");
        re += `[${body}]`;
        i = end;
      }
    } else if (c === "{") {
      braces++;
      re += "(?:";
    } else if (c === "}" && braces > 0) {
      braces--;
      re += ")";
    } else if (c === "," && braces > 0) re += "|";
    else re += c.replace(/[.+^$()|\\]/g, "\\$&");
  }
  while (braces-- > 0) re += ")";
  return new RegExp(anchored ? `^${re}$` : `(?:^|/)${re}$`);
}

/** Keeps a path when it matches some include (or there are none) and no exclude. */
export function pathFilter(include: string[], exclude: string[]): (path: string) => boolean {
  const inc = include.map(globToRegExp);
  const exc = exclude.map(globToRegExp);
  return (path) => (inc.length === 0 || inc.some((r) => r.test(path))) && !exc.some((r) => r.test(path));
}
