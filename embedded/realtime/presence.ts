// Phoenix.Presence semantics, in memory for this process: presence_state lists every key's metas,
// presence_diff carries joins/leaves; an update is a leave of the old meta plus a join of the new.
import { randomBytes } from "node:crypto";
import { Outgoing, type Fanout } from "./fanout.ts";
import type { Json } from "./serializer.ts";

export interface PresenceMember {
  /** Subscription key of the channel (see subscriptionKey). */
  readonly key: string;
  readonly presenceKey: string;
}

interface Entry {
  ref: string;
  meta: Json;
}

type PresenceMap = Record<string, { metas: Json[] }>;

function newRef(): string {
  return randomBytes(12).toString("base64");
}

function single(presenceKey: string, meta: Json): PresenceMap {
  return { [presenceKey]: { metas: [meta] } };
}

export class PresenceTracker {
  private readonly topics = new Map<string, Map<string, Map<PresenceMember, Entry>>>();
  private entries = 0;

  constructor(private readonly fanout: Fanout) {}

  /** Tracked entries (one per tracking channel), all topics together. */
  get size(): number {
    return this.entries;
  }

  list(key: string): PresenceMap {
    const state: PresenceMap = {};
    for (const [presenceKey, members] of this.topics.get(key) ?? []) {
      state[presenceKey] = { metas: [...members.values()].map((e) => ({ ...e.meta, phx_ref: e.ref })) };
    }
    return state;
  }

  track(member: PresenceMember, meta: Json): void {
    let keys = this.topics.get(member.key);
    if (!keys) this.topics.set(member.key, (keys = new Map()));
    let members = keys.get(member.presenceKey);
    if (!members) keys.set(member.presenceKey, (members = new Map()));
    const previous = members.get(member);
    const ref = newRef();
    members.set(member, { ref, meta });
    if (!previous) this.entries++;
    const joinMeta = previous ? { ...meta, phx_ref: ref, phx_ref_prev: previous.ref } : { ...meta, phx_ref: ref };
    const leaves = previous ? single(member.presenceKey, { ...previous.meta, phx_ref: previous.ref }) : {};
    this.publish(member.key, single(member.presenceKey, joinMeta), leaves);
  }

  untrack(member: PresenceMember): void {
    const keys = this.topics.get(member.key);
    const members = keys?.get(member.presenceKey);
    const entry = members?.get(member);
    if (!keys || !members || !entry) return;
    members.delete(member);
    this.entries--;
    if (members.size === 0) keys.delete(member.presenceKey);
    if (keys.size === 0) this.topics.delete(member.key);
    this.publish(member.key, {}, single(member.presenceKey, { ...entry.meta, phx_ref: entry.ref }));
  }

  private publish(key: string, joins: PresenceMap, leaves: PresenceMap): void {
    this.fanout.publish(key, Outgoing.json("presence_diff", { joins, leaves }));
  }
}
