// The dashboard: sign in, then a hash router over the views, with health always in the header.
import { h, replace } from "./dom.ts";
import { log } from "./event-log.ts";
import { Live } from "./live.ts";
import { openSession } from "./session.ts";
import { analysesView, analysisView } from "./views/analysis.ts";
import { eventsView } from "./views/events.ts";
import { fleetView } from "./views/fleet.ts";
import { sandboxesView, sandboxView } from "./views/sandboxes.ts";
import { taskView } from "./views/task.ts";
import { tasksView } from "./views/tasks.ts";

const main = document.getElementById("main")!;
const healthBox = document.getElementById("health")!;
const who = document.getElementById("who")!;

function renderHealth(live: Live): void {
  const f = live.fleet;
  const now = live.serverNow();
  const liveWorkers = [...live.workers.values()].filter((w) => w.status === "online" && now - Date.parse(w.lastHeartbeatAt) < 2 * w.leaseMs).length;
  const realtime = live.channels.fleet === "SUBSCRIBED" && live.channels.tasks === "SUBSCRIBED";
  const pill = (name: string, state: "ok" | "warn" | "bad", title: string) => h("span", { class: `pill ${state}`, title, "data-health": name, "data-state": state }, name);
  replace(
    healthBox,
    pill("Postgres", f?.db.ok && !live.fleetError ? "ok" : "bad", f ? `query ${f.db.latencyMs} ms` : (live.fleetError ?? "unknown")),
    pill("Functions", live.fleetError ? "bad" : f ? "ok" : "warn", live.fleetError ?? f?.function.runtime ?? "…"),
    pill("Realtime", realtime ? "ok" : live.channels.fleet === "connecting" ? "warn" : "bad", `fleet ${live.channels.fleet}, tasks ${live.channels.tasks}`),
    pill(`Workers ${liveWorkers}`, liveWorkers > 0 ? "ok" : "bad", `${liveWorkers} live`),
  );
}

async function boot(): Promise<void> {
  const session = await openSession(main);
  const live = new Live(session.supabase, session.userId);
  replace(
    who,
    session.label,
    " ",
    h(
      "button",
      {
        onclick: async () => {
          await session.signOut();
          location.hash = "";
          location.reload();
        },
      },
      "Sign out",
    ),
  );
  live.onFleet(() => renderHealth(live));
  setInterval(() => renderHealth(live), 1000);
  await live.start();

  let leave: (() => void) | undefined;
  const navigate = (hash: string) => (location.hash = hash);
  const route = () => {
    leave?.();
    const [path = "/fleet", search = ""] = (location.hash.replace(/^#/, "") || "/fleet").split("?");
    const params = new URLSearchParams(search);
    const task = /^\/tasks\/([0-9a-f-]{36})$/.exec(path);
    const analysis = /^\/analyses\/([0-9a-f-]{36})$/.exec(path);
    const sandbox = /^\/sandboxes\/([0-9a-f-]{36})$/.exec(path);
    for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a")) a.classList.toggle("active", path.startsWith("/" + a.dataset.nav));
    if (task) leave = taskView(main, live, task[1]!);
    else if (path === "/tasks") leave = tasksView(main, live, navigate, params.get("plan"));
    else if (sandbox) leave = sandboxView(main, live, sandbox[1]!, navigate);
    else if (path === "/sandboxes") leave = sandboxesView(main, live, navigate);
    else if (analysis) leave = analysisView(main, live, analysis[1]!);
    else if (path === "/analyses") leave = analysesView(main, live, navigate);
    else if (path === "/events") leave = eventsView(main);
    else leave = fleetView(main, live);
  };
  window.addEventListener("hashchange", route);
  route();
}

boot().catch((err) => {
  log("dashboard", "error", String(err));
  replace(main, h("div", { class: "error-banner" }, `The dashboard could not start: ${err instanceof Error ? err.message : String(err)}`));
});
