// Which local roots `npm start` allows (scripts/start-analysis.ts) and the line it prints.
import { describe, expect, it } from "vitest";
import { describeAnalysisSources, startAnalysisRoots } from "../../scripts/start-analysis.ts";

describe("npm start's analysis roots", () => {
  it("defaults to the directory npm start is run from", () => {
    expect(startAnalysisRoots(undefined, "/home/me/proj/")).toEqual(["/home/me/proj"]);
    expect(startAnalysisRoots([], "/home/me/proj")).toEqual(["/home/me/proj"]);
  });
  it("never opens the whole filesystem by default", () => {
    expect(startAnalysisRoots(undefined, "/")).toEqual([]);
  });
  it("takes --analysis-root values, relative to that directory, once each; none turns local paths off", () => {
    expect(startAnalysisRoots(["../repos", "/srv/git", "/srv/git/"], "/home/me/proj")).toEqual(["/home/me/repos", "/srv/git"]);
    expect(startAnalysisRoots(["none"], "/home/me/proj")).toEqual([]);
  });
  it("says what an analysis may read", () => {
    expect(describeAnalysisSources(["/home/me/proj"], true)).toBe("git repositories under /home/me/proj (a path or file:// URL); https URLs of public hosts; workspace:<id>");
    expect(describeAnalysisSources([], false)).toBe("no local paths (--analysis-root DIR allows some); no https URLs (--analysis-offline); workspace:<id>");
  });
});
