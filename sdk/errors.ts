// SDK errors: all extend CogoError (code + details); HTTP statuses map to classes in one place.
import { CogoError } from "../functions/_shared/errors.ts";
import type { TaskResult } from "./handle.ts";

export class SandboxError extends CogoError {}

/** The API refused or failed a request; `status` and the server's error `code` are kept. */
export class ApiError extends SandboxError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    details: Record<string, unknown> = {},
  ) {
    super(code, message, { ...details, status });
  }
}
export class InvalidRequestError extends ApiError {}
export class AuthError extends ApiError {}
export class NotFoundError extends ApiError {}
export class ConflictError extends ApiError {}
/** 429 `rate_limited`: a route's requests per second were used up; retry after `retryAfterSeconds`. */
export class RateLimitError extends ApiError {
  get retryAfterSeconds(): number {
    const s = this.details?.retryAfterSeconds;
    return typeof s === "number" ? s : 1;
  }
}
/** A tenant quota (429 `queued_quota_exceeded`, 413 `storage_quota_exceeded`); `details` names it. */
export class QuotaExceededError extends ApiError {}

export function apiErrorFor(status: number, code: string, message: string, details: Record<string, unknown> = {}): ApiError {
  if (code.endsWith("_quota_exceeded")) return new QuotaExceededError(status, code, message, details);
  if (status === 429) return new RateLimitError(status, code, message, details);
  if (status === 400 || status === 413) return new InvalidRequestError(status, code, message, details);
  if (status === 401 || status === 403) return new AuthError(status, code, message);
  if (status === 404) return new NotFoundError(status, code, message);
  if (status === 409) return new ConflictError(status, code, message);
  return new ApiError(status, code, message);
}

/** `result({ throwOnFailure: true })` on a task that did not succeed; carries the result. */
export class TaskFailedError extends SandboxError {
  constructor(readonly result: TaskResult) {
    super("task_failed", `task ${result.taskId} ${result.status}: ${result.reason ?? ""}`, { status: result.status, exitCode: result.exitCode });
  }
}
