import { EmbeddedError } from "../errors.ts";

/** A failure inside the embedded Realtime endpoint; `code` mirrors the hosted server's error codes where one exists. */
export class RealtimeError extends EmbeddedError {}

/** A WebSocket frame the server cannot decode; the frame is dropped, the socket keeps serving. */
export class MalformedFrameError extends RealtimeError {
  constructor(message: string) {
    super("MalformedFrame", message);
  }
}
