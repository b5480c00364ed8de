import { CogoError } from "../functions/_shared/errors.ts";

/** A failure of the embedded stack itself (Postgres, gateway, Realtime endpoint, keys). */
export class EmbeddedError extends CogoError {}
