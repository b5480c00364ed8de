// Who the page acts as. A user JWT, exactly as a Supabase app has one: on the embedded default
// `npm start` prints a URL carrying a dev user's token in the fragment (#token=…; it never reaches
// a server log), or one is pasted; against a Supabase project the user signs in with Supabase Auth.
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { h, replace } from "./dom.ts";

interface Config {
  supabaseUrl?: string;
  anonKey: string;
  auth?: "token" | "supabase";
}

export interface Session {
  supabase: SupabaseClient;
  userId: string;
  label: string;
  signOut(): Promise<void>;
}

const TOKEN_KEY = "cogo.dashboard.token";

function claimsOf(token: string): { sub?: string; role?: string; exp?: number; email?: string } | null {
  try {
    const part = token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
  } catch {
    return null;
  }
}

/** Why a token cannot be used, or null if it can. */
function tokenProblem(token: string): string | null {
  const claims = claimsOf(token);
  if (!claims) return "that is not a JWT";
  if (claims.role !== "authenticated" || !claims.sub)
    return `that token's role is ${JSON.stringify(claims.role)}; the dashboard needs a user token (role authenticated, sub = user id)`;
  if (claims.exp && claims.exp * 1000 < Date.now()) return "that token has expired";
  return null;
}

/** Takes `#token=…` out of the address bar at once, keeping the token for this browser. */
function takeTokenFromFragment(): void {
  const m = /^#token=([^&]+)(?:&view=(.*))?$/.exec(location.hash);
  if (!m) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]!));
  history.replaceState(null, "", location.pathname + location.search + "#" + (m[2] ? decodeURIComponent(m[2]) : "/fleet"));
}

export async function openSession(main: HTMLElement): Promise<Session> {
  const res = await fetch("config.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}; build the dashboard with the project URL and anon key (npm run dashboard:build -- --help)`);
  const config = (await res.json()) as Config;
  const url = config.supabaseUrl ?? location.origin;
  takeTokenFromFragment();
  if (config.auth === "supabase") return await authSession(main, url, config.anonKey);

  for (let problem: string | null = null; ; ) {
    const token = localStorage.getItem(TOKEN_KEY);
    if (token && !(problem = tokenProblem(token))) return tokenSession(url, config.anonKey, token);
    localStorage.removeItem(TOKEN_KEY);
    const pasted = await askForToken(main, token ? problem : null);
    localStorage.setItem(TOKEN_KEY, pasted);
  }
}

function tokenSession(url: string, anonKey: string, token: string): Session {
  const claims = claimsOf(token)!;
  const supabase = createClient(url, anonKey, { accessToken: async () => token });
  return {
    supabase,
    userId: claims.sub!,
    label: claims.email ?? `user ${claims.sub!.slice(0, 8)}`,
    async signOut() {
      localStorage.removeItem(TOKEN_KEY);
    },
  };
}

function askForToken(main: HTMLElement, problem: string | null): Promise<string> {
  return new Promise((resolve) => {
    const box = h("textarea", { placeholder: "eyJhbGciOi…", "aria-label": "access token" });
    const form = h(
      "form",
      {
        class: "panel signin",
        onsubmit: (e: Event) => {
          e.preventDefault();
          const t = box.value.trim();
          if (t) resolve(t);
        },
      },
      h("h2", null, "Sign in with an access token"),
      problem ? h("div", { class: "error-banner" }, problem) : null,
      h(
        "p",
        { class: "dim" },
        "On the embedded default, open the dashboard URL that npm start prints (it carries a token for a dev user), or mint one: ",
        h("code", null, "npm run token -- <user-uuid>"),
        ". On a Supabase project, paste a signed-in user's access token (supabase.auth.getSession()).",
      ),
      box,
      h("p", null, h("button", { type: "submit" }, "Open the dashboard")),
    );
    replace(main, form);
  });
}

async function authSession(main: HTMLElement, url: string, anonKey: string): Promise<Session> {
  const supabase = createClient(url, anonKey);
  let { data } = await supabase.auth.getSession();
  let problem: string | null = null;
  while (!data.session) {
    problem = await new Promise<string | null>((resolve) => {
      const email = h("input", { type: "email", placeholder: "email", required: true, autocomplete: "username" });
      const password = h("input", { type: "password", placeholder: "password", required: true, autocomplete: "current-password" });
      replace(
        main,
        h(
          "form",
          {
            class: "panel signin",
            onsubmit: async (e: Event) => {
              e.preventDefault();
              const r = await supabase.auth.signInWithPassword({ email: email.value, password: password.value });
              resolve(r.error ? r.error.message : null);
            },
          },
          h("h2", null, "Sign in"),
          problem ? h("div", { class: "error-banner" }, problem) : null,
          h("p", null, email, " ", password, " ", h("button", { type: "submit" }, "Sign in")),
        ),
      );
    });
    ({ data } = await supabase.auth.getSession());
  }
  const user = data.session.user;
  return {
    supabase,
    userId: user.id,
    label: user.email ?? user.id.slice(0, 8),
    async signOut() {
      await supabase.auth.signOut();
    },
  };
}
