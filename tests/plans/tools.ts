// Scenario tests run real tools inside the sandbox, which sees the host's /usr read-only: a
// missing tool fails the test with what to install (.ci/run installs them).
import { access, constants } from "node:fs/promises";

const INSTALL: Record<string, string> = {
  tsc: "apt-get install -y node-typescript",
  npm: "apt-get install -y npm (or Node's own npm in /usr/bin)",
  node: "apt-get install -y nodejs",
  gcc: "apt-get install -y gcc",
  make: "apt-get install -y make",
};

export async function requireTools(...names: string[]): Promise<void> {
  for (const name of names) {
    const found = await Promise.any(["/usr/bin", "/usr/local/bin", "/bin"].map((d) => access(`${d}/${name}`, constants.X_OK))).then(
      () => true,
      () => false,
    );
    if (!found) throw new Error(`${name} is not installed where the sandbox sees it (/usr): ${INSTALL[name] ?? `install ${name}`}`);
  }
}
