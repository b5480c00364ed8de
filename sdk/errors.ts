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
  ) {
    super(code, message, { status });
  }
}
export class InvalidRequestError extends ApiError {}
export class AuthError extends ApiError {}
export class NotFoundError extends ApiError {}
export class ConflictError extends ApiError {}

export function apiErrorFor(status: number, code: string, message: string): ApiError {
  if (status === 400 || status === 413) return new InvalidRequestError(status, code, message);
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
